"""Gymnasium factories: observation padding, action rescaling, single and vector envs.

The tasks of one schedule share one network, so they must share one observation and one
action layout:

- :class:`PadObservation` casts a flat observation to ``float32`` and appends zeros up to
  the largest observation size of the schedule (the padded bounds are 0).
- :class:`RescaleActionToTask` (continuous tasks): the agent acts in ``[-1, 1]^A_max``;
  the task takes the first ``A_task`` dimensions, rescales them linearly to its own
  ``Box`` bounds, and ignores the rest.
- Discrete tasks keep their own ``Discrete(n)``: the schedule exposes action masks and
  rejects an action outside the current task's range (no silent remapping).

Vector envs are Gymnasium's ``SyncVectorEnv`` with next-step auto-reset (the default of
Gymnasium >= 1.0): the step after ``terminated | truncated`` returns the first observation
of a new episode with reward 0, ignores its action, and is not a transition.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from envs.tasks import TaskSpec


@dataclass(frozen=True)
class GymTaskSpaces:
    """What a Gymnasium task looks like before padding (read without keeping the env)."""

    obs_dim: int
    """Size of the flat observation."""
    discrete: bool
    """Whether the action space is ``Discrete``."""
    num_actions: int
    """Number of actions (discrete) or action dimensions (continuous)."""


class PadObservation(gymnasium.ObservationWrapper, gymnasium.utils.RecordConstructorArgs):
    """Cast a 1-D ``Box`` observation to ``float32`` and zero-pad it to ``size`` entries.

    The padded entries have bounds [0, 0] (they are always 0), which makes Gymnasium's
    passive checker warn that some minimum and maximum values are equal.
    """

    def __init__(self, env: gymnasium.Env, size: int) -> None:
        gymnasium.utils.RecordConstructorArgs.__init__(self, size=size)
        gymnasium.ObservationWrapper.__init__(self, env)
        space = env.observation_space
        if not isinstance(space, spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"PadObservation needs a 1-D Box observation space, got {space}")
        self._pad = size - space.shape[0]
        if self._pad < 0:
            raise ValueError(f"cannot pad a {space.shape[0]}-d observation down to {size}")
        zeros = np.zeros(self._pad, dtype=np.float32)
        low = np.concatenate([space.low.astype(np.float32), zeros])
        high = np.concatenate([space.high.astype(np.float32), zeros])
        self.observation_space = spaces.Box(low, high, dtype=np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """The observation as ``float32`` followed by zeros."""
        obs = np.asarray(observation, dtype=np.float32)
        if self._pad == 0:
            return obs
        return np.concatenate([obs, np.zeros(self._pad, dtype=np.float32)])


class RescaleActionToTask(gymnasium.ActionWrapper, gymnasium.utils.RecordConstructorArgs):
    """Expose ``Box(-1, 1, (size,))``; map the first ``A_task`` dims linearly to the task's bounds.

    ``a_task = low + (a + 1) / 2 * (high - low)`` for ``a = clip(action[:A_task], -1, 1)``;
    dimensions from ``A_task`` on are ignored. The task's bounds must be finite.
    """

    def __init__(self, env: gymnasium.Env, size: int) -> None:
        gymnasium.utils.RecordConstructorArgs.__init__(self, size=size)
        gymnasium.ActionWrapper.__init__(self, env)
        space = env.action_space
        if not isinstance(space, spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"RescaleActionToTask needs a 1-D Box action space, got {space}")
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise ValueError(f"cannot rescale actions to unbounded action space {space}")
        self._dims = space.shape[0]
        if size < self._dims:
            raise ValueError(f"cannot fit a {self._dims}-d action into {size} dimensions")
        self._low = space.low.astype(np.float64)
        self._half_range = (space.high.astype(np.float64) - self._low) / 2.0
        self._dtype = space.dtype
        self.action_space = spaces.Box(-1.0, 1.0, shape=(size,), dtype=np.float32)

    def action(self, action: np.ndarray) -> np.ndarray:
        """The first ``A_task`` entries of ``action`` rescaled from [-1, 1] to the task bounds."""
        a = np.clip(np.asarray(action, dtype=np.float64)[: self._dims], -1.0, 1.0)
        return (self._low + (a + 1.0) * self._half_range).astype(self._dtype)


def _require_gym(spec: TaskSpec) -> None:
    """Raise ``ValueError`` when ``spec`` is not a Gymnasium task."""
    if spec.kind != "gym":
        raise ValueError(f"task {spec.id!r} is not a Gymnasium task")


def read_spaces(spec: TaskSpec) -> GymTaskSpaces:
    """Build the raw env once, read its spaces, close it; one-line ``ValueError`` if unsupported."""
    _require_gym(spec)
    env = gymnasium.make(spec.target)
    try:
        obs_space, act_space = env.observation_space, env.action_space
    finally:
        env.close()
    if not isinstance(obs_space, spaces.Box) or len(obs_space.shape) != 1:
        raise ValueError(
            f"task {spec.id!r} has observation space {obs_space}; only flat 1-D Box "
            "observations are supported for gym: tasks"
        )
    if isinstance(act_space, spaces.Discrete) and int(act_space.start) == 0:
        return GymTaskSpaces(int(obs_space.shape[0]), True, int(act_space.n))
    if isinstance(act_space, spaces.Box) and len(act_space.shape) == 1:
        if not (np.all(np.isfinite(act_space.low)) and np.all(np.isfinite(act_space.high))):
            raise ValueError(f"task {spec.id!r} has unbounded action space {act_space}")
        return GymTaskSpaces(int(obs_space.shape[0]), False, int(act_space.shape[0]))
    raise ValueError(
        f"task {spec.id!r} has action space {act_space}; supported: Discrete(n) "
        "starting at 0 or a 1-D bounded Box"
    )


def make_gym_env(
    spec: TaskSpec, obs_dim: int | None = None, action_dim: int | None = None
) -> gymnasium.Env:
    """One Gymnasium env for ``spec`` with the schedule's padding.

    ``obs_dim``: pad observations to this size (default: the task's own; always ``float32``).
    ``action_dim``: for continuous tasks, act in ``[-1, 1]^action_dim`` with rescaling
    (default: the task's own dimension); ignored for discrete tasks.
    """
    _require_gym(spec)
    env = gymnasium.make(spec.target)
    env = PadObservation(env, obs_dim or int(env.observation_space.shape[0]))
    if isinstance(env.action_space, spaces.Box):
        env = RescaleActionToTask(env, action_dim or int(env.action_space.shape[0]))
    return env


def make_gym_vector_env(
    spec: TaskSpec, num_envs: int, obs_dim: int | None = None, action_dim: int | None = None
) -> SyncVectorEnv:
    """``num_envs`` copies of :func:`make_gym_env` in a ``SyncVectorEnv`` (next-step auto-reset).

    ``reset(seed=s)`` seeds copy ``i`` with ``s + i``.
    """
    _require_gym(spec)
    return SyncVectorEnv(
        [lambda: make_gym_env(spec, obs_dim, action_dim) for _ in range(num_envs)],
        autoreset_mode=AutoresetMode.NEXT_STEP,
    )
