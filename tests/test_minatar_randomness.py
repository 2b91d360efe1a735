"""The training path's sources of random numbers: ``TorchRandomness`` and the integer map it and
``StepDraws`` share. (The lockstep tests replay the reference's draws instead, so they never
reach this path; the slow episode-statistics tests check it only through whole episodes.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from envs.minatar.randomness import TorchRandomness, integers_from_uniform

N = 4096


def test_integers_from_uniform_is_low_plus_the_floor_of_u_times_the_span():
    u = torch.tensor([0.0, 0.5, 1 - 1e-12, 0.3], dtype=torch.float64)
    for low, high in ((0, 6), (1, 9), (3, 4)):
        out = integers_from_uniform(u, low, high)
        assert out.dtype == torch.int64
        assert out.tolist() == [low + math.floor(x * (high - low)) for x in u.tolist()]
    low, high = torch.tensor([0, 1, 2, 3]), torch.tensor([2, 9, 5, 4])  # per-env bounds
    assert integers_from_uniform(u, low, high).tolist() == [0, 5, 4, 3]
    assert integers_from_uniform(u, 0, high).tolist() == [0, 4, 4, 1]
    # [N, k] uniforms: env i's row takes env i's bounds
    u2 = torch.tensor([[0.0, 0.99], [0.5, 0.25], [0.7, 0.1], [0.2, 0.9]], dtype=torch.float64)
    expected = [[lo + math.floor(x * (hi - lo)) for x in row]
                for row, lo, hi in zip(u2.tolist(), low.tolist(), high.tolist())]
    assert integers_from_uniform(u2, low, high).tolist() == expected
    assert integers_from_uniform(u2, 0, high).tolist() == [[math.floor(x * hi) for x in row]
                                                          for row, hi in zip(u2.tolist(), high.tolist())]
    assert integers_from_uniform(u2, 1, 9).tolist() == [[1 + math.floor(x * 8) for x in row] for row in u2.tolist()]


def within_5_se(counts: np.ndarray, p: float) -> bool:
    """Every count of ``counts`` (out of ``counts.sum()`` draws) is within 5 standard errors of ``p``."""
    total = counts.sum()
    return bool(np.all(np.abs(counts / total - p) < 5 * math.sqrt(p * (1 - p) / total)))


def test_torch_randomness_draws_each_value_of_its_range_equally_often():
    random = TorchRandomness(N, seed=3)
    mask = torch.zeros(N, dtype=torch.bool)  # ignored: every env draws
    u = random.uniform(mask)
    assert u.shape == (N,) and u.dtype == torch.float32 and 0 <= float(u.min()) and float(u.max()) < 1
    assert within_5_se(np.histogram(u.numpy(), bins=4, range=(0, 1))[0], 1 / 4)
    assert random.uniform(mask, 3).shape == (N, 3)

    rows = random.integers(1, 9, mask)  # Seaquest's spawn row
    assert rows.shape == (N,) and rows.dtype == torch.int64
    assert set(rows.tolist()) == set(range(1, 9))
    assert within_5_se(np.bincount(rows.numpy())[1:], 1 / 8)
    speeds = random.integers(1, 6, mask, size=8)  # Freeway's car speeds
    assert speeds.shape == (N, 8) and set(speeds.view(-1).tolist()) == set(range(1, 6))

    low = torch.arange(N) % 3
    high = low + 1 + torch.arange(N) % 4  # spans 1-4, per env
    draws = torch.stack([random.integers(low, high, mask) for _ in range(8)], 1)
    assert draws.shape == (N, 8) and bool(((draws >= low[:, None]) & (draws < high[:, None])).all())
    span4 = draws[(high - low) == 4] - low[(high - low) == 4][:, None]
    assert within_5_se(np.bincount(span4.view(-1).numpy(), minlength=4), 1 / 4)
    from_zero = random.integers(0, high, mask)
    assert bool(((from_zero >= 0) & (from_zero < high)).all()) and int(from_zero.max()) == int(high.max()) - 1
    sized = random.integers(low, high, mask, size=5)
    assert sized.shape == (N, 5) and bool(((sized >= low[:, None]) & (sized < high[:, None])).all())
    assert set((sized - low[:, None])[(high - low) == 4].view(-1).tolist()) == {0, 1, 2, 3}


@pytest.mark.parametrize("draw", [
    lambda r, m: r.uniform(m),
    lambda r, m: r.integers(0, 1000, m, size=2),
    lambda r, m: r.integers(torch.zeros(N, dtype=torch.long), torch.full((N,), 1000), m),
])
def test_torch_randomness_is_a_seeded_stream_that_state_dict_restores(draw):
    mask = torch.ones(N, dtype=torch.bool)
    a, b, c = TorchRandomness(N, seed=7), TorchRandomness(N, seed=7), TorchRandomness(N, seed=8)
    first = draw(a, mask)
    assert torch.equal(first, draw(b, mask)) and not torch.equal(first, draw(c, mask))
    saved = a.state_dict()
    ahead = draw(a, mask)
    assert not torch.equal(ahead, first)
    c.load_state_dict(saved)  # another source takes a's place in its stream
    assert torch.equal(draw(c, mask), ahead)
    a.seed(7)  # back to the start
    assert torch.equal(draw(a, mask), first)
    assert torch.equal(draw(TorchRandomness(N), mask), draw(TorchRandomness(N, seed=0), mask))  # seed 0 by default


def test_the_recorder_logs_each_reference_call_with_what_it_returned():
    from collections import deque

    from envs.minatar.randomness import RandomStateRecorder

    sink: deque = deque()
    recorder, twin = RandomStateRecorder(np.random.RandomState(5), sink), np.random.RandomState(5)
    values = [recorder.rand(), recorder.rand(3), recorder.randint(6), recorder.randint(1, 9),
              recorder.randint(low=0, high=4, size=2), recorder.randint(2, 7, size=(3,))]
    expected = [twin.rand(), twin.rand(3), twin.randint(6), twin.randint(1, 9), twin.randint(0, 4, 2),
                twin.randint(2, 7, 3)]
    for got, want, draw in zip(values, expected, sink):
        assert np.array_equal(got, want) and np.array_equal(draw.value, want)
    assert [d.describe() for d in sink] == ["rand()", "rand(3)", "randint(0, 6)", "randint(1, 9)",
                                            "randint(0, 4, size=2)", "randint(2, 7, size=3)"]
    assert [(d.method, d.low, d.high, d.size) for d in sink][:3] == [("rand", 0, 0, None), ("rand", 0, 0, 3),
                                                                     ("randint", 0, 6, None)]
    values[1][0] = -1.0  # the reference may change a returned array in place: the log keeps its own copy
    assert sink[1].value[0] == expected[1][0]
    with pytest.raises(NotImplementedError, match=r"^RandomStateRecorder records 0-d or 1-d rand\(\) only$"):
        recorder.rand(2, 2)


def test_recorded_randomness_replays_per_env_and_refuses_any_other_call():
    from envs.minatar.randomness import RecordedRandomness

    source = RecordedRandomness(3)
    refs = [source.recorder(i, np.random.RandomState(i)) for i in range(3)]
    drawn = [[r.rand(), r.randint(1, 9), r.rand(2)] for r in refs]
    assert source.remaining() == 9
    u = source.uniform(torch.tensor([True, False, True]))
    assert u.dtype == torch.float64 and u.tolist() == [drawn[0][0], 0.0, drawn[2][0]]
    assert source.remaining() == 7 and source.popped == 2  # env 1's queue is untouched
    assert source.uniform(torch.tensor([False, True, False]))[1] == drawn[1][0]
    rows = source.integers(1, 9, torch.ones(3, dtype=torch.bool))
    assert rows.dtype == torch.int64 and rows.tolist() == [d[1] for d in drawn]
    pairs = source.uniform(torch.tensor([True, True, False]), size=2)
    assert pairs.shape == (3, 2) and pairs[:2].tolist() == [d[2].tolist() for d in drawn[:2]]
    assert pairs[2].tolist() == [0.0, 0.0]

    with pytest.raises(AssertionError, match=r"^env 2 draw 8: the game asked for randint\(0, 2, size=2\) "
                                             r"but the reference drew rand\(2\)$"):
        source.integers(0, 2, torch.tensor([False, False, True]), size=2)
    refs[0].randint(0, 5)
    with pytest.raises(AssertionError, match=r"^env 0 draw 8: the game asked for randint\(0, 4\) "
                                             r"but the reference drew randint\(0, 5\)$"):
        source.integers(0, 4, torch.tensor([True, False, False]))
    refs[1].randint(0, 5, size=2)
    with pytest.raises(AssertionError, match=r"the game asked for randint\(0, 5\) but the reference drew "
                                             r"randint\(0, 5, size=2\)$"):
        source.integers(0, 5, torch.tensor([False, True, False]))
    refs[1].randint(3, 5)
    with pytest.raises(AssertionError, match=r"asked for randint\(2, 5\) but the reference drew randint\(3, 5\)$"):
        source.integers(torch.tensor([0, 2, 0]), 5, torch.tensor([False, True, False]))  # per-env bounds
    refs[1].rand()
    with pytest.raises(AssertionError, match=r"asked for rand\(1\) but the reference drew rand\(\)$"):
        source.uniform(torch.tensor([False, True, False]), size=1)
    with pytest.raises(AssertionError, match=r"^env 1: the game asked for rand\(\) but the reference drew "
                                             r"nothing more$"):
        source.uniform(torch.tensor([False, True, False]))
