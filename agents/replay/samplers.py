"""Samplers: which stored transitions a batch is made of.

A sampler sees the storage only through flat start indices (``env * slots + slot``) and
the storage's ``start_valid`` mask; after each add the storage hands it the rows whose
sampleability may have changed (``starts_changed``). Swapping uniform for prioritized replay is swapping
the sampler, the storage is the same.

* ``UniformSampler``: uniform over sampleable starts by vectorised rejection sampling.
* ``PrioritizedSampler``: proportional prioritized replay (Schaul et al., 2016) on a sum tree.

Both draw from their own ``torch.Generator`` on the storage device, seeded from ``seed``
and saved in ``state_dict`` so a resumed run samples the same batches.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from agents.replay.storage import FrameStorage
from agents.replay.sum_tree import SumTree


def _generator(device: torch.device, seed: int) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


class Sampler(Protocol):
    """What ``ReplayBuffer`` needs from a sampler."""

    def starts_changed(self, rows: torch.Tensor) -> None: ...

    def sample(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (flat start indices (B,) long, importance weights (B,) float32)."""
        ...

    def update_priorities(self, indices: torch.Tensor, td_errors_abs: torch.Tensor) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def nbytes(self) -> int: ...


class UniformSampler:
    """Uniform over sampleable starts, by rejection from the rectangle of envs x written ring slots.

    Two ways to draw, the same distribution (every sampleable start equally likely):

    * ``sync_free`` (the default off the CPU): each batch row draws ``proposals`` candidates
      at once and keeps the first sampleable one, with no host round trip. A row whose
      candidates all miss (probability ``(1 - f)^proposals`` with ``f`` the sampleable
      fraction of the written slots: below 1e-19 once f >= 3/4) takes the newest sampleable
      start instead.
    * host loop (the default on the CPU, where reading a tensor costs nothing): one candidate
      per row, redrawn for the rows that missed until every row holds a sampleable start;
      a few small ops instead of ``batch x proposals`` candidates.
    """

    def __init__(self, storage: FrameStorage, seed: int = 0, proposals: int = 32, sync_free: bool | None = None):
        self.storage = storage
        self.proposals = proposals
        self.sync_free = storage.device.type != "cpu" if sync_free is None else sync_free
        self.generator = _generator(storage.device, seed)

    def starts_changed(self, rows: torch.Tensor) -> None:
        """The storage's ``start_valid`` mask is all this sampler needs."""

    def sample(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        storage, device = self.storage, self.storage.device
        weights = torch.ones(batch_size, dtype=torch.float32, device=device)
        if not self.sync_free:
            return self._sample_host_loop(batch_size), weights
        shape = (batch_size, self.proposals)
        written = storage.next_slot.max().clamp(min=1, max=storage.slots)
        envs = torch.randint(0, storage.num_envs, shape, generator=self.generator, device=device)
        slots = torch.randint(0, 2**62, shape, generator=self.generator, device=device) % written
        candidates = envs * storage.slots + slots
        ok = storage.start_valid[candidates]
        first_ok = ok.to(torch.uint8).argmax(dim=1, keepdim=True)  # argmax returns the first maximum
        chosen = candidates.gather(1, first_ok).squeeze(1)
        indices = torch.where(ok.any(dim=1), chosen, storage.latest_start)
        return indices, weights

    def _draw(self, n: int, written: int) -> torch.Tensor:
        cell = torch.randint(0, self.storage.num_envs * written, (n,), generator=self.generator,
                             device=self.storage.device)
        return cell // written * self.storage.slots + cell % written

    def _sample_host_loop(self, batch_size: int) -> torch.Tensor:
        storage = self.storage
        written = min(max(int(storage.next_slot.max()), 1), storage.slots)
        indices = self._draw(batch_size, written)
        missed = (~storage.start_valid[indices]).nonzero().squeeze(1)
        for _ in range(10_000):  # each round keeps a fraction f of the misses; f > 0 once sampling is allowed
            if len(missed) == 0:
                return indices
            redrawn = self._draw(len(missed), written)
            indices[missed] = redrawn
            missed = missed[~storage.start_valid[redrawn]]
        return torch.where(storage.start_valid[indices], indices, storage.latest_start)

    def update_priorities(self, indices: torch.Tensor, td_errors_abs: torch.Tensor) -> None:
        """Uniform replay has no priorities."""

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])

    def nbytes(self) -> int:
        return 0


