"""Evaluation envs: ``n`` separate copies of one task stepped together, tensors in and out.

The :class:`~runner.evaluator.Evaluator` runs every evaluation through this small interface
(``reset(seed) -> obs``, ``step(actions) -> (obs, rewards, done)``, ``reads_are_free``,
``close()``), all tensors on the training device:

- :class:`HostEvalEnvs` wraps a ``gymnasium`` vector env of host envs (Atari, Gymnasium,
  MuJoCo): actions go to the host and observations come back once per step, and copy ``i``
  is seeded ``seed + i``.
- :class:`DeviceEvalEnvs` wraps a batched device-native env (MinAtar's
  :class:`~envs.minatar.vector.MinAtarVectorEnv`): the ``n`` copies are one game of ``n`` envs
  on the device, seeded by ``seed`` as a batch, and a step reads nothing on the host. The
  task's shifts (``shift_for``, drawn again at every reset) are applied to its tensors as the
  training schedule applies them (observation, reward and action shifts: a ``dynamics``
  shift is refused for these tasks, which have no physical parameters).

Both auto-reset on the next step; ``done`` (terminated or truncated) marks the step that ended
an episode, and what follows it belongs to the copy's next episode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from envs.shifts import NO_SHIFT, VisitShift


class HostEvalEnvs:
    """``n`` host envs (a ``gymnasium`` vector env), their observations copied to ``device``."""

    reads_are_free = True
    """A host env's ``done`` is a host value already."""

    def __init__(self, env: Any, num_envs: int, device: str | torch.device) -> None:
        self.env = env
        self.num_envs = int(num_envs)
        self.device = torch.device(device)

    def _tensor(self, x: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x), device=self.device)

    def reset(self, seed: int) -> torch.Tensor:
        """Reset copy ``i`` with seed ``seed + i``; the first observations."""
        obs, _ = self.env.reset(seed=[seed + i for i in range(self.num_envs)])
        return self._tensor(obs)

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        obs, rewards, terminated, truncated, _ = self.env.step(actions.cpu().numpy())
        done = np.asarray(terminated) | np.asarray(truncated)
        return self._tensor(obs), self._tensor(rewards), self._tensor(done)

    def close(self) -> None:
        self.env.close()


class DeviceEvalEnvs:
    """A batched device-native env, seen through the task's shift of each reset."""

    def __init__(self, env: Any, shift: Callable[[], VisitShift] | None = None) -> None:
        self.env = env
        self.num_envs = int(env.num_envs)
        self.device = env.device
        self._source = shift
        self.shift: VisitShift = NO_SHIFT

    @property
    def reads_are_free(self) -> bool:
        """The env's: True on a CPU, where reading ``done`` costs nothing."""
        return bool(self.env.reads_are_free)

    def reset(self, seed: int) -> torch.Tensor:
        """Reseed the batch with ``seed``, draw the task's shift, start every copy's episode."""
        self.shift = NO_SHIFT if self._source is None else self._source()
        return self.shift.obs(self.env.reset(seed=seed))

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.env.step(self.shift.action(actions.to(self.device)))
        return self.shift.obs(out.obs), self.shift.reward(out.rewards), out.terminated | out.truncated

    def close(self) -> None:
        self.env.close()
