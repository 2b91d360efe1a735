"""Shifts: transforms of a task, redrawn at every visit, composable with task cycling.

A task id may carry shifts after ``@``, joined by ``+``, each ``name[:key=value,...]``::

    gym:CartPole-v1@permute-obs
    gym:CartPole-v1@obs-offset:scale=2+reward-flip
    gym:Ant-v5@dynamics:params=friction,low=0.02,high=2

``--env.shift SPEC`` adds ``@SPEC`` to every task that has none. The same base task may be
listed several times with different shifts (``gym:CartPole-v1 gym:CartPole-v1@permute-obs``).

Shifts (``x`` an observation, ``r`` a reward, ``a`` the agent's action, ``v`` the visit):

- ``permute-obs``: ``x' = x[perm_v]``, a fixed permutation of the features (of the pixels of
  each frame for image observations: the last two axes), fresh per visit.
- ``obs-offset:scale=1``: ``x' = x + b_v``, ``b_v ~ N(0, scale^2)`` per feature (per pixel),
  constant over the visit (after the per-level offsets of the continual Gym control of TRAC
  and C-CHAIN). Pixels are rounded and clipped to 0..255.
- ``obs-noise:std=0.1``: ``x' = x + sigma_v * eps``, ``eps ~ N(0, 1)`` fresh each step,
  ``sigma_v ~ U(0, std)`` per visit.
- ``reward-scale:low=0.1,high=10``: ``r' = c_v r``, ``c_v`` log-uniform in ``[low, high]``.
- ``reward-flip``: ``r' = -r`` on the odd cycles (the task's 2nd, 4th, ... visit).
- ``permute-actions``: the env receives ``perm_v[a]``, a permutation of the task's own
  discrete actions (the action mask is unchanged). Discrete tasks only.
- ``dynamics:params=all,low=0.5,high=2``: each physical parameter named in ``params``
  (``/``-separated; ``all``: every one the env has, see :mod:`envs.dynamics`) is set to
  ``default * f``, ``f`` log-uniform in ``[low, high]`` per visit, before the visit's reset.

Draws are reproducible: shift ``j`` of visit ``v`` uses ``SeedSequence([seed, v, 7919, j])``
(the noise stream of ``obs-noise`` additionally the visit step it restarts at), so a
resumed run gets the same shifts from its seed and position alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from envs import dynamics
from envs.tasks import TaskSpec, parse_task, parse_tasks

_TAG = 7919  # separates shift draws from the env reset seeds ([seed, visit(, step)])

_PARAMS: dict[str, dict[str, Any]] = {
    "permute-obs": {},
    "obs-offset": {"scale": 1.0},
    "obs-noise": {"std": 0.1},
    "reward-scale": {"low": 0.1, "high": 10.0},
    "reward-flip": {},
    "permute-actions": {},
    "dynamics": {"params": "all", "low": 0.5, "high": 2.0},
}
SHIFT_NAMES = tuple(_PARAMS)


@dataclass(frozen=True)
class ShiftSpec:
    """One parsed shift: its name and parameters (defaults filled in)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


def parse_shift(text: str) -> tuple[ShiftSpec, ...]:
    """``"permute-obs+obs-offset:scale=2"`` -> specs; one-line ``ValueError`` when bad."""
    specs = []
    for part in text.split("+"):
        name, _, args = part.strip().partition(":")
        name = name.strip()
        if name not in _PARAMS:
            raise ValueError(f"unknown shift {name!r} in {text!r}; valid: {', '.join(SHIFT_NAMES)}")
        params = dict(_PARAMS[name])
        for item in filter(None, (a.strip() for a in args.split(","))):
            key, eq, value = item.partition("=")
            if not eq or key not in params:
                valid = ", ".join(params) or "none"
                raise ValueError(f"shift {name}: bad parameter {item!r}; valid keys: {valid}")
            if key == "params":
                params[key] = value.strip()
                continue
            try:
                params[key] = float(value)
            except ValueError:
                raise ValueError(f"shift {name}: {key}={value!r} is not a number") from None
        for key in ("scale", "std"):
            if key in params and params[key] < 0:
                raise ValueError(f"shift {name}: {key}={params[key]} must be >= 0")
        if "low" in params and not 0 < params["low"] <= params["high"]:
            raise ValueError(f"shift {name}: need 0 < low <= high, got low={params['low']}, high={params['high']}")
        specs.append(ShiftSpec(name, params))
    return tuple(specs)


def split_task_id(task_id: str) -> tuple[str, str]:
    """``"gym:CartPole-v1@permute-obs"`` -> ``("gym:CartPole-v1", "permute-obs")``."""
    base, _, shift = task_id.partition("@")
    return base.strip(), shift.strip()


