"""Shrink & Perturb (Ash & Adams, 2020, "On warm-starting neural network training").

Instead of continuing from the trained weights (which generalises worse) or starting
over (which forgets everything), shrink the weights towards zero and add a little noise:

    θ ← α·θ + σ·ε,    ε ~ the layer's own initialiser (a fresh sample of the same layer)

for the weight and bias of every weight layer (Linear/Conv; norm parameters and other
parameters such as AdaLin slopes are left alone), at task switches and/or every N updates.

Defaults: α (``alpha``, shrink) = 0.4 and σ (``sigma``, noise scale) = 0.1, at task switches
only. The paper sweeps both (shrink λ ∈ (0, 1], noise scale from 0 up) for warm-started
image classifiers; 0.4 / 0.1 is our reading of its recommended region, not a value tuned for
RL (later plasticity work in RL uses e.g. α = 0.8). Treat them as a starting point to sweep.

Optimizer: by default (``reset_optimizer=True``) the whole optimizer state of the perturbed
parameters is deleted, so Adam restarts at step 0: its moments describe gradients of the
old, unshrunk weights. ``reset_optimizer=False`` keeps them.

Targets: each target copy gets the perturbed weight layers copied in (re-sync), so online
and target agree right after the perturbation, as for Reset. Pass ``targets=()`` to leave
them alone (the target then catches up through its own update).

ε is drawn from torch's global generator (seeded by ``--seed``): calling
``layer.reset_parameters()`` on a copy of each layer, in registration order, right after the
same ``torch.manual_seed`` reproduces it.
Hidden task boundaries: `on_task_switch` is never called, so with ``every=None`` (switches
only) nothing would happen; it says so with ``needs_task_boundaries = True`` and the runner
refuses that combination. Give ``every=N`` for the periodic form.
CLI name ``shrink_perturb`` (alias ``snp``).
Metrics: ``shrink_perturb_count`` (perturbations done so far).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from plasticity.base import Intervention
from plasticity.layers import weight_layers
from plasticity.reinit import clear_optimizer_state, copy_into, fresh_state


class ShrinkPerturb(Intervention):
    """θ ← α·θ + σ·ε on every weight layer, at task switches and/or every `every` updates."""

    name = "shrink_perturb"
    needs_inputs = False
    #: what replaces a perturbation at task switches when the learner is not told about them
    without_task_boundaries = "acts only with every=N (every=None needs announced switches)"

    def __init__(self, module: nn.Module, optimizer: torch.optim.Optimizer | None = None, *,
                 targets: Sequence[nn.Module] = (), alpha: float = 0.4, sigma: float = 0.1,
                 every: int | None = None, at_task_switch: bool = True,
                 reset_optimizer: bool = True) -> None:
        super().__init__()
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"shrink_perturb: alpha must be in [0, 1], got {alpha!r}")
        if not float(sigma) >= 0.0:
            raise ValueError(f"shrink_perturb: sigma must be >= 0, got {sigma!r}")
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise ValueError(f"shrink_perturb: every must be None or an int >= 1, got {every!r}")
        if every is None and not at_task_switch:
            raise ValueError("shrink_perturb: every=None and at_task_switch=False would never act; "
                             "set every >= 1 or at_task_switch=True")
        self.layers = weight_layers(module)
        if not self.layers:
            raise ValueError("shrink_perturb: the module has no Linear/Conv layer to perturb")
        self.module = module
        self.optimizer = optimizer
        self.targets = list(targets)
        self.alpha = float(alpha)
        self.sigma = float(sigma)
        self.every = every
        self.at_task_switch = bool(at_task_switch)
        self.reset_optimizer = bool(reset_optimizer)
        self.needs_task_boundaries = every is None
        self.count = 0
        for t in self.targets:
            tmods = dict(t.named_modules())
            for n, m in self.layers:
                if n not in tmods or tmods[n].weight.shape != m.weight.shape:
                    raise ValueError(f"shrink_perturb: target has no layer {n!r} shaped like the online one")

    def perturb(self) -> None:
        """Apply θ ← α·θ + σ·ε now to every weight layer."""
        params = []
        for _, layer in self.layers:
            eps = fresh_state(layer)
            with torch.no_grad():
                for n, p in layer.named_parameters(recurse=False):
                    p.mul_(self.alpha).add_(eps[n], alpha=self.sigma)
                    params.append(p)
        if self.reset_optimizer:
            clear_optimizer_state(self.optimizer, params)
        for t in self.targets:
            tmods = dict(t.named_modules())
            for n, layer in self.layers:
                copy_into(layer, tmods[n])
        self.count += 1

    def after_step(self, inputs: Any = None) -> None:
        self.updates += 1
        if self.every is not None and self.updates % self.every == 0:
            self.perturb()

    def on_task_switch(self, task: int) -> None:
        if self.at_task_switch:
            self.perturb()

    def metrics(self) -> dict[str, float]:
        return {"shrink_perturb_count": float(self.count)}

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state.get("updates", 0))
        self.count = int(state.get("count", 0))
