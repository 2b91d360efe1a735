"""Prioritized sampling's strata, against a fake storage: B equal priorities, a batch of B
draws each start exactly once, in order; frequencies follow the priorities."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from replay.prioritized import PrioritizedSampler


def fake_storage(n: int) -> SimpleNamespace:
    return SimpleNamespace(device=torch.device("cpu"), num_starts=n, written_starts=lambda: torch.tensor(n),
                           is_sampleable=lambda s: s < n, latest_start=lambda: torch.tensor(n - 1))


@pytest.mark.parametrize("batch", [4, 7])
def test_one_draw_per_stratum(batch):
    storage = fake_storage(batch)
    sampler = PrioritizedSampler(batch, seed=3)
    sampler.starts_changed(storage, torch.arange(batch))  # all at the max priority 1
    for _ in range(20):
        starts, weights = sampler.sample(storage, batch)
        assert starts.tolist() == list(range(batch))  # row k draws from mass [k, k+1)/B
        assert weights.tolist() == [1.0] * batch


def test_frequencies_follow_the_priorities():
    storage = fake_storage(3)
    sampler = PrioritizedSampler(3, seed=0, alpha=1.0, eps=0.0)
    sampler.starts_changed(storage, torch.arange(3))
    sampler.update_priorities(storage, torch.arange(3), torch.tensor([1.0, 2.0, 5.0]))  # P = 1/8, 2/8, 5/8
    counts = torch.zeros(3)
    for _ in range(250):
        beta = sampler.beta
        starts, weights = sampler.sample(storage, 8)
        counts += torch.bincount(starts, minlength=3)
        # w_i = (P(i) / min_batch P) ** -β
        p = torch.tensor([1.0, 2.0, 5.0])[starts]
        assert torch.allclose(weights, (p / p.min()) ** -beta, rtol=1e-5)
    assert (counts / counts.sum()).tolist() == pytest.approx([1 / 8, 2 / 8, 5 / 8], abs=0.01)


def test_defaults_and_the_trimmed_checkpoint():
    s = PrioritizedSampler(8)
    assert (s.alpha, s.beta0, s.beta_steps, s.eps) == (0.6, 0.4, 1_000_000, 1e-6)
    assert s.beta == 0.4 and float(s.max_priority) == 1.0 and s.max_priority.dtype == s.tree.tree.dtype
    assert s.state_dict()["leaves"].numel() == 0  # nothing written yet
    storage = fake_storage(8)
    s.starts_changed(storage, torch.tensor([0, 2]))
    assert s.state_dict()["leaves"].tolist() == [1.0, 0.0, 1.0]  # up to the last non-zero leaf
    twin = PrioritizedSampler(8, seed=5)
    twin.load_state_dict(s.state_dict())
    assert torch.equal(twin.tree.leaves(), s.tree.leaves()) and twin.sample(storage, 4)[0].tolist() == \
        s.sample(storage, 4)[0].tolist()
    # default seed 0: the same draws as an explicit seed 0
    assert torch.equal(PrioritizedSampler(8).generator.get_state(), PrioritizedSampler(8, seed=0).generator.get_state())
    assert not torch.equal(PrioritizedSampler(8).generator.get_state(), PrioritizedSampler(8, seed=1).generator.get_state())


def test_nbytes_counts_the_tree_and_the_max_priority():
    s = PrioritizedSampler(8)  # 9 leaves -> a tree of 2 * 16 float64 nodes, plus one float64
    assert s.nbytes() == 2 * 16 * 8 + 8


def test_draws_are_float64_offsets_of_the_samplers_own_stream():
    # 1000 equal priorities, 4 strata of 250 leaves: the leaf drawn in stratum k is
    # floor(250 (k + u_k)) for the sampler's k-th float64 uniform u_k (seeded by `seed`)
    storage = fake_storage(1000)
    sampler = PrioritizedSampler(1000, seed=11)
    sampler.starts_changed(storage, torch.arange(1000))
    u = torch.rand(4, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    expected = ((torch.arange(4, dtype=torch.float64) + u) * 250).floor().long()
    assert sampler.sample(storage, 4)[0].tolist() == expected.tolist()


def test_priorities_are_computed_in_the_trees_precision_and_restored_in_it():
    storage = fake_storage(4)
    sampler = PrioritizedSampler(4, alpha=0.7, eps=1e-3)
    sampler.starts_changed(storage, torch.arange(4))
    td = torch.tensor([0.1, 0.3, 1.7, 2.9], dtype=torch.float32)  # float32 TD errors, as a network gives
    sampler.update_priorities(storage, torch.arange(4), td)
    expected = (td.double() + 1e-3) ** 0.7
    torch.testing.assert_close(sampler.tree.leaves()[:4], expected, rtol=1e-15, atol=0)
    # a state saved with a float32 max priority (a float32 tree) is read back in this tree's dtype
    state = sampler.state_dict()
    state["max_priority"] = state["max_priority"].float()
    twin = PrioritizedSampler(4)
    twin.load_state_dict(state)
    assert twin.max_priority.dtype == torch.float64 and float(twin.max_priority) == pytest.approx(2.901 ** 0.7)
