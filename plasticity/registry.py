"""Interventions by name, for command lines: `swr:lam=1e-3 redo:tau=0.1,every=1000`.

A spec is `name[:key=value[,key=value...]]`. Values are read as int, float, bool
(`true`/`false`), `none`, or else kept as strings. The reserved key `on` names which of an
agent's networks the intervention is attached to, joined by `+` (for example
`redo:on=critic` or `swr:on=actor+critic`); without it the intervention goes on every
network. Architecture options (`adalin`, `crelu`, `layernorm`) are not objects that act
on a step: they change how the networks are built, and `architecture()` reports them.

Names are the interventions' own (`name`, the prefix of their TensorBoard tags, and the
file that defines them): `weight_clipping`, `shrink_perturb`, ...; the older spellings
`clip`, `wclip` and `snp` are accepted as aliases.

Parameters are checked against each class's constructor; ranges are checked by the
constructor itself, which raises `ValueError` with one line naming the bad value.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any

# CLI name -> (submodule, class name). The CLI name is the intervention's `name` (its
# TensorBoard tag prefix) and, where it has a file of its own, the file's name.
INTERVENTIONS: dict[str, tuple[str, str]] = {
    "swr": ("swr", "SoftWeightRescaling"),
    "l2": ("l2", "L2"),
    "l2init": ("l2", "L2Init"),
    "weight_clipping": ("weight_clipping", "WeightClipping"),
    "reset": ("reset", "Reset"),
    "shrink_perturb": ("shrink_perturb", "ShrinkPerturb"),
    "redo": ("redo", "ReDo"),
    "cbp": ("cbp", "ContinualBackprop"),
    "injection": ("injection", "PlasticityInjection"),
}
# older CLI spellings, still accepted
ALIASES: dict[str, str] = {"clip": "weight_clipping", "wclip": "weight_clipping", "snp": "shrink_perturb"}
# CLI name -> (network option, value)
ARCHITECTURE: dict[str, tuple[str, str]] = {
    "adalin": ("activation", "adalin"),
    "crelu": ("activation", "crelu"),
    "layernorm": ("norm", "layer"),
}
_POSITIONAL = {"module", "optimizer", "targets", "self"}


@dataclass
class InterventionSpec:
    """One parsed `name:key=value,...` entry."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    on: tuple[str, ...] | None = None  # networks to attach to; None: all

    @property
    def is_architecture(self) -> bool:
        return self.name in ARCHITECTURE


def _value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def intervention_class(name: str) -> type:
    module, cls = INTERVENTIONS[name]
    return getattr(importlib.import_module(f"plasticity.{module}"), cls)


def _parameters(name: str) -> dict[str, inspect.Parameter]:
    sig = inspect.signature(intervention_class(name).__init__)
    return {k: p for k, p in sig.parameters.items() if k not in _POSITIONAL and p.kind != p.VAR_KEYWORD}


def parse(spec: str) -> InterventionSpec:
    """Parse one spec; unknown names and parameters are refused in one line."""
    name, _, rest = spec.partition(":")
    name = name.strip().lower()
    name = ALIASES.get(name, name)
    valid = sorted([*INTERVENTIONS, *ARCHITECTURE])
    if name not in INTERVENTIONS and name not in ARCHITECTURE:
        raise ValueError(f"unknown intervention {name!r} in --plasticity {spec!r}; valid: {', '.join(valid)}")
    params: dict[str, Any] = {}
    on = None
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq:
            raise ValueError(f"--plasticity {spec!r}: expected key=value, got {item!r}")
        if key == "on":
            on = tuple(v for v in value.split("+") if v)
            continue
        params[key] = _value(value.strip())
    if name in ARCHITECTURE:
        if params:
            raise ValueError(f"--plasticity {spec!r}: {name} takes no parameters (it is a network option)")
        return InterventionSpec(name, {}, on)
    allowed = _parameters(name)
    for key in params:
        if key not in allowed:
            raise ValueError(f"unknown parameter {key!r} for {name} in --plasticity {spec!r}; "
                             f"valid: {', '.join(sorted(allowed)) or 'none'}, on")
    return InterventionSpec(name, params, on)


def parse_all(specs: list[str] | tuple[str, ...]) -> list[InterventionSpec]:
    return [parse(s) for s in specs]


def architecture(specs: list[InterventionSpec]) -> dict[str, str]:
    """The network options the architecture specs ask for, e.g. {"activation": "adalin"}."""
    out: dict[str, str] = {}
    for s in specs:
        if s.is_architecture:
            option, value = ARCHITECTURE[s.name]
            if option in out and out[option] != value:
                raise ValueError(f"--plasticity asks for two {option}s: {out[option]} and {value}")
            out[option] = value
    return out


def build(spec: InterventionSpec, module, optimizer=None, targets=()):
    """Instantiate the intervention of `spec` on a module, its optimizer and target copies."""
    cls = intervention_class(spec.name)
    return cls(module, optimizer, targets=tuple(targets), **spec.params)


def help_text() -> str:
    """Every intervention with its parameters and defaults, for --plasticity-help."""
    lines = ["Interventions (--plasticity NAME[:key=value,...] ...; applied in the order given;",
             "  on=NET[+NET] attaches to some of the agent's networks: q for DQN, actor/critic for SAC):"]
    for name in INTERVENTIONS:
        try:
            cls = intervention_class(name)
        except (ImportError, AttributeError) as err:  # a broken install
            lines.append(f"  {name:15s} unavailable ({err})")
            continue
        doc = (inspect.getdoc(cls) or "").partition("\n")[0]
        params = ", ".join(f"{k}={p.default!r}" for k, p in _parameters(name).items())
        aliases = [a for a, n in ALIASES.items() if n == name]
        lines.append(f"  {name:15s} {doc}" + (f" (alias: {', '.join(aliases)})" if aliases else ""))
        lines.append(f"  {'':15s}   {params}")
        hidden = getattr(cls, "without_task_boundaries", None)
        if hidden:
            lines.append(f"  {'':15s}   hidden task boundaries: {hidden}")
    lines.append("Network options (change how the networks are built):")
    for name, (option, value) in ARCHITECTURE.items():
        lines.append(f"  {name:15s} {option}={value}")
    return "\n".join(lines)
