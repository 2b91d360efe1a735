"""The replay buffer an agent sees: a frame storage plus a swappable sampler.

    buf = make_replay("prioritized", capacity=1_000_000, num_envs=8, obs_shape=(4, 84, 84),
                      obs_dtype=torch.uint8, frame_stack=4, n_step=3, gamma=0.99,
                      reward_clip=1.0, device=device, seed=seed)
    buf.add(obs, actions, rewards, next_obs, terminated, truncated, valid, task)  # every env step
    batch = buf.sample(32)                                                      # every update
    target = batch.rewards + batch.discounts * q_target(batch.next_obs).max(-1).values
    loss = (batch.weights * td_loss).mean()
    buf.update_priorities(batch.indices, td.abs())                              # no-op if uniform

Everything (frames, metadata, sampler state, random generator) lives on ``device``. The storage
keeps the data (``replay/storage.py``); the sampler is handed the storage on every call and
reads it only through ``replay.sampler.StartIndex``. ``state_dict`` holds the written part of
the storage only, so a checkpoint grows with the data, not with the capacity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from replay.prioritized import PrioritizedSampler
from replay.sampler import Sampler
from replay.storage import FrameStorage
from replay.uniform import UniformSampler

REPLAY_KINDS = ("uniform", "prioritized")


@dataclass
class Batch:
    """A batch of n-step transitions, all tensors on the buffer's device, leading dim B.

    Attributes:
        obs: (B, *obs_shape) observation acted on.
        actions: (B, *action_shape) action taken.
        rewards: (B,) float32 ``sum_{k<m} gamma^k r_{t+k}`` (each r clipped if reward_clip);
            ``m`` = n, or fewer when the episode ended inside the window.
        next_obs: (B, *obs_shape) observation at ``t+m``.
        discounts: (B,) float32 ``gamma^m``, or 0 when the episode terminated inside the
            window (a truncation bootstraps).
        weights: (B,) float32 importance-sampling weights (ones for uniform replay).
        indices: (B,) long slots sampled, for ``update_priorities``.
        tasks: (B,) long task index of each transition.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    discounts: torch.Tensor
    weights: torch.Tensor
    indices: torch.Tensor
    tasks: torch.Tensor


class ReplayBuffer:
    """Frame storage + sampler behind the add / sample / update_priorities protocol."""

    storage: FrameStorage
    sampler: Sampler

    def __init__(self, storage: FrameStorage, sampler: Sampler, kind: str = "custom"):
        self.storage = storage
        self.sampler = sampler
        self.kind = kind
        self._seen_sampleable = False  # once true, the storage never becomes empty again

    @property
    def device(self) -> torch.device:
        return self.storage.device

    def add(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        next_obs: torch.Tensor,
        terminated: torch.Tensor,
        truncated: torch.Tensor,
        valid: torch.Tensor,
        task: int = 0,
    ) -> None:
        """Store one vector-env step (leading dim ``num_envs`` everywhere).

        ``valid[e]`` is False on the auto-reset step of env ``e`` (nothing is stored);
        ``obs`` is only read when an env starts an episode (otherwise it is the previous
        ``next_obs``); only the newest frame of ``next_obs`` is stored.
        """
        for starts in self.storage.add(obs, actions, rewards, next_obs, terminated, truncated, valid, task):
            self.sampler.starts_changed(self.storage, starts)

    def sample(self, batch_size: int) -> Batch:
        """Sample ``batch_size`` transitions (with replacement)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not self._seen_sampleable:  # one host sync until the first transition is complete
            if len(self) == 0:
                raise RuntimeError(
                    "cannot sample from an empty replay buffer: no transition is complete yet "
                    f"(n_step={self.storage.n_step}); add more steps first"
                )
            self._seen_sampleable = True
        indices, weights = self.sampler.sample(self.storage, batch_size)
        parts = self.storage.gather(indices)
        return Batch(
            obs=parts.obs,
            actions=parts.actions,
            rewards=parts.rewards,
            next_obs=parts.next_obs,
            discounts=parts.discounts,
            weights=weights,
            indices=indices,
            tasks=parts.tasks,
        )

    def update_priorities(self, indices: torch.Tensor, td_errors_abs: torch.Tensor) -> None:
        """New priorities from absolute TD errors (ignored by uniform replay)."""
        self.sampler.update_priorities(self.storage, indices, td_errors_abs)

    def __len__(self) -> int:
        """Number of transitions that can be sampled now (one host sync)."""
        return len(self.storage)

    def nbytes(self) -> int:
        """Bytes allocated now by the tensors of the storage and the sampler."""
        return self.storage.nbytes() + self.sampler.nbytes()

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "storage": self.storage.state_dict(), "sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["kind"] != self.kind:
            raise ValueError(f"replay state is for kind={state['kind']!r}, this buffer is kind={self.kind!r}")
        self.storage.load_state_dict(state["storage"])
        self.sampler.load_state_dict(state["sampler"])
        self._seen_sampleable = False


def make_replay(
    kind: str,
    capacity: int,
    num_envs: int,
    obs_shape: tuple[int, ...],
    obs_dtype: torch.dtype,
    frame_stack: int,
    action_shape: tuple[int, ...] = (),
    action_dtype: torch.dtype = torch.long,
    n_step: int = 1,
    gamma: float = 0.99,
    reward_clip: float | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
    alpha: float = 0.6,
    beta0: float = 0.4,
    beta_steps: int = 1_000_000,
    eps: float = 1e-6,
) -> ReplayBuffer:
    """Build a replay buffer; ``kind`` is ``"uniform"`` or ``"prioritized"``.

    ``capacity`` is the total number of stored frames over all envs (about the number of
    transitions; see ``replay/storage.py``; memory is allocated as frames are stored). ``alpha``, ``beta0``, ``beta_steps`` and
    ``eps`` only matter for prioritized replay; beta is annealed over ``sample`` calls.
    Bad values raise ``ValueError`` naming the value and what is valid.
    """
    if kind not in REPLAY_KINDS:
        raise ValueError(f"unknown replay kind {kind!r}; valid kinds: {', '.join(REPLAY_KINDS)}")
    if capacity < 1:
        raise ValueError(f"capacity must be >= 1, got {capacity}")
    if n_step < 1:
        raise ValueError(f"n_step must be >= 1, got {n_step}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    if reward_clip is not None and reward_clip <= 0:
        raise ValueError(f"reward_clip must be None or > 0, got {reward_clip}")
    if kind == "prioritized":
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if not 0.0 <= beta0 <= 1.0:
            raise ValueError(f"beta0 must be in [0, 1], got {beta0}")
        if beta_steps < 1:
            raise ValueError(f"beta_steps must be >= 1, got {beta_steps}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
    storage = FrameStorage(
        capacity, num_envs, obs_shape, obs_dtype, frame_stack, action_shape, action_dtype,
        n_step, gamma, reward_clip, device,
    )
    sampler: Sampler
    if kind == "uniform":
        sampler = UniformSampler(storage.device, seed)
    else:
        sampler = PrioritizedSampler(storage.num_starts, storage.device, seed, alpha, beta0, beta_steps, eps)
    return ReplayBuffer(storage, sampler, kind)
