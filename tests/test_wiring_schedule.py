"""TaskSchedule: the returns and lengths of the episodes of each visit, across switches, by value."""

from __future__ import annotations

import numpy as np
import torch

from envs import TaskSchedule


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
