"""Resets (Nikishin et al., 2022, "The primacy bias in deep reinforcement learning").

Periodically re-initialise the last k layers of the network (or all of it), keeping
everything else, including the replay buffer (which is not this object's business):

    θ_L ← fresh sample of L's default initialiser   for each chosen layer L

Which layers: ``layers="all"`` re-initialises every submodule that owns parameters (each
must have `reset_parameters()`); ``layers=k`` re-initialises the k weight layers
(Linear/Conv) nearest the output along the traced data flow (`plasticity.structure`):
a layer's depth is 1 when its output reaches the network's output without another
Linear/Conv, else 1 + the smallest depth among the layers it feeds; every layer of depth
<= k is reset, with the modules owning parameters between it and the next layers (its norm
layer, AdaLin slopes, …). Parallel output layers share a depth: ``layers=1`` resets both
streams of a dueling head, both twin critics' last layers, a policy's mean and log-std
heads. A network that does not trace is refused; ``layers=["fc3", ...]`` (module names)
then says explicitly which modules to reset. The paper resets the last layers (e.g. the last 1–3 of an
SAC or SPR agent) every 2·10⁴–10⁵ updates; a continual-RL run may reset at task switches.

Optimizer: the whole optimizer state of the reset parameters is deleted, so Adam restarts
them at step 0 (a reset that keeps old moments is undone within a few updates).

Targets: each target copy gets the freshly initialised layers copied in (re-sync), so
online and target agree on the reset layers right after a reset, as in the paper (which
resets target networks along with the online ones). Pass ``targets=()`` to leave them
alone.

Defaults: ``layers="all"``, ``every=None``, ``at_task_switch=True``. At least one trigger
must be set, otherwise the intervention would do nothing and construction fails.

Hidden task boundaries: `on_task_switch` is never called, so a reset configured to act only
at switches (``every=None``) would never act; it says so with ``needs_task_boundaries =
True`` and the runner refuses that combination. Give ``every=N`` for the periodic form.
Metrics: ``reset_count`` (resets done so far).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from plasticity.base import Intervention
from plasticity.layers import weight_layers
from plasticity.reinit import clear_optimizer_state, copy_into, reinit_


def _owns_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters(recurse=False))


class Reset(Intervention):
    """Re-initialise the chosen layers every `every` updates and/or at task switches."""

    name = "reset"
    needs_inputs = False
    #: what replaces a task-switch reset when the learner is not told about switches
    without_task_boundaries = "acts only with every=N (every=None needs announced switches)"

    def __init__(self, module: nn.Module, optimizer: torch.optim.Optimizer | None = None, *,
                 targets: Sequence[nn.Module] = (), layers: str | int | Sequence[str] = "all",
                 every: int | None = None, at_task_switch: bool = True) -> None:
        super().__init__()
        n_layers = len(weight_layers(module))
        if isinstance(layers, str):
            if layers != "all":
                raise ValueError(f"reset: layers must be 'all', an int >= 1 or a list of module names, "
                                 f"got {layers!r}")
        elif isinstance(layers, (list, tuple)):
            named = dict(module.named_modules())
            bad = [n for n in layers if not isinstance(n, str) or n not in named]
            if bad or not layers:
                raise ValueError(f"reset: layers names no module of {type(module).__name__}: {bad!r}")
        elif isinstance(layers, bool) or not isinstance(layers, int) or not 1 <= layers <= max(n_layers, 1):
            raise ValueError(f"reset: layers must be 'all' or an int in [1, {n_layers}], got {layers!r}")
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise ValueError(f"reset: every must be None or an int >= 1, got {every!r}")
        if every is None and not at_task_switch:
            raise ValueError("reset: every=None and at_task_switch=False would never reset; "
                             "set every >= 1 or at_task_switch=True")
        self.module = module
        self.optimizer = optimizer
        self.targets = list(targets)
        self.layers = layers
        self.every = every
        self.at_task_switch = bool(at_task_switch)
        self.needs_task_boundaries = every is None
        self.count = 0
        self.chosen = self._choose(module, layers)
        bad = [n or "<root>" for n, m in self.chosen if not callable(getattr(m, "reset_parameters", None))]
        if bad:
            raise ValueError(f"reset: module(s) {', '.join(bad)} own parameters but have no "
                             "reset_parameters(); cannot re-initialise them")
        for t in self.targets:
            tmods = dict(t.named_modules())
            for n, m in self.chosen:
                if n not in tmods or [p.shape for p in m.parameters()] != [p.shape for p in tmods[n].parameters()]:
                    raise ValueError(f"reset: target has no module {n!r} shaped like the online one")

    @staticmethod
    def _choose(module: nn.Module, layers: str | int | Sequence[str]) -> list[tuple[str, nn.Module]]:
        named = list(module.named_modules())
        if layers == "all":
            return [(n, m) for n, m in named if _owns_params(m)]
        if isinstance(layers, (list, tuple)):
            wanted = {id(m) for n, m in named if n in layers}
            inside = {id(s) for n, m in named if n in layers for s in m.modules()}
            return [(n, m) for n, m in named if (id(m) in wanted or id(m) in inside) and _owns_params(m)]
        from plasticity.structure import Structure

        st = Structure(module, "reset", "layers=['name', ...] names the modules to reset, or layers='all'")
        depth = st.depth()
        deepest = max(depth.values(), default=0)
        if layers > deepest:
            raise ValueError(f"reset: layers={layers} but {type(module).__name__} is {deepest} layers deep "
                             f"along its forward pass; valid: 1..{deepest} or 'all'")
        chosen: set[int] = set()
        for node, d in depth.items():
            if d <= layers:
                chosen.add(id(st.module_of(node)))
                chosen.update(id(m) for m in st.attached_modules(node))
        return [(n, m) for n, m in named if id(m) in chosen and _owns_params(m)]

    @property
    def parameters(self) -> list[nn.Parameter]:
        """The parameters a reset re-initialises."""
        return [p for _, m in self.chosen for p in m.parameters(recurse=False)]

    def reset(self) -> None:
        """Re-initialise the chosen modules now, clear their optimizer state, re-sync targets."""
        for _, m in self.chosen:
            reinit_(m)
        clear_optimizer_state(self.optimizer, self.parameters)
        for t in self.targets:
            tmods = dict(t.named_modules())
            for n, m in self.chosen:
                copy_into(m, tmods[n])
        self.count += 1

    def after_step(self, inputs: Any = None) -> None:
        self.updates += 1
        if self.every is not None and self.updates % self.every == 0:
            self.reset()

    def on_task_switch(self, task: int) -> None:
        if self.at_task_switch:
            self.reset()

    def metrics(self) -> dict[str, float]:
        return {"reset_count": float(self.count)}

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state.get("updates", 0))
        self.count = int(state.get("count", 0))
