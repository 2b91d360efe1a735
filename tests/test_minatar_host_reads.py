"""On an accelerator the MinAtar games, and a DQN learning from them, step without reading a
value on the host.

A game's ``reads_are_free`` is False off the CPU; set False here, a CPU runs the accelerator's
path. :class:`tests.host_reads.HostReads` lists every operation that would wait for the device.
"""

import pytest
import torch

from agents.dqn import DQN, DQNConfig
from envs.minatar import GAMES, game_class
from envs.minatar.vector import MinAtarVectorEnv
from envs.schedule import TaskSchedule
from replay.buffer import make_replay
from host_reads import HostReads
from minatar_lockstep import assert_same_state

STEPS = 400


def test_the_detector_sees_what_would_wait_for_a_device():
    t = torch.tensor([0, 3, 0])
    with HostReads() as reads:
        t.sum()
        t + 1
        bool(t.any())
        t.nonzero()
        t[t > 0]
        int(t.max())
    assert reads.calls == ["aten._local_scalar_dense.default", "aten.nonzero.default",
                           "aten.index.Tensor (bool mask)", "aten._local_scalar_dense.default"]


@pytest.mark.parametrize("name", sorted(GAMES))
def test_steps_and_resets_read_nothing_on_the_host_and_equal_the_cpu_path(name):
    # 16 envs reset where they end and, every 25 steps, one more (a time cap, which also
    # reaches Freeway's long episodes), on both paths; the CPU twin resets through ``_reset``
    # so that an empty reset draws on both (``reset`` skips it where reads are free)
    games = [game_class(name)(16, seed=3) for _ in range(2)]
    fast, device_path = games
    device_path.reads_are_free = False
    gen = torch.Generator().manual_seed(1)
    ended = 0
    for t in range(STEPS):
        actions = torch.randint(0, 6, (16,), generator=gen)
        reward, done = fast.step(actions)
        fast_obs = fast.observation()
        mask = done | ((torch.arange(16) == t // 25 % 16) & (t % 25 == 0))
        fast._reset(mask)
        with HostReads() as reads:
            reward_b, done_b = device_path.step(actions)
            obs_b = device_path.observation()
            device_path.reset(mask.clone())
        assert reads.calls == [], f"step {t}: {reads.calls}"
        assert torch.equal(reward, reward_b) and torch.equal(done, done_b), t
        assert torch.equal(fast_obs, obs_b), t
        ended += int(mask.sum())
    assert_same_state(fast, device_path)
    assert ended > 10


def test_the_vector_env_reads_only_when_it_hands_episodes_over():
    env = MinAtarVectorEnv("Seaquest", 8, seed=0, report_every=16)
    env.reads_are_free = False
    assert not env.game.reads_are_free
    env.reset(seed=2)
    reading_steps, episodes = [], 0
    for t in range(160):
        with HostReads() as reads:
            out = env.step(torch.randint(0, 6, (8,)))
        if reads.calls:
            reading_steps.append(t)
        episodes += len(out.episodes)
    assert reading_steps == [t for t in range(160) if (t + 1) % 16 == 0]
    assert episodes > 5


def test_a_device_native_schedule_reads_only_at_reports_and_visit_ends():
    sched = TaskSchedule(["minatar:Seaquest", "minatar:Breakout"], steps_per_visit=32 * 4,
                         cycles=1, num_envs=4, seed=0)
    for env in sched._envs:
        env.reads_are_free = False  # and so episodes are handed over every 64 steps
    sched.reset()
    reading_steps, transitions, valid = [], 0, 0
    for t in range(64):
        with HostReads() as reads:
            res = sched.step(torch.randint(0, 6, (4,)))
        if reads.calls:
            reading_steps.append(t)
        transitions, valid = transitions + res.transitions, valid + int(res.valid.sum())
        if t % 32 == 31:  # the count of transitions is exact at a visit's end
            assert transitions == valid
        if sched.finished:
            break
    # each visit is 32 vector steps: its last one hands the visit's episodes over
    assert reading_steps == [31, 63] and res.switch is None and sched.finished
    assert valid < 64 * 4  # there were auto-reset steps to take back


def test_a_dqn_step_on_a_device_native_task_reads_nothing_but_the_episode_reports():
    # act (greedy, and the random actions ε-greedy mixes in off the CPU), env step, replay add
    # and sample on their accelerator paths, gradient step: what the loop runs per env step
    n = 4
    env = MinAtarVectorEnv("Breakout", n, seed=0)
    env.reads_are_free = False
    agent = DQN(DQNConfig(learning_starts=0, batch_size=8), obs_shape=(4, 10, 10), num_actions=6,
                action_masks=torch.ones(1, 6, dtype=torch.bool))
    replay = make_replay("uniform", 1000, n, (4, 10, 10), torch.uint8, 1)
    replay.storage.host_path, replay.sampler.sync_free = False, True
    obs = env.reset(seed=0)
    reading_steps = []
    for t in range(200):
        if t == 1:
            replay.sample(8)  # the buffer's one read, until it first holds a transition
        with HostReads() as reads:
            explore = torch.rand(n, generator=agent.generator) < 0.5
            actions = torch.where(explore, agent._random(n, 0), agent.greedy(obs, 0))
            out = env.step(actions)
            replay.add(obs, actions, out.rewards, out.obs, out.terminated, out.truncated, out.valid)
            if t > 0:
                agent.update(replay.sample(8))
        if reads.calls:
            reading_steps.append(t)
        obs = out.obs
    assert reading_steps == [63, 127, 191]
