"""Evaluation of MinAtar tasks: one batched game of the evaluation copies on the device, each
copy's first episode counted as the game plays it, the run's shifts applied to its tensors, and
off the CPU the loop reads the device only every ``CHECK_EVERY_OFF_HOST`` steps."""

from __future__ import annotations

import pytest
import torch

from envs.eval_envs import DeviceEvalEnvs, HostEvalEnvs
from envs.minatar.vector import MinAtarOptions, MinAtarVectorEnv
from envs.schedule import TaskSchedule
from envs.shifts import NO_SHIFT
from host_reads import HostReads
from runner.evaluator import _EVAL_SEED_OFFSET, CHECK_EVERY_OFF_HOST, Evaluator

SEED = 5
BASE = SEED + _EVAL_SEED_OFFSET  # the first evaluation's seed


def obs_policy(obs: torch.Tensor) -> torch.Tensor:
    """Actions that depend only on the observation and the copy's index, so every path that sees
    the same frames takes the same actions."""
    weights = torch.arange(1, obs[0].numel() + 1, device=obs.device)
    return ((obs.flatten(1).long() * weights).sum(1) + torch.arange(len(obs), device=obs.device)) % 6


def evaluator(sched: TaskSchedule, episodes: int, max_steps: int = 500) -> Evaluator:
    return Evaluator(sched.make_eval_envs, len(sched.tasks), torch.as_tensor(sched.action_masks), 0,
                     episodes=episodes, random_episodes=0, max_steps=max_steps, seed=SEED)


def first_episodes_by_hand(env: MinAtarVectorEnv, max_steps: int, shift=NO_SHIFT) -> tuple[list[float], list[int]]:
    """Each env's first-episode return and length, stepping ``env`` one env at a time on the host."""
    n = env.num_envs
    obs = shift.obs(env.reset(seed=BASE))
    totals, lengths, running = [0.0] * n, [0] * n, [True] * n
    for _ in range(max_steps):
        out = env.step(shift.action(obs_policy(obs)))
        obs = shift.obs(out.obs)
        rewards = shift.reward(out.rewards)
        for i in range(n):
            if running[i]:
                totals[i] += float(rewards[i])
                lengths[i] += 1
                running[i] = not (bool(out.terminated[i]) or bool(out.truncated[i]))
        if not any(running):
            break
    return totals, lengths


@pytest.mark.parametrize("game,cap", [("Breakout", None), ("SpaceInvaders", None), ("Asterix", 120)])
def test_minatar_evaluation_is_one_batched_game_counting_each_copys_first_episode(game, cap):
    sched = TaskSchedule([f"minatar:{game}", "minatar:Freeway"], steps_per_visit=8, cycles=1, num_envs=2,
                         seed=SEED, minatar=MinAtarOptions(max_episode_steps=cap))
    ev = evaluator(sched, episodes=6)
    got = ev.run_episodes(0, 6, obs_policy)
    envs = ev._env(0, 6)
    assert isinstance(envs, DeviceEvalEnvs) and envs.num_envs == 6 and envs.env.game.num_envs == 6
    channels = sched.obs_shape[0]
    assert envs.env is not sched._envs[0] and envs.env.channels == channels  # the schedule's padded layout
    twin = MinAtarVectorEnv(game, 6, channels=channels, max_episode_steps=cap)
    totals, lengths = first_episodes_by_hand(twin, 500)
    assert got == totals
    assert len(set(lengths)) > 1 and max(lengths) < 500  # copies end at their own steps, all within the cap
    if cap is not None:
        assert max(lengths) == cap
    assert sum(totals) > 0
    # the next evaluation takes the next seeds: another game, the same copies' object
    assert ev.run_episodes(0, 6, obs_policy) != got and ev._env(0, 6) is envs and ev.episodes_done == 12


