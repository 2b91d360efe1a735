"""TaskSchedule: order, switches, auto-reset validity, raw returns, padding, seeding, resume."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch

import envs.task_envs
from envs import AtariOptions, StepResult, TaskSchedule, TaskSwitch, visit_seed

CLASSIC = ["gym:CartPole-v1", "gym:Acrobot-v1"]


def _run(schedule: TaskSchedule, action_fn) -> list[StepResult]:
    """Reset and step until finished; ``action_fn(step_index, task_index)`` gives actions."""
    schedule.reset()
    results = []
    while not schedule.finished:
        results.append(schedule.step(action_fn(len(results), schedule.task_index)))
    return results


def _zeros(n: int):
    return lambda t, task: torch.zeros(n, dtype=torch.long)


def test_tasks_cycle_in_order_with_one_switch_per_visit() -> None:
    schedule = TaskSchedule(CLASSIC, steps_per_visit=10, cycles=3, num_envs=2)
    try:
        assert schedule.num_visits == 6 and schedule.total_steps == 60
        assert [t.name for t in schedule.tasks] == ["CartPole-v1", "Acrobot-v1"]
        results = _run(schedule, _zeros(2))
        assert len(results) == 30  # 5 vector steps of 2 envs per visit
        assert [r.task for r in results] == [0] * 5 + [1] * 5 + [0] * 5 + [1] * 5 + [0] * 5 + [1] * 5
        switches = [r.switch for r in results if r.switch is not None]
        assert switches == [
            TaskSwitch(0, 1, 1), TaskSwitch(1, 0, 2), TaskSwitch(0, 1, 3),
            TaskSwitch(1, 0, 4), TaskSwitch(0, 1, 5),
        ]
        assert results[-1].switch is None  # end of the last visit: finished, no next task
        assert schedule.finished and schedule.steps == schedule.total_steps == 60
        with pytest.raises(RuntimeError, match="finished"):
            schedule.step(torch.zeros(2, dtype=torch.long))
    finally:
        schedule.close()


def test_visit_budget_rounds_up_to_a_multiple_of_num_envs() -> None:
    schedule = TaskSchedule(CLASSIC, steps_per_visit=5, cycles=1, num_envs=2)
    try:
        assert schedule.steps_per_visit == 6 and schedule.total_steps == 12
        results = _run(schedule, _zeros(2))
        assert len(results) == 6 and results[2].switch == TaskSwitch(0, 1, 1)
    finally:
        schedule.close()


def test_each_task_env_is_created_once_and_reused_on_revisits(monkeypatch) -> None:
    created: list[gymnasium.vector.VectorEnv] = []
    resets: list[tuple[int, int]] = []  # (visit, id of the env that was reset)
    real_factory = envs.task_envs.make_gym_vector_env

    def spy_factory(*args, **kwargs):
        env = real_factory(*args, **kwargs)
        created.append(env)
        real_reset = env.reset

        def spy_reset(**kw):
            resets.append((schedule.visit, id(env)))
            return real_reset(**kw)

        env.reset = spy_reset
        return env

    monkeypatch.setattr(envs.task_envs, "make_gym_vector_env", spy_factory)
    schedule = TaskSchedule(CLASSIC, steps_per_visit=4, cycles=3, num_envs=2)
    try:
        _run(schedule, _zeros(2))
        assert len(created) == 2
        cart, acro = id(created[0]), id(created[1])
        assert resets == [(0, cart), (1, acro), (2, cart), (3, acro), (4, cart), (5, acro)]
    finally:
        schedule.close()


def test_switch_forces_truncation_and_hides_the_cut_episode() -> None:
    # Always pushing left ends CartPole episodes after ~10 steps: 13-step visits cut one.
    schedule = TaskSchedule(["gym:CartPole-v1", "gym:Acrobot-v1"], steps_per_visit=39,
                            cycles=1, num_envs=3)
    try:
        schedule.reset()
        ret = np.zeros(3)
        length = np.zeros(3, dtype=int)
        for k in range(13):
            res = schedule.step(torch.zeros(3, dtype=torch.long))
            valid = res.valid.numpy()
            ret += res.rewards.numpy() * valid
            length += valid
            term, trunc = res.terminated.numpy(), res.truncated.numpy()
            last = k == 12
            natural_end = term if last else term | trunc
            expected = [(0, i, ret[i], length[i]) for i in np.flatnonzero(natural_end)]
            assert [tuple(e) for e in res.episodes] == expected
            if last:
                cut = ~term & (length > 0)
            ret[term | trunc] = 0
            length[term | trunc] = 0
        assert res.truncated.all() and res.switch == TaskSwitch(0, 1, 1)
        assert cut.any()  # some env was mid-episode at the switch, and it was not reported
        assert res.obs.shape == res.next_obs.shape
        assert not torch.equal(res.obs, res.next_obs)  # Acrobot's first obs, not CartPole's
    finally:
        schedule.close()


def test_valid_is_false_exactly_on_auto_reset_steps() -> None:
    schedule = TaskSchedule(["gym:CartPole-v1"], steps_per_visit=120, cycles=2, num_envs=2)
    try:
        results = _run(schedule, _zeros(2))
        prev_done = np.zeros(2, dtype=bool)
        invalid_steps = 0
        for k, res in enumerate(results):
            if k % 60 == 0:
                prev_done[:] = False  # a new visit starts with a fresh reset
            valid = res.valid.numpy()
            np.testing.assert_array_equal(valid, ~prev_done)
            invalid = ~valid
            invalid_steps += invalid.sum()
            # an auto-reset step pays nothing and returns a fresh CartPole start state
            assert (res.rewards.numpy()[invalid] == 0).all()
            assert (res.next_obs.numpy()[invalid].__abs__() <= 0.05).all()
            prev_done = res.terminated.numpy() | res.truncated.numpy()
        assert invalid_steps >= 10
    finally:
        schedule.close()


def test_atari_returns_are_raw_sums_of_unclipped_rewards() -> None:
    # SpaceInvaders pays 5-30 points per kill; a 300-frame cap ends episodes quickly.
    options = AtariOptions(max_num_frames_per_episode=300)
    schedule = TaskSchedule(["atari:SpaceInvaders"], steps_per_visit=400, cycles=1,
                            num_envs=2, seed=1, atari=options)
    try:
        assert schedule.obs_shape == (4, 84, 84) and schedule.obs_dtype == torch.uint8
        assert schedule.frame_stack == 4 and schedule.num_actions == 18
        assert schedule.action_masks.all()
        gen = torch.Generator().manual_seed(0)
        results = _run(schedule, lambda t, task: torch.randint(0, 18, (2,), generator=gen))
        assert results[0].next_obs.dtype == torch.uint8
        rewards = torch.stack([r.rewards for r in results])
        valid = torch.stack([r.valid for r in results])
        assert rewards.max() > 1  # not clipped
        episodes = [e for r in results for e in r.episodes]
        assert len(episodes) >= 4 and max(e.ret for e in episodes) > 1
        for env in range(2):
            ends = [k for k, r in enumerate(results) if any(e.env == env for e in r.episodes)]
            start = 0
            for end in ends:
                (ep,) = [e for e in results[end].episodes if e.env == env]
                span = slice(start, end + 1)
                assert ep.ret == pytest.approx(float((rewards[span, env] * valid[span, env]).sum()))
                assert ep.length == int(valid[span, env].sum()) == 75  # 300 frames / 4
                start = end + 1
    finally:
        schedule.close()


def test_padding_masks_and_invalid_action() -> None:
    schedule = TaskSchedule(CLASSIC, steps_per_visit=2, cycles=1, num_envs=2)
    try:
        assert schedule.obs_shape == (6,) and schedule.obs_dtype == torch.float32
        assert schedule.discrete and schedule.num_actions == 3 and schedule.action_dim == 0
        assert schedule.action_masks.tolist() == [[True, True, False], [True, True, True]]
        obs = schedule.reset()
        assert obs.shape == (2, 6) and obs.dtype == torch.float32
        assert (obs[:, 4:] == 0).all() and (obs[:, :4] != 0).any()
        with pytest.raises(ValueError, match=r"action \[2\].*'gym:CartPole-v1'.*2 actions"):
            schedule.step(torch.tensor([0, 2]))
        with pytest.raises(ValueError, match=r"action \[-1\]"):
            schedule.step(torch.tensor([-1, 0]))
        with pytest.raises(ValueError, match="integer tensor of shape"):
            schedule.step(torch.zeros(2))
        res = schedule.step(torch.tensor([1, 1]))
        assert res.switch == TaskSwitch(0, 1, 1)
        assert (res.obs[:, 4:] != 0).any()  # Acrobot fills all six entries
        res = schedule.step(torch.tensor([2, 2]))  # valid in Acrobot
        assert schedule.finished
    finally:
        schedule.close()


def test_continuous_actions_are_rescaled_per_task() -> None:
    tasks = ["gym:Pendulum-v1", "gym:MountainCarContinuous-v0"]
    schedule = TaskSchedule(tasks, steps_per_visit=6, cycles=1, num_envs=2, seed=5)
    pendulum = gymnasium.make("Pendulum-v1")
    car = gymnasium.make("MountainCarContinuous-v0")
    try:
        assert not schedule.discrete and schedule.action_dim == 1 and schedule.num_actions == 0
        assert schedule.obs_shape == (3,)
        assert schedule.action_masks.tolist() == [[True], [True]]
        schedule.reset()
        pendulum.reset(seed=visit_seed(5, 0) + 1)  # env copy 1 of visit 0
        for _ in range(3):  # Pendulum bounds are ±2: 0.5 -> 1.0
            res = schedule.step(torch.tensor([[0.0], [0.5]]))
            raw_obs, raw_rew, *_ = pendulum.step(np.array([1.0], dtype=np.float32))
            np.testing.assert_allclose(res.next_obs[1].numpy(), raw_obs, rtol=1e-6)
            assert res.rewards[1].item() == pytest.approx(raw_rew, rel=1e-6)
        car.reset(seed=visit_seed(5, 1) + 0)
        for _ in range(3):  # MountainCarContinuous bounds are ±1: identity
            res = schedule.step(torch.tensor([[0.5], [-1.0]]))
            raw_obs, *_ = car.step(np.array([0.5], dtype=np.float32))
            np.testing.assert_allclose(res.next_obs[0, :2].numpy(), raw_obs, rtol=1e-6)
            assert res.next_obs[0, 2].item() == 0.0  # padded
        with pytest.raises(RuntimeError):
            schedule.step(torch.zeros(2, 1))
    finally:
        schedule.close()
        pendulum.close()
        car.close()


def test_wrong_continuous_action_shape_is_rejected() -> None:
    schedule = TaskSchedule(["gym:Pendulum-v1"], steps_per_visit=2, cycles=1, num_envs=2)
    try:
        schedule.reset()
        with pytest.raises(ValueError, match=r"shape \(2, 1\)"):
            schedule.step(torch.zeros(2))
    finally:
        schedule.close()


def _trace(seed: int, tasks: list[str] = CLASSIC) -> tuple[torch.Tensor, torch.Tensor]:
    schedule = TaskSchedule(tasks, steps_per_visit=20, cycles=2, num_envs=2, seed=seed)
    try:
        gen = torch.Generator().manual_seed(0)
        results = _run(schedule, lambda t, task: torch.randint(0, 2, (2,), generator=gen))
        return torch.stack([r.obs for r in results]), torch.stack([r.rewards for r in results])
    finally:
        schedule.close()


def test_same_seed_gives_identical_observations_and_rewards() -> None:
    obs_a, rew_a = _trace(7)
    obs_b, rew_b = _trace(7)
    assert torch.equal(obs_a, obs_b) and torch.equal(rew_a, rew_b)
    obs_c, _ = _trace(8)
    assert not torch.equal(obs_a, obs_c)


def test_state_dict_round_trip_restores_the_position() -> None:
    first = TaskSchedule(CLASSIC, steps_per_visit=6, cycles=2, num_envs=2, seed=3)
    second = TaskSchedule(CLASSIC, steps_per_visit=6, cycles=2, num_envs=2, seed=3)
    try:
        first.reset()
        for _ in range(4):
            first.step(torch.zeros(2, dtype=torch.long))
        state = first.state_dict()
        assert (state["visit"], state["steps"]) == (1, 8)
        second.load_state_dict(state)
        assert (second.visit, second.steps, second.task_index) == (1, 8, 1)
        with pytest.raises(RuntimeError, match="reset"):
            second.step(torch.zeros(2, dtype=torch.long))
        second.reset()
        steps_left = 0
        while not second.finished:
            second.step(torch.zeros(2, dtype=torch.long))
            steps_left += 1
        assert steps_left == (first.total_steps - 8) // 2
        assert second.state_dict()["steps"] == first.total_steps
    finally:
        first.close()
        second.close()


def test_resume_at_a_visit_boundary_replays_the_run_exactly() -> None:
    first = TaskSchedule(CLASSIC, steps_per_visit=6, cycles=1, num_envs=2, seed=4)
    second = TaskSchedule(CLASSIC, steps_per_visit=6, cycles=1, num_envs=2, seed=4)
    try:
        first.reset()
        for _ in range(3):
            res = first.step(torch.zeros(2, dtype=torch.long))
        assert res.switch is not None
        second.load_state_dict(first.state_dict())
        assert torch.equal(second.reset(), res.obs)
        for _ in range(3):
            a, b = first.step(torch.ones(2, dtype=torch.long)), second.step(torch.ones(2, dtype=torch.long))
            assert torch.equal(a.next_obs, b.next_obs) and torch.equal(a.rewards, b.rewards)
    finally:
        first.close()
        second.close()


def test_load_state_dict_rejects_another_schedule() -> None:
    schedule = TaskSchedule(CLASSIC, steps_per_visit=6, cycles=2, num_envs=2)
    try:
        state = {**schedule.state_dict(), "task_ids": ["gym:CartPole-v1"]}
        with pytest.raises(ValueError, match="task_ids"):
            schedule.load_state_dict(state)
        with pytest.raises(ValueError, match="not a valid position"):
            schedule.load_state_dict({**schedule.state_dict(), "visit": 1, "steps": 3})
    finally:
        schedule.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task_ids": ["atari:Pongg"]}, "unknown Atari game 'Pongg'"),
        ({"task_ids": ["gym:CartPol-v1"]}, "did you mean 'CartPole-v1'"),
        ({"task_ids": ["atari:Pong", "gym:CartPole-v1"]}, "cannot mix Atari"),
        ({"task_ids": ["gym:CartPole-v1", "gym:Pendulum-v1"]}, "cannot mix discrete"),
        ({"task_ids": []}, "non-empty list"),
        ({"steps_per_visit": 0}, "steps_per_visit=0"),
        ({"num_envs": 0}, "num_envs=0"),
    ],
)
def test_bad_schedule_arguments_raise_one_line_value_errors(kwargs: dict, message: str) -> None:
    args = {"task_ids": CLASSIC, "steps_per_visit": 4, "cycles": 1, **kwargs}
    with pytest.raises(ValueError) as info:
        TaskSchedule(**args)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_minimal_action_sets_are_masked_per_game() -> None:
    options = AtariOptions(full_action_space=False)
    schedule = TaskSchedule(["atari:Pong", "atari:Breakout"], steps_per_visit=1, cycles=1,
                            atari=options)
    try:
        assert schedule.num_actions == 6
        assert schedule.action_masks.sum(1).tolist() == [6, 4]
    finally:
        schedule.close()


def test_packed_transfer_path_gives_the_same_results_as_zero_copy() -> None:
    # The non-CPU path packs rewards and flags into one copy; run it on the CPU to check it.
    a = TaskSchedule(CLASSIC, steps_per_visit=20, cycles=1, num_envs=2, seed=2)
    b = TaskSchedule(CLASSIC, steps_per_visit=20, cycles=1, num_envs=2, seed=2)
    b._zero_copy = False
    try:
        a.reset()
        b.reset()
        while not a.finished:
            ra, rb = a.step(torch.zeros(2, dtype=torch.long)), b.step(torch.zeros(2, dtype=torch.long))
            for name in ("next_obs", "obs", "rewards", "terminated", "truncated", "valid"):
                x, y = getattr(ra, name), getattr(rb, name)
                assert x.dtype == y.dtype and torch.equal(x, y), name
            assert ra.rewards.dtype == torch.float32 and ra.valid.dtype == torch.bool
    finally:
        a.close()
        b.close()
