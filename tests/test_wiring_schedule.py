"""TaskSchedule: the returns and lengths of the episodes of each visit, across switches, by value;
reset seeds, defaults, errors and the saved positions it accepts."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch

from envs import TaskSchedule, visit_seed


def test_each_visit_reports_its_own_episodes_returns_by_value() -> None:
    # Always pushing left ends CartPole episodes after ~10 steps; 13-step visits cut one mid-way,
    # and Acrobot (-1 a step) never finishes one in 13 steps: a return carried over a switch
    # would show as a CartPole return != its length, or a count off by the cut episode's steps.
    schedule = TaskSchedule(["gym:CartPole-v1", "gym:Acrobot-v1"], steps_per_visit=39, cycles=3, num_envs=3)
    try:
        schedule.reset()
        ret, length = np.zeros(3), np.zeros(3, dtype=int)
        reported: list[list[tuple]] = [[] for _ in range(schedule.num_visits)]
        expected: list[list[tuple]] = [[] for _ in range(schedule.num_visits)]
        visit = 0
        while not schedule.finished:
            res = schedule.step(torch.zeros(3, dtype=torch.long))
            valid = res.valid.numpy()
            ret += res.rewards.numpy() * valid
            length += valid
            term, trunc = res.terminated.numpy(), res.truncated.numpy()
            cut = res.switch is not None or schedule.finished
            ended = term if cut else term | trunc
            expected[visit] += [(res.task, int(i), float(ret[i]), int(length[i])) for i in np.flatnonzero(ended)]
            reported[visit] += [tuple(e) for e in res.episodes]
            ret[term | trunc], length[term | trunc] = 0, 0
            if cut:  # the next visit starts from fresh episodes
                ret[:], length[:] = 0, 0
                visit += 1
        assert reported == expected
        cartpole = [e for v in reported[0::2] for e in v]
        assert len(cartpole) >= 6 and all(e[2] == e[3] for e in cartpole)  # reward 1 a step
        assert all(e[3] <= 13 for e in cartpole)
        assert all(v == [] for v in reported[1::2])
    finally:
        schedule.close()


# --- seeding, defaults, errors and saved positions (found by mutation testing) -----------------

CLASSIC = ["gym:CartPole-v1", "gym:Acrobot-v1"]


def test_visit_seed_is_the_seed_sequence_of_the_position() -> None:
    def expected(*entropy):
        return int(np.random.SeedSequence(list(entropy)).generate_state(1)[0]) >> 2

    assert visit_seed(5, 2) == visit_seed(5, 2, 0) == expected(5, 2)
    assert visit_seed(5, 2, 3) == expected(5, 2, 3) != visit_seed(5, 2)
    assert visit_seed(5, 2, 1) == expected(5, 2, 1) != visit_seed(5, 2)
    assert 0 <= visit_seed(5, 2) < 2**30


def _cartpole_first_obs(seed: int, n: int) -> np.ndarray:
    obs = []
    for i in range(n):
        env = gymnasium.make("CartPole-v1")
        obs.append(env.reset(seed=seed + i)[0])
        env.close()
    return np.stack(obs)


def test_resets_are_seeded_by_visit_and_by_the_step_of_a_mid_visit_resume() -> None:
    schedule = TaskSchedule(["gym:CartPole-v1"], steps_per_visit=8, cycles=2, num_envs=2, seed=9)
    try:
        first = schedule.reset().numpy()
        np.testing.assert_allclose(first, _cartpole_first_obs(visit_seed(9, 0), 2))
        for _ in range(4):
            res = schedule.step(torch.zeros(2, dtype=torch.long))
        np.testing.assert_allclose(res.obs.numpy(), _cartpole_first_obs(visit_seed(9, 1), 2))
        schedule.step(torch.zeros(2, dtype=torch.long))
        schedule.load_state_dict(schedule.state_dict())  # visit 1, vector step 1
        np.testing.assert_allclose(schedule.reset().numpy(), _cartpole_first_obs(visit_seed(9, 1, 1), 2))
    finally:
        schedule.close()


def test_defaults_state_dict_and_the_finished_schedule() -> None:
    schedule = TaskSchedule(CLASSIC, steps_per_visit=3, cycles=1)
    try:
        assert schedule.state_dict() == {"task_ids": CLASSIC, "steps_per_visit": 3, "cycles": 1, "num_envs": 1,
                                         "seed": 0, "visit": 0, "steps": 0}
        with pytest.raises(RuntimeError, match=r"call reset\(\) before step\(\)"):
            schedule.step(torch.zeros(1, dtype=torch.long))
        assert schedule.make_eval_env(1).action_space.n == 3  # Acrobot's
        assert schedule.make_eval_env(0).action_space.n == 2
        with pytest.raises(ValueError, match=r"which has 2 actions \(0\.\.1\)"):
            schedule.reset()
            schedule.step(torch.tensor([2]))
        while not schedule.finished:
            schedule.step(torch.zeros(1, dtype=torch.long))
        assert schedule.task_index == 1  # the last task once finished
        with pytest.raises(RuntimeError, match="the schedule is finished: no visit left to reset"):
            schedule.reset()
        with pytest.raises(RuntimeError, match="the schedule is finished: check schedule.finished"):
            schedule.step(torch.zeros(1, dtype=torch.long))
    finally:
        schedule.close()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"cycles": 0}, "cycles=0 must be an integer >= 1"),
    ({"seed": -1}, "seed=-1 must be an integer >= 0"),
    ({"num_envs": 2.0}, "num_envs=2.0 must be an integer"),
    ({"cycles": True}, "cycles=True must be an integer"),
])
def test_more_bad_schedule_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TaskSchedule(**{"task_ids": CLASSIC, "steps_per_visit": 4, "cycles": 1, **kwargs})


def test_load_state_dict_accepts_exactly_the_valid_positions_and_compatible_schedules() -> None:
    # 2 tasks x 2 cycles, 3 vector steps of 2 envs per visit: 4 visits of 6 steps, 24 in all
    schedule = TaskSchedule(CLASSIC, steps_per_visit=6, cycles=2, num_envs=2, seed=1)
    try:
        base = schedule.state_dict()
        for visit, steps in [(0, 0), (0, 2), (0, 4), (1, 6), (3, 22), (4, 24)]:  # 24: finished
            schedule.load_state_dict({**base, "visit": visit, "steps": steps})
            assert (schedule.visit, schedule.steps) == (visit, steps)
        assert schedule.finished
        for visit, steps in [(0, 1), (0, 6), (0, 8), (1, 4), (4, 26), (5, 30), (-1, -6)]:
            with pytest.raises(ValueError, match=f"visit={visit}, steps={steps} is not a valid position"):
                schedule.load_state_dict({**base, "visit": visit, "steps": steps})
        # a run extended by cycles resumes; a saved schedule with more cycles, or any other setting, does not
        schedule.load_state_dict({**base, "cycles": 1, "visit": 1, "steps": 6})
        for key, value in [("cycles", 3), ("steps_per_visit", 4), ("num_envs", 1), ("seed", 0)]:
            with pytest.raises(ValueError, match=f"schedule state has {key}={value!r} but this schedule has"):
                schedule.load_state_dict({**base, key: value})
        with pytest.raises(ValueError, match="seed=0"):  # checked after an extended cycles too
            schedule.load_state_dict({**base, "cycles": 1, "seed": 0})
    finally:
        schedule.close()
