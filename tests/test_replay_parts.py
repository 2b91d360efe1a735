"""replay/buffer.py's own contract: `make_replay`'s defaults and the settings it hands to the
storage and the sampler, every refused argument at its boundary, the batch-size and kind
checks, sizes in bytes, and a restored empty buffer refusing to sample."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from replay import PrioritizedSampler, UniformSampler, make_replay

ARGS = dict(kind="prioritized", capacity=100, num_envs=1, obs_shape=(2,), obs_dtype=torch.float32, frame_stack=1)


def one_step(buf, t: int, terminated: bool = False) -> None:
    no = torch.tensor([False])
    buf.add(torch.tensor([[t, 0.0]]), torch.tensor([t]), torch.tensor([1.0]), torch.tensor([[t + 1, 0.0]]),
            torch.tensor([terminated]), no, ~no, 0)


def test_defaults_reach_the_storage_and_the_sampler():
    buf = make_replay(**ARGS)
    st, sa = buf.storage, buf.sampler
    assert buf.kind == "prioritized" and isinstance(sa, PrioritizedSampler)
    assert (st.n_step, st.gamma, st.reward_clip, st.action_dtype, st.action_shape) == (1, 0.99, None, torch.long, ())
    assert buf.device == st.device == torch.device("cpu")
    assert (sa.alpha, sa.beta0, sa.beta_steps, sa.eps) == (0.6, 0.4, 1_000_000, 1e-6)
    assert sa.tree.size == st.num_starts + 1
    assert torch.equal(sa.generator.get_state(), torch.Generator().manual_seed(0).get_state())
    uni = make_replay(**{**ARGS, "kind": "uniform"})
    assert uni.kind == "uniform" and isinstance(uni.sampler, UniformSampler)
    assert torch.equal(uni.sampler.generator.get_state(), torch.Generator().manual_seed(0).get_state())


def test_settings_are_handed_on():
    buf = make_replay(**{**ARGS, "capacity": 60, "num_envs": 2}, action_shape=(3,), action_dtype=torch.float32,
                      n_step=3, gamma=0.5, reward_clip=2.0, seed=9, alpha=0.3, beta0=0.2, beta_steps=50, eps=0.01)
    st, sa = buf.storage, buf.sampler
    assert (st.num_envs, st.slots, st.n_step, st.gamma, st.reward_clip) == (2, 30, 3, 0.5, 2.0)
    assert st.actions.shape[1:] == (3,) and st.actions.dtype == torch.float32
    assert (sa.alpha, sa.beta0, sa.beta_steps, sa.eps) == (0.3, 0.2, 50, 0.01)
    assert torch.equal(sa.generator.get_state(), torch.Generator().manual_seed(9).get_state())
    uni = make_replay(**{**ARGS, "kind": "uniform"}, seed=9)
    assert torch.equal(uni.sampler.generator.get_state(), torch.Generator().manual_seed(9).get_state())


@pytest.mark.parametrize("kwargs,message", [
    (dict(gamma=-0.01), "gamma must be in [0, 1], got -0.01"),
    (dict(reward_clip=0.0), "reward_clip must be None or > 0, got 0.0"),
    (dict(alpha=-0.1), "alpha must be >= 0, got -0.1"),
    (dict(beta0=-0.1), "beta0 must be in [0, 1], got -0.1"),
    (dict(beta0=1.01), "beta0 must be in [0, 1], got 1.01"),
    (dict(beta_steps=0), "beta_steps must be >= 1, got 0"),
    (dict(eps=0.0), "eps must be > 0, got 0.0"),
    (dict(capacity=0), "capacity must be >= 1, got 0"),
])
def test_each_bad_argument_is_refused_naming_it(kwargs, message):
    with pytest.raises(ValueError) as err:
        make_replay(**{**ARGS, **kwargs})
    assert str(err.value) == message


def test_boundary_values_are_accepted_and_uniform_ignores_the_prioritized_ones():
    for kwargs in (dict(gamma=0.0), dict(gamma=1.0), dict(alpha=0.0), dict(beta0=0.0), dict(beta0=1.0),
                   dict(beta_steps=1), dict(n_step=1), dict(reward_clip=0.5), dict(eps=1e-12)):
        make_replay(**{**ARGS, **kwargs})
    make_replay(**{**ARGS, "kind": "uniform"}, alpha=-1, beta0=2, beta_steps=0, eps=0)


def test_sample_checks_the_batch_size_and_sizes_add_up():
    buf = make_replay(**ARGS)
    one_step(buf, 0)
    with pytest.raises(ValueError, match="^batch_size must be >= 1, got 0$"):
        buf.sample(0)
    batch = buf.sample(1)
    assert batch.indices.tolist() == [0] and batch.actions.tolist() == [0] and batch.weights.tolist() == [1.0]
    assert len(buf) == 1
    assert buf.nbytes() == buf.storage.nbytes() + buf.sampler.nbytes() > buf.storage.nbytes()
    uni = make_replay(**{**ARGS, "kind": "uniform"})
    assert uni.nbytes() == uni.storage.nbytes()


def test_state_of_another_kind_is_refused_and_a_restored_empty_buffer_refuses_to_sample():
    buf = make_replay(**ARGS)
    state = buf.state_dict()
    assert state["kind"] == "prioritized" and set(state) == {"kind", "storage", "sampler"}
    with pytest.raises(ValueError, match="^replay state is for kind='prioritized', this buffer is kind='uniform'$"):
        make_replay(**{**ARGS, "kind": "uniform"}).load_state_dict(state)
    used = make_replay(**ARGS)
    one_step(used, 0)
    used.sample(4)
    used.load_state_dict(state)  # back to empty
    with pytest.raises(RuntimeError, match="empty replay buffer"):
        used.sample(4)
    one_step(used, 5, terminated=True)
    assert used.sample(2).actions.tolist() == [5, 5]


def fake_storage(sampleable: set[int], written: int, latest: int) -> SimpleNamespace:
    return SimpleNamespace(device=torch.device("cpu"), num_starts=written, written_starts=lambda: torch.tensor(written),
                           is_sampleable=lambda s: torch.isin(s, torch.tensor(sorted(sampleable), dtype=torch.long)),
                           latest_start=lambda: torch.tensor(latest))


def test_uniform_defaults_and_the_fallback_when_every_candidate_misses():
    s = UniformSampler()
    assert (s.proposals, s.sync_free, s.nbytes()) == (32, False, 0)  # the host loop on the CPU
    assert UniformSampler(sync_free=True).sync_free and not UniformSampler(sync_free=False).sync_free
    # sync-free: one proposal per row over 8 written starts of which only 5 is sampleable: rows
    # that miss take the latest start (3 here, to tell them apart); hits are 5
    sf = UniformSampler(seed=1, proposals=1, sync_free=True)
    starts, weights = sf.sample(fake_storage({5}, 8, 3), 64)
    assert set(starts.tolist()) == {3, 5} and weights.tolist() == [1.0] * 64
    # with enough proposals every row finds a sampleable start, the first one it drew
    sf = UniformSampler(seed=1, proposals=64, sync_free=True)
    assert set(sf.sample(fake_storage({5}, 8, 3), 64)[0].tolist()) == {5}
    # the host loop redraws until every row hits; it gives up (latest start) only when nothing is sampleable
    host = UniformSampler(seed=2)
    assert set(host.sample(fake_storage({1, 6}, 8, 3), 200)[0].tolist()) == {1, 6}
    assert host.sample(fake_storage(set(), 8, 3), 4)[0].tolist() == [3] * 4
    # candidates come from the written prefix only
    assert set(UniformSampler(seed=3).sample(fake_storage(set(range(100)), 4, 0), 400)[0].tolist()) == {0, 1, 2, 3}
    assert set(UniformSampler(seed=3, sync_free=True).sample(fake_storage(set(range(100)), 4, 0), 400)[0].tolist()) \
        == {0, 1, 2, 3}


def test_uniform_state_restores_the_draws():
    a, b = UniformSampler(seed=4), UniformSampler(seed=5)
    storage = fake_storage(set(range(50)), 50, 0)
    a.sample(storage, 3)
    b.load_state_dict(a.state_dict())
    assert set(a.state_dict()) == {"generator"}
    assert a.sample(storage, 16)[0].tolist() == b.sample(storage, 16)[0].tolist()
