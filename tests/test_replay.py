"""Tests of replay/ against hand computations and a plain-Python reference.

The real-Atari stacking test and the memory budget live in tests/test_replay_atari.py.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from test_replay_reference import FakeStackedVectorEnv, ReferenceReplay, check_buffer

from replay import Batch, make_replay
from replay.storage import FrameStorage

T, F = True, False


@pytest.fixture(autouse=True, params=["host-add", "vectorised-add"])
def add_path(request, monkeypatch):
    """Every test here runs with both ways of writing (storage.py's module docstring)."""
    monkeypatch.setattr(FrameStorage, "host_path_default", request.param == "host-add")
    return request.param


@pytest.fixture(autouse=True, params=["allocated", "growing"])
def allocation(request, monkeypatch):
    """... and with the storage allocated at once or grown from its smallest size."""
    if request.param == "growing":
        monkeypatch.setattr(FrameStorage, "initial_slots", 1)
    return request.param


def vec_buffer(kind: str = "uniform", capacity: int = 64, num_envs: int = 1, **kw):
    """A buffer of 2-float observations, no frame stacking."""
    return make_replay(kind, capacity, num_envs, (2,), torch.float32, 1, **kw)


def add_step(buf, obs, next_obs, ids, rewards, terminated=None, truncated=None, valid=None, task=0):
    n = len(ids)
    flags = lambda x: torch.tensor(x if x is not None else [False] * n)  # noqa: E731
    buf.add(torch.tensor(obs, dtype=torch.float32), torch.tensor(ids), torch.tensor(rewards, dtype=torch.float32),
            torch.tensor(next_obs, dtype=torch.float32), flags(terminated), flags(truncated),
            flags(valid if valid is not None else [True] * n), task)


def all_sampleable(buf) -> dict[int, tuple]:
    """action id -> (obs, reward, next_obs, discount, task) of every sampleable slot."""
    flat = buf.storage.sampleable().nonzero().squeeze(1)
    got = buf.storage.gather(flat)
    return {int(a): (o.tolist(), float(r), no.tolist(), float(d), int(t)) for a, o, r, no, d, t in
            zip(got.actions, got.obs, got.rewards, got.next_obs, got.discounts, got.tasks)}


def drive_fake(buf, ref: ReferenceReplay, env: FakeStackedVectorEnv, steps: int, check_every: int = 1,
               task_of=lambda t: 0) -> int:
    """Run the fake env into the buffer and the reference, checking one against the other
    every ``check_every`` steps; returns the number of sampleable transitions at the end."""
    obs, prev_done, next_id, checked = env.obs.copy(), np.zeros(env.n, dtype=bool), 0, 0
    for t in range(steps):
        next_obs, rewards, terminated, truncated = env.step()
        valid = ~prev_done
        ids = np.arange(next_id, next_id + env.n)
        next_id += env.n
        buf.add(torch.as_tensor(obs), torch.as_tensor(ids), torch.as_tensor(rewards), torch.as_tensor(next_obs),
                torch.as_tensor(terminated), torch.as_tensor(truncated), torch.as_tensor(valid), task_of(t))
        ref.add(ids, obs, rewards, next_obs, terminated, truncated, valid, task_of(t))
        prev_done = (terminated | truncated) & valid
        obs = next_obs
        if t % check_every == 0 or t == steps - 1:
            checked = check_buffer(buf, ref)
    return checked


# ---------------------------------------------------------------- stacking, boundaries, wrap
@pytest.mark.parametrize("kind", ["uniform", "prioritized"])
def test_fake_env_stacks_n_step_and_ring_wrap_match_reference(kind):
    """Every sampleable slot rebuilds exactly the env's obs / next_obs / n-step target / task,
    and the sampleable set is exactly what the spec allows, through many wraps of a tiny
    ring and unflagged task switches."""
    env = FakeStackedVectorEnv(num_envs=3, stack=4, max_len=9, seed=1)
    buf = make_replay(kind, 3 * 30, 3, (4, 3), torch.float32, 4, n_step=3, gamma=0.9, reward_clip=1.0, seed=3)
    ref = ReferenceReplay(3, buf.storage.slots, 4, 3, 0.9, 1.0)
    assert buf.storage.slots == 30
    last = drive_fake(buf, ref, env, steps=250, check_every=3, task_of=lambda t: (t // 60) % 3)
    assert sum(ref.written) > 5 * 3 * 30  # the rings wrapped several times
    assert last > 30  # and still hold many transitions (episodes here are 1-9 steps)
    if kind == "prioritized":  # non-sampleable slots hold no priority mass
        leaves = buf.sampler.tree.get(torch.arange(90))
        assert torch.equal(leaves > 0, buf.storage.sampleable())


def test_sampled_transitions_never_cross_episodes_after_wrap():
    env = FakeStackedVectorEnv(num_envs=2, stack=4, max_len=6, seed=7)
    buf = make_replay("uniform", 2 * 25, 2, (4, 3), torch.float32, 4, n_step=3, gamma=0.9, seed=0)
    ref = ReferenceReplay(2, buf.storage.slots, 4, 3, 0.9, None)
    drive_fake(buf, ref, env, steps=200, check_every=50)
    batch = buf.sample(4096)
    obs_frame, next_frame = batch.obs[:, -1], batch.next_obs[:, -1]  # [env+1, episode+1, step+1]
    assert torch.equal(obs_frame[:, :2], next_frame[:, :2])  # same env, same episode
    steps_ahead = next_frame[:, 2] - obs_frame[:, 2]
    assert ((steps_ahead >= 1) & (steps_ahead <= 3)).all()
    # discount gamma^m matches the steps actually skipped unless the episode terminated
    bootstrapped = batch.discounts > 0
    torch.testing.assert_close(batch.discounts[bootstrapped], 0.9 ** steps_ahead[bootstrapped])
    sampled = set(batch.actions.tolist())
    assert sampled <= set(ref.expected())  # only sampleable transitions are drawn
    assert len(sampled) > 0.9 * len(ref.expected())


def test_task_switch_without_flag_ends_episodes_as_truncation():
    buf = vec_buffer(n_step=3, gamma=0.5)
    for t in range(4):  # one episode of 4 steps in task 0, never flagged as ended
        add_step(buf, [[t, 0]], [[t + 1, 0]], [t], [1.0], task=0)
    add_step(buf, [[100, 1]], [[101, 1]], [4], [8.0], task=1)  # the env now plays task 1
    got = all_sampleable(buf)
    # task 0's last two starts become 2- and 1-step transitions that bootstrap
    assert got[2] == ([2, 0], 1.5, [4, 0], 0.25, 0)
    assert got[3] == ([3, 0], 1.0, [4, 0], 0.5, 0)
    assert 4 not in got  # task 1's first transition waits for its window
    add_step(buf, [[101, 1]], [[102, 1]], [5], [0.0], terminated=[T], task=1)
    got = all_sampleable(buf)
    assert got[4] == ([100, 1], 8.0, [102, 1], 0.0, 1)  # stack rebuilt from task 1 only


# ---------------------------------------------------------------- n-step and bootstrapping
@pytest.mark.parametrize("clip,expected_first", [(1.0, 0.59), (None, 1.58)])
def test_n_step_returns_match_hand_computation(clip, expected_first):
    buf = vec_buffer(n_step=3, gamma=0.9, reward_clip=clip)
    raw = [0.5, 3.0, -2.0, 0.25]  # episode A, terminated on its 4th step
    for t, r in enumerate(raw):
        add_step(buf, [[t, 0]], [[t + 1, 0]], [t], [r], terminated=[t == 3])
    add_step(buf, [[0, 9]], [[0, 9]], [99], [7.0], valid=[F])  # auto-reset step: not stored
    add_step(buf, [[10, 0]], [[11, 0]], [4], [1.0])  # episode B, truncated on its 2nd step
    add_step(buf, [[11, 0]], [[12, 0]], [5], [1.0], truncated=[T])
    got = all_sampleable(buf)
    assert sorted(got) == [0, 1, 2, 3, 4, 5]
    c = (lambda r: max(-1.0, min(1.0, r))) if clip else (lambda r: r)
    hand = {  # id: (n-step reward, next obs, discount)
        0: (expected_first, [3, 0], 0.9**3),
        1: (c(3.0) + 0.9 * c(-2.0) + 0.81 * 0.25, [4, 0], 0.0),  # terminal inside the window
        2: (c(-2.0) + 0.9 * 0.25, [4, 0], 0.0),
        3: (0.25, [4, 0], 0.0),
        4: (1.0 + 0.9 * 1.0, [12, 0], 0.81),  # truncated inside the window: bootstrap gamma^2
        5: (1.0, [12, 0], 0.9),
    }
    assert expected_first == pytest.approx(c(0.5) + 0.9 * c(3.0) + 0.81 * c(-2.0))
    for tid, (ret, next_obs, disc) in hand.items():
        assert got[tid][1] == pytest.approx(ret, abs=1e-6)
        assert got[tid][2] == next_obs
        assert got[tid][3] == pytest.approx(disc, abs=1e-7)


def test_truncated_bootstraps_terminated_does_not():
    buf = vec_buffer(num_envs=2, n_step=1, gamma=0.99)
    add_step(buf, [[0, 0], [0, 1]], [[1, 0], [1, 1]], [0, 1], [1.0, 2.0])
    add_step(buf, [[1, 0], [1, 1]], [[2, 0], [2, 1]], [2, 3], [3.0, 4.0], terminated=[T, F], truncated=[F, T])
    got = all_sampleable(buf)
    assert {k: (v[1], v[3]) for k, v in got.items()} == {
        0: (1.0, pytest.approx(0.99)), 1: (2.0, pytest.approx(0.99)), 2: (3.0, 0.0), 3: (4.0, pytest.approx(0.99))}
    assert got[2][2] == [2, 0] and got[3][2] == [2, 1]  # the final observations


# ---------------------------------------------------------------- samplers
def chi_square(counts: torch.Tensor, probs: torch.Tensor) -> float:
    expected = probs * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


def filled(kind: str, steps: int = 9, **kw):
    buf = vec_buffer(kind, capacity=32, **kw)
    for t in range(steps):
        add_step(buf, [[t, 0]], [[t + 1, 0]], [t], [0.0])
    return buf


def draw_counts(buf, draws: int, batch: int = 500) -> torch.Tensor:
    counts = torch.zeros(buf.storage.sampleable().numel())
    for _ in range(draws // batch):
        counts += torch.bincount(buf.sample(batch).indices, minlength=counts.numel())
    return counts


@pytest.mark.parametrize("sync_free", [True, False], ids=["sync-free", "host-loop"])
def test_uniform_sampler_is_uniform_over_sampleable_slots_after_wrap(sync_free):
    env = FakeStackedVectorEnv(num_envs=3, stack=4, max_len=5, seed=2)
    buf = make_replay("uniform", 3 * 40, 3, (4, 3), torch.float32, 4, seed=5)
    buf.sampler.sync_free = sync_free
    drive_fake(buf, ReferenceReplay(3, 40, 4, 1, 0.99, None), env, steps=100, check_every=99)
    valid = buf.storage.sampleable()
    counts = draw_counts(buf, 60_000)
    assert counts[~valid].sum() == 0
    k = int(valid.sum())
    assert 40 < k < 120  # short episodes: 4 non-start slots each
    # chi-square with k-1 degrees of freedom: mean k-1, sd sqrt(2(k-1)); 5 sd is far out
    assert chi_square(counts[valid], torch.full((k,), 1.0 / k)) < (k - 1) + 5 * (2 * (k - 1)) ** 0.5
    batch = buf.sample(16)
    assert isinstance(batch, Batch) and torch.equal(batch.weights, torch.ones(16))


def test_prioritized_frequencies_weights_and_updates():
    buf = filled("prioritized", alpha=0.6, beta0=0.4, beta_steps=1000, eps=1e-6)
    idx = buf.storage.sampleable().nonzero().squeeze(1)
    assert idx.tolist() == list(range(9))  # one env: slot t holds step t
    # fresh transitions all carry the max priority (1.0): uniform
    counts = draw_counts(buf, 45_000)
    assert chi_square(counts[:9], torch.full((9,), 1 / 9)) < 26.1  # chi2(8) 99.9% quantile
    td = torch.tensor([0.5, 1, 2, 3, 4, 5, 6, 7, 8], dtype=torch.float64)
    buf.update_priorities(idx, td)
    p = (td + 1e-6) ** 0.6
    torch.testing.assert_close(buf.sampler.tree.get(idx), p)
    assert buf.sampler.sample_calls == 90  # one per sample() call
    counts = draw_counts(buf, 50_000)
    assert chi_square(counts[:9], p / p.sum()) < 26.1
    assert counts[9:].sum() == 0
    torch.testing.assert_close(counts[:9] / counts.sum(), (p / p.sum()).float(), atol=0.01, rtol=0.05)
    # importance weights: beta annealed over sample calls, normalised by the batch maximum
    buf.sampler.sample_calls = 500  # half way: beta = 0.4 + 0.6 * 0.5
    batch = buf.sample(64)
    probs = p[batch.indices] / p.sum()
    expected = (9 * probs) ** -0.7 / ((9 * probs) ** -0.7).max()
    torch.testing.assert_close(batch.weights, expected.float())
    assert buf.sampler.beta == pytest.approx(0.4 + 0.6 * 501 / 1000)
    buf.sampler.sample_calls = 10_000
    assert buf.sampler.beta == 1.0
    # raising one priority raises its frequency; a new transition gets the max priority
    buf.update_priorities(idx[:1], torch.tensor([50.0]))
    p[0] = (50 + 1e-6) ** 0.6
    counts = draw_counts(buf, 20_000)
    assert counts[0] / counts.sum() == pytest.approx(float(p[0] / p.sum()), abs=0.015)
    add_step(buf, [[9, 0]], [[10, 0]], [9], [0.0])
    assert float(buf.sampler.tree.get(torch.tensor([9]))) == pytest.approx(float(p[0]))


def test_prioritized_update_does_not_revive_overwritten_slots():
    buf = filled("prioritized", steps=3)
    batch = buf.sample(8)
    for t in range(3, 60):  # wrap the 32-slot ring: the sampled slots get overwritten
        add_step(buf, [[t, 0]], [[t + 1, 0]], [t], [0.0], truncated=[t % 10 == 0])
    buf.update_priorities(batch.indices, torch.full((8,), 3.0))
    leaves = buf.sampler.tree.get(torch.arange(32))
    assert torch.equal(leaves > 0, buf.storage.sampleable())


# ---------------------------------------------------------------- state, errors
@pytest.mark.parametrize("kind,sync_free", [("uniform", True), ("uniform", False), ("prioritized", None)])
def test_state_dict_round_trip_samples_the_same(kind, sync_free):
    env = FakeStackedVectorEnv(num_envs=2, stack=4, max_len=8, seed=4)

    def make():
        buf = make_replay(kind, 2 * 30, 2, (4, 3), torch.float32, 4, n_step=2, seed=11)
        if sync_free is not None:
            buf.sampler.sync_free = sync_free
        return buf

    buf = make()
    drive_fake(buf, ReferenceReplay(2, 30, 4, 2, 0.99, None), env, steps=80, check_every=100)
    first = buf.sample(32)
    buf.update_priorities(first.indices, torch.linspace(0, 3, 32))
    saved = io.BytesIO()
    torch.save(buf.state_dict(), saved)
    restored = make()
    restored.load_state_dict(torch.load(io.BytesIO(saved.getvalue())))
    for _ in range(3):
        a, b = buf.sample(32), restored.sample(32)
        for name in Batch.__dataclass_fields__:
            assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert len(restored) == len(buf) > 0


@pytest.mark.parametrize("kwargs,message", [
    (dict(kind="lifo"), "unknown replay kind 'lifo'; valid kinds: uniform, prioritized"),
    (dict(capacity=0), "capacity must be >= 1, got 0"),
    (dict(n_step=0), "n_step must be >= 1, got 0"),
    (dict(capacity=6, num_envs=2), "capacity=6 is too small: with num_envs=2, frame_stack=1, n_step=1 it must be >= 8"),
    (dict(gamma=1.5), "gamma must be in [0, 1], got 1.5"),
])
def test_bad_arguments_raise_value_error_naming_them(kwargs, message):
    args = dict(kind="uniform", capacity=100, num_envs=1, obs_shape=(2,), obs_dtype=torch.float32, frame_stack=1)
    with pytest.raises(ValueError) as err:
        make_replay(**{**args, **kwargs})
    assert message in str(err.value)


def test_sampling_before_any_complete_transition_raises():
    buf = vec_buffer(n_step=3)
    with pytest.raises(RuntimeError, match="empty replay buffer"):
        buf.sample(4)
    add_step(buf, [[0, 0]], [[1, 0]], [0], [1.0])  # window of 3 not complete yet
    with pytest.raises(RuntimeError, match="empty replay buffer"):
        buf.sample(4)
    add_step(buf, [[1, 0]], [[2, 0]], [1], [1.0], terminated=[T])
    batch = buf.sample(64)
    assert set(batch.actions.tolist()) == {0, 1}  # the episode ended: both windows are fixed
    expected_reward = torch.where(batch.actions == 0, 1.0 + 0.99, 1.0)
    torch.testing.assert_close(batch.rewards, expected_reward)
    assert torch.equal(batch.discounts, torch.zeros(64))