def test_minatar_evaluation_follows_the_runs_shifts():
    spec = "minatar:Breakout@reward-scale:low=2,high=3+permute-obs+permute-actions"
    sched = TaskSchedule([spec], steps_per_visit=8, cycles=2, num_envs=2, seed=SEED)
    shift = sched.shift_for(0)
    assert 2 <= shift.reward_mul <= 3 and shift.obs_perm is not None and shift.action_perm is not None
    seen = []

    def policy(obs):
        seen.append(obs)
        return obs_policy(obs)

    got = evaluator(sched, episodes=5).run_episodes(0, 5, policy)
    twin = MinAtarVectorEnv("Breakout", 5, channels=sched.obs_shape[0])
    totals, _ = first_episodes_by_hand(twin, 500, shift)
    assert got == pytest.approx(totals, rel=1e-6) and sum(totals) > 0
    raw = MinAtarVectorEnv("Breakout", 5, channels=sched.obs_shape[0]).reset(seed=BASE)
    assert torch.equal(seen[0], shift.obs(raw)) and not torch.equal(seen[0], raw)  # the policy sees shifted frames
    unshifted, _ = first_episodes_by_hand(MinAtarVectorEnv("Breakout", 5, channels=sched.obs_shape[0]), 500)
    assert got != pytest.approx(unshifted)


def test_without_a_shift_the_device_copies_are_the_games_own():
    envs = DeviceEvalEnvs(MinAtarVectorEnv("SpaceInvaders", 3))
    twin = MinAtarVectorEnv("SpaceInvaders", 3)
    assert torch.equal(envs.reset(BASE), twin.reset(seed=BASE)) and envs.shift is NO_SHIFT
    for _ in range(30):
        actions = torch.tensor([0, 1, 5])
        obs, rewards, done = envs.step(actions)
        out = twin.step(actions)
        assert torch.equal(obs, out.obs) and torch.equal(rewards, out.rewards)
        assert torch.equal(done, out.terminated | out.truncated)


def test_off_the_cpu_an_evaluation_reads_the_device_every_64_steps_and_counts_the_same():
    sched = TaskSchedule(["minatar:Breakout"], steps_per_visit=8, cycles=1, num_envs=2, seed=SEED)
    ev = evaluator(sched, episodes=8, max_steps=1_000)
    envs = ev._env(0, 8)
    envs.env.reads_are_free = False  # what a GPU runs; a CPU runs the same code
    assert not envs.reads_are_free
    reads_before_step: list[int] = []

    def policy(obs):
        reads_before_step.append(len(reads.calls))
        return obs_policy(obs)

    with HostReads() as reads:
        got = ev.run_episodes(0, 8, policy)
    steps = len(reads_before_step)
    reading_steps = [t for t in range(1, steps) if reads_before_step[t] > reads_before_step[t - 1]]
    # the game's accelerator path (it resets every step, so it draws differently from the CPU's)
    twin = MinAtarVectorEnv("Breakout", 8, channels=sched.obs_shape[0])
    twin.reads_are_free = False
    totals, lengths = first_episodes_by_hand(twin, 1_000)
    assert got == totals and sum(totals) > 0
    assert steps % CHECK_EVERY_OFF_HOST == 0 and steps >= CHECK_EVERY_OFF_HOST
    assert reading_steps == list(range(CHECK_EVERY_OFF_HOST, steps, CHECK_EVERY_OFF_HOST))
    assert steps == -(-max(lengths) // CHECK_EVERY_OFF_HOST) * CHECK_EVERY_OFF_HOST  # stops at the first check after


def test_host_tasks_evaluate_through_a_vector_env_of_their_own():
    sched = TaskSchedule(["gym:CartPole-v1"], steps_per_visit=8, cycles=1, num_envs=2, seed=SEED)
    ev = evaluator(sched, episodes=3, max_steps=40)
    returns = ev.run_episodes(0, 3, lambda obs: torch.zeros(obs.shape[0], dtype=torch.long))
    envs = ev._env(0, 3)
    assert isinstance(envs, HostEvalEnvs) and envs.env.num_envs == 3 and envs.reads_are_free
    assert all(5 <= r <= 40 for r in returns)  # always pushing left ends CartPole within a few dozen steps
    sched.close()
    ev.close()
