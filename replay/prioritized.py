"""Proportional prioritized replay (Schaul et al., 2016) on a sum tree."""

from __future__ import annotations

from typing import Any

import torch

from replay.sampler import StartIndex, seeded_generator
from replay.sum_tree import SumTree


class PrioritizedSampler:
    """Proportional prioritized sampling over the starts of a storage.

    * priority of a start: ``p_i = (|td_i| + eps) ** alpha``; a start that becomes
      sampleable gets the largest priority set so far (1.0 before any update); a start
      that is not sampleable has priority 0.
    * stratified sampling: row ``k`` of a batch of ``B`` draws from mass
      ``[k, k+1) * total / B``, so ``P(i) = p_i / sum_j p_j``.
    * importance weights ``w_i = (M * P(i)) ** -beta`` normalised by their maximum over the
      batch, i.e. ``(P(i) / min_batch P) ** -beta`` (``M``, the number of sampleable
      starts, cancels). ``beta`` goes linearly from ``beta0`` to 1 over ``beta_steps``
      calls of ``sample`` (counted by this sampler and saved in its state).

    The sum tree has ``num_starts + 1`` leaves (the last, "no transition", stays 0); its
    ``state_dict`` holds the leaves up to the last non-zero one, so it grows with the data.
    """

    def __init__(
        self,
        num_starts: int,
        device: torch.device | str = "cpu",
        seed: int = 0,
        alpha: float = 0.6,
        beta0: float = 0.4,
        beta_steps: int = 1_000_000,
        eps: float = 1e-6,
    ):
        device = torch.device(device)
        self.alpha, self.beta0, self.beta_steps, self.eps = alpha, beta0, beta_steps, eps
        self.generator = seeded_generator(device, seed)
        self.tree = SumTree(num_starts + 1, device)
        self.max_priority = torch.ones((), dtype=self.tree.tree.dtype, device=device)
        self.sample_calls = 0

    @property
    def beta(self) -> float:
        return self.beta0 + (1.0 - self.beta0) * min(1.0, self.sample_calls / self.beta_steps)

    def starts_changed(self, storage: StartIndex, starts: torch.Tensor) -> None:
        """A touched start that is sampleable now was just written: max priority; else 0."""
        zero = torch.zeros_like(self.max_priority)
        self.tree.set(starts, torch.where(storage.is_sampleable(starts), self.max_priority, zero))

    def sample(self, storage: StartIndex, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        tree, device = self.tree, storage.device
        offsets = torch.rand(batch_size, generator=self.generator, device=device, dtype=tree.tree.dtype)
        strata = torch.arange(batch_size, device=device, dtype=tree.tree.dtype)
        mass = (strata + offsets) / batch_size * tree.total
        starts = tree.find(mass)
        priorities = tree.get(starts)
        weights = (priorities / priorities.min()) ** -self.beta
        self.sample_calls += 1
        return starts, weights.float()

    def update_priorities(self, storage: StartIndex, starts: torch.Tensor, td_errors_abs: torch.Tensor) -> None:
        """Set the priorities of sampled starts from their absolute TD errors.

        Starts overwritten since they were sampled keep priority 0.
        """
        starts = starts.reshape(-1).long()
        priorities = (td_errors_abs.detach().reshape(-1).abs().to(self.tree.tree.dtype) + self.eps) ** self.alpha
        self.max_priority = torch.maximum(self.max_priority, priorities.max())
        still_stored = storage.is_sampleable(starts)
        self.tree.set(starts, torch.where(still_stored, priorities, torch.zeros_like(priorities)))

    def state_dict(self) -> dict[str, Any]:
        leaves = self.tree.leaves()
        nonzero = leaves.nonzero()
        used = int(nonzero[-1]) + 1 if len(nonzero) else 0
        return {
            "generator": self.generator.get_state(),
            "leaves": leaves[:used].clone(),
            "max_priority": self.max_priority.clone(),
            "sample_calls": self.sample_calls,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.tree.load_leaves(state["leaves"])
        self.max_priority = state["max_priority"].to(self.max_priority)
        self.sample_calls = int(state["sample_calls"])

    def nbytes(self) -> int:
        return self.tree.nbytes() + self.max_priority.element_size()