def parse_shifted_tasks(task_ids: list[str] | tuple[str, ...]) -> tuple[list[TaskSpec], list[tuple[ShiftSpec, ...]]]:
    """Parse task ids with optional ``@shift``: the specs (id and name carry the shift) and
    each task's shifts. Base tasks are validated by :func:`envs.tasks.parse_tasks`; the
    same base may appear with different shifts, but no full id twice."""
    if isinstance(task_ids, str) or len(task_ids) == 0:
        raise ValueError(f"tasks must be a non-empty list of task ids like ['atari:Pong'], got {task_ids!r}")
    split = [split_task_id(t) if isinstance(t, str) else (t, "") for t in task_ids]
    bases = list(dict.fromkeys(base for base, _ in split))
    by_base = {base: parse_task(base) for base in bases}
    parse_tasks(list(dict.fromkeys(spec.id for spec in by_base.values())))  # kinds agree
    specs, shifts, seen = [], [], set()
    for base, text in split:
        spec, shift = by_base[base], parse_shift(text) if text else ()
        if shift:
            spec = dataclasses.replace(spec, id=f"{spec.id}@{text}", name=f"{spec.name}@{text}")
        if spec.id in seen:
            raise ValueError(f"task {spec.id!r} appears twice in {list(task_ids)}; "
                             "list each task once and use cycles to revisit it")
        seen.add(spec.id)
        specs.append(spec)
        shifts.append(shift)
    return specs, shifts


def _loguniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


class VisitShift:
    """The shifts of one visit, drawn: apply with :meth:`obs`, :meth:`reward`, :meth:`action`
    (numpy arrays or torch tensors, batched or not) and :meth:`apply_dynamics` (an env)."""

    def __init__(self) -> None:
        self.obs_perm: np.ndarray | None = None
        """Permutation of the feature (pixel) index, or None."""
        self.obs_offset: np.ndarray | None = None
        """Offset added to the features (shape: the feature shape), or None."""
        self.noise_std = 0.0
        """Std of the per-step Gaussian observation noise."""
        self.noise_seed = 0
        """Seed of the noise stream."""
        self.reward_mul = 1.0
        """Factor on the reward (scale times sign)."""
        self.action_perm: np.ndarray | None = None
        """Env action for each agent action, or None."""
        self.dynamics: dict[str, float] = {}
        """Factor per physical parameter."""
        self._image = False  # permute the last two axes (pixels) rather than the last one
        self._torch: dict[tuple[str, str], torch.Tensor] = {}
        self._gen: torch.Generator | None = None
        self._np_rng: np.random.Generator | None = None

    @property
    def changes_obs(self) -> bool:
        return self.obs_perm is not None or self.obs_offset is not None or self.noise_std > 0

    def _t(self, name: str, device: torch.device) -> torch.Tensor:
        key = (name, str(device))
        if key not in self._torch:
            self._torch[key] = torch.as_tensor(getattr(self, name), device=device)
        return self._torch[key]

    def obs(self, x: Any) -> Any:
        """The shifted observation(s); ``x`` unchanged when no shift touches observations."""
        if not self.changes_obs:
            return x
        is_t = isinstance(x, torch.Tensor)
        if not is_t:
            x = np.asarray(x)
        dtype = x.dtype
        if self.obs_perm is not None:
            if self._image:
                flat = x.flatten(-2) if is_t else x.reshape(*x.shape[:-2], -1)
                perm = self._t("obs_perm", x.device) if is_t else self.obs_perm
                x = flat[..., perm].reshape(x.shape)
            else:
                x = x[..., self._t("obs_perm", x.device) if is_t else self.obs_perm]
        if self.obs_offset is None and self.noise_std == 0:
            return x
        y = x.float() if is_t else x.astype(np.float32)
        if self.obs_offset is not None:
            y = y + (self._t("obs_offset", x.device) if is_t else self.obs_offset)
        if self.noise_std > 0:
            y = y + self.noise_std * self._noise(y)
        if dtype in (torch.uint8, np.uint8):
            y = y.round().clamp(0, 255).to(torch.uint8) if is_t else np.clip(np.rint(y), 0, 255).astype(np.uint8)
        return y

    def _noise(self, y: Any) -> Any:
        if isinstance(y, torch.Tensor):
            if self._gen is None or self._gen.device != y.device:
                self._gen = torch.Generator(device=y.device).manual_seed(self.noise_seed)
            return torch.randn(y.shape, generator=self._gen, device=y.device)
        if self._np_rng is None:
            self._np_rng = np.random.default_rng(self.noise_seed)
        return self._np_rng.standard_normal(y.shape).astype(np.float32)

    def reward(self, r: Any) -> Any:
        """``reward_mul * r`` (the input when no reward shift)."""
        if self.reward_mul == 1.0:
            return r
        if isinstance(r, (float, int)):
            return float(r) * self.reward_mul
        return r * np.float32(self.reward_mul) if isinstance(r, np.ndarray) else r * self.reward_mul

    def action(self, a: Any) -> Any:
        """The env action(s) for the agent's action(s) ``a`` (``perm[a]``)."""
        if self.action_perm is None:
            return a
        if isinstance(a, torch.Tensor):
            return self._t("action_perm", a.device)[a]
        if isinstance(a, (int, np.integer)):
            return int(self.action_perm[int(a)])
        return self.action_perm[np.asarray(a)]

    def apply_dynamics(self, env: Any) -> None:
        """Set the visit's physical parameters on ``env`` (single or vector); no-op without."""
        if self.dynamics:
            dynamics.set_factors(env, self.dynamics)


