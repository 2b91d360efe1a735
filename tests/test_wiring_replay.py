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