class PrioritizedSampler:
    """Proportional prioritized replay.

    * priority of a start: ``p_i = (|td_i| + eps) ** alpha``; a start that becomes
      sampleable gets the largest priority set so far (1.0 before any update); a start
      that is not sampleable has priority 0.
    * stratified sampling: row ``k`` of a batch of ``B`` draws from mass
      ``[k, k+1) * total / B``, so ``P(i) = p_i / sum_j p_j``.
    * importance weights ``w_i = (M * P(i)) ** -beta`` normalised by their maximum over the
      batch, i.e. ``(P(i) / min_batch P) ** -beta`` (``M``, the number of sampleable
      starts, cancels). ``beta`` goes linearly from ``beta0`` to 1 over ``beta_steps``
      calls of ``sample`` (counted by this sampler and saved in its state).
    """

    def __init__(
        self,
        storage: FrameStorage,
        seed: int = 0,
        alpha: float = 0.6,
        beta0: float = 0.4,
        beta_steps: int = 1_000_000,
        eps: float = 1e-6,
    ):
        self.storage = storage
        self.alpha, self.beta0, self.beta_steps, self.eps = alpha, beta0, beta_steps, eps
        self.generator = _generator(storage.device, seed)
        self.tree = SumTree(storage.scratch + 1, storage.device)  # the scratch leaf stays 0
        self.max_priority = torch.ones((), dtype=self.tree.tree.dtype, device=storage.device)
        self.sample_calls = 0

    @property
    def beta(self) -> float:
        return self.beta0 + (1.0 - self.beta0) * min(1.0, self.sample_calls / self.beta_steps)

    def starts_changed(self, rows: torch.Tensor) -> None:
        """A touched start that is sampleable now was just written: max priority; else 0."""
        zero = torch.zeros_like(self.max_priority)
        self.tree.set(rows, torch.where(self.storage.start_valid[rows], self.max_priority, zero))

    def sample(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        tree, device = self.tree, self.storage.device
        offsets = torch.rand(batch_size, generator=self.generator, device=device, dtype=tree.tree.dtype)
        strata = torch.arange(batch_size, device=device, dtype=tree.tree.dtype)
        mass = (strata + offsets) / batch_size * tree.total
        indices = tree.find(mass)
        priorities = tree.get(indices)
        weights = (priorities / priorities.min()) ** -self.beta
        self.sample_calls += 1
        return indices, weights.float()

    def update_priorities(self, indices: torch.Tensor, td_errors_abs: torch.Tensor) -> None:
        """Set the priorities of sampled starts from their absolute TD errors.

        Starts overwritten since they were sampled keep priority 0.
        """
        indices = indices.reshape(-1).long()
        priorities = (td_errors_abs.detach().reshape(-1).abs().to(self.tree.tree.dtype) + self.eps) ** self.alpha
        self.max_priority = torch.maximum(self.max_priority, priorities.max())
        still_stored = self.storage.start_valid[indices]
        self.tree.set(indices, torch.where(still_stored, priorities, torch.zeros_like(priorities)))

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.get_state(),
            "tree": self.tree.tree.clone(),
            "max_priority": self.max_priority.clone(),
            "sample_calls": self.sample_calls,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.tree.tree.copy_(state["tree"])
        self.max_priority = state["max_priority"].to(self.max_priority)
        self.sample_calls = int(state["sample_calls"])

    def nbytes(self) -> int:
        return self.tree.nbytes() + self.max_priority.element_size()