NO_SHIFT = VisitShift()
"""The identity (a task without shifts)."""


class TaskShift:
    """The shifts of one task: validated against its layout once, drawn per visit."""

    def __init__(self, specs: tuple[ShiftSpec, ...], task_id: str, obs_shape: tuple[int, ...],
                 discrete: bool, num_actions: int, action_size: int, env: Any) -> None:
        self.specs = specs
        self._obs_shape = tuple(obs_shape)
        self._image = len(self._obs_shape) >= 2
        self._feature_shape = self._obs_shape[-2:] if self._image else self._obs_shape
        self._num_actions, self._action_size = num_actions, action_size
        self._dynamics: list[str] = []
        for spec in specs:
            if spec.name == "permute-actions" and not discrete:
                raise ValueError(f"shift permute-actions needs discrete actions; task {task_id!r} is continuous")
            if spec.name == "dynamics":
                self._dynamics = self._check_dynamics(spec, task_id, env)

    @staticmethod
    def _check_dynamics(spec: ShiftSpec, task_id: str, env: Any) -> list[str]:
        singles = dynamics.sub_envs(env)
        known = dynamics.parameters(singles[0]) if singles else {}
        if not known:
            raise ValueError(f"shift dynamics: task {task_id!r} has no known physical parameters "
                             "(supported: CartPole, Pendulum, Acrobot, MountainCar, MuJoCo)")
        wanted = list(known) if spec.params["params"] == "all" else spec.params["params"].split("/")
        for name in wanted:
            if name not in known:
                raise ValueError(f"shift dynamics: task {task_id!r} has no parameter {name!r}; "
                                 f"valid: {', '.join(known)}")
        return wanted

    def draw(self, seed: int, visit: int, cycle: int, visit_step: int = 0) -> VisitShift:
        """The shifts of visit ``visit`` (cycle ``cycle``): a pure function of its arguments."""
        out = VisitShift()
        out._image = self._image
        features = int(np.prod(self._feature_shape))
        for j, spec in enumerate(self.specs):
            rng = np.random.default_rng(np.random.SeedSequence([seed, visit, _TAG, j]))
            p = spec.params
            if spec.name == "permute-obs":
                perm = rng.permutation(features)
                out.obs_perm = perm if out.obs_perm is None else out.obs_perm[perm]
            elif spec.name == "obs-offset":
                off = rng.normal(0.0, p["scale"], self._feature_shape).astype(np.float32)
                out.obs_offset = off if out.obs_offset is None else out.obs_offset + off
            elif spec.name == "obs-noise":
                out.noise_std = float(rng.uniform(0.0, p["std"]))
                out.noise_seed = int(np.random.SeedSequence([seed, visit, _TAG, j, visit_step]).generate_state(1)[0])
            elif spec.name == "reward-scale":
                out.reward_mul *= _loguniform(rng, p["low"], p["high"])
            elif spec.name == "reward-flip":
                out.reward_mul *= -1.0 if cycle % 2 else 1.0
            elif spec.name == "permute-actions":
                perm = np.arange(self._action_size)
                perm[: self._num_actions] = rng.permutation(self._num_actions)
                out.action_perm = perm if out.action_perm is None else out.action_perm[perm]
            elif spec.name == "dynamics":
                out.dynamics = {n: _loguniform(rng, p["low"], p["high"]) for n in self._dynamics}
        return out


class ShiftedEnv:
    """A single env seen through a task's shift (for evaluation).

    ``shift`` is a :class:`VisitShift` or a function returning one; a function is called
    at every ``reset`` so the env follows the schedule's current visit. Dynamics are set
    on the wrapped env before each reset.
    """

    def __init__(self, env: Any, shift: VisitShift | Any) -> None:
        self.env = env
        self._source = shift
        self.shift: VisitShift = NO_SHIFT

    def __getattr__(self, name: str) -> Any:
        return getattr(self.env, name)

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        self.shift = self._source() if callable(self._source) else self._source
        self.shift.apply_dynamics(self.env)
        obs, info = self.env.reset(**kwargs)
        return self.shift.obs(obs), info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(self.shift.action(action))
        return self.shift.obs(obs), self.shift.reward(reward), terminated, truncated, info

    def close(self) -> None:
        self.env.close()
