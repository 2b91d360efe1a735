"""Physical parameters of an environment that the ``dynamics`` shift rescales.

Each supported family names its parameters and where they live in the simulator:

- ``CartPole``: ``gravity`` -> ``gravity``; ``length`` -> ``length`` (half the pole);
  ``mass`` -> ``masspole`` (``total_mass`` and ``polemass_length`` are kept consistent).
- ``Pendulum``: ``gravity`` -> ``g``; ``length`` -> ``l``; ``mass`` -> ``m``.
- ``Acrobot``: ``length`` -> ``LINK_LENGTH_1/2`` and the centres of mass ``LINK_COM_POS_1/2``;
  ``mass`` -> ``LINK_MASS_1/2`` (its gravity is a constant inside the integrator).
- ``MountainCar``: ``gravity`` -> ``gravity``.
- MuJoCo (any env with a ``model``): ``friction`` -> ``model.geom_friction[:, 0]`` (the
  sliding coefficient of every geom); ``mass`` -> ``model.body_mass``; ``gravity`` ->
  ``model.opt.gravity``.

:func:`set_factors` multiplies each parameter's *default* value (read from the env the
first time it is touched and kept on it) by a factor, so repeated visits never compound.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

_DEFAULTS = "_dynamics_defaults"


def _attrs(*names: str) -> tuple[Callable[[Any], Any], Callable[[Any, Any], None]]:
    """Getter / setter of plain attributes (each scaled by the same factor)."""

    def get(u: Any) -> tuple[float, ...]:
        return tuple(float(getattr(u, n)) for n in names)

    def put(u: Any, values: tuple[float, ...]) -> None:
        for n, x in zip(names, values):
            setattr(u, n, x)

    return get, put


def _model_array(field: str, column: int | None = None):
    """Getter / setter of a MuJoCo model array (one column of it when ``column`` is set)."""

    def target(u: Any) -> np.ndarray:
        return u.model.opt.gravity if field == "gravity" else getattr(u.model, field)

    def get(u: Any) -> np.ndarray:
        a = target(u)
        return (a[:, column] if column is not None else a).copy()

    def put(u: Any, values: np.ndarray) -> None:
        a = target(u)
        if column is not None:
            a[:, column] = values
        else:
            a[...] = values

    return get, put


def _cartpole_sync(u: Any) -> None:
    u.total_mass = u.masspole + u.masscart
    u.polemass_length = u.masspole * u.length


_FAMILIES: dict[str, dict[str, tuple]] = {
    "CartPoleEnv": {"gravity": _attrs("gravity"), "length": _attrs("length"), "mass": _attrs("masspole")},
    "PendulumEnv": {"gravity": _attrs("g"), "length": _attrs("l"), "mass": _attrs("m")},
    "AcrobotEnv": {
        "length": _attrs("LINK_LENGTH_1", "LINK_LENGTH_2", "LINK_COM_POS_1", "LINK_COM_POS_2"),
        "mass": _attrs("LINK_MASS_1", "LINK_MASS_2"),
    },
    "MountainCarEnv": {"gravity": _attrs("gravity")},
}
_MUJOCO = {
    "friction": _model_array("geom_friction", 0),
    "mass": _model_array("body_mass"),
    "gravity": _model_array("gravity"),
}


def parameters(env: Any) -> dict[str, tuple]:
    """``{name: (get, set)}`` of the dynamics parameters of ``env`` (``{}``: none known)."""
    u = getattr(env, "unwrapped", env)
    if hasattr(u, "model") and hasattr(getattr(u, "model"), "geom_friction"):
        return _MUJOCO
    for cls in type(u).__mro__:
        if cls.__name__ in _FAMILIES:
            return _FAMILIES[cls.__name__]
    return {}


def sub_envs(env: Any) -> list[Any]:
    """The single envs inside a vector env (``[env]`` for a single env); ``[]`` if opaque."""
    if hasattr(env, "envs"):
        return list(env.envs)
    if hasattr(env, "unwrapped") and not hasattr(env, "num_envs"):
        return [env]
    return []


def set_factors(env: Any, factors: dict[str, float]) -> None:
    """Set each named parameter of ``env`` (single or vector) to ``default * factor``."""
    for single in sub_envs(env):
        u = single.unwrapped
        params = parameters(u)
        if not hasattr(u, _DEFAULTS):
            setattr(u, _DEFAULTS, {name: get(u) for name, (get, _) in params.items()})
        defaults = getattr(u, _DEFAULTS)
        for name, factor in factors.items():
            default = defaults[name]
            value = default * factor if isinstance(default, np.ndarray) else tuple(x * factor for x in default)
            params[name][1](u, value)
        if type(u).__name__ == "CartPoleEnv" or any(c.__name__ == "CartPoleEnv" for c in type(u).__mro__):
            _cartpole_sync(u)
