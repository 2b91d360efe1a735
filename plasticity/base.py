"""The intervention interface: small objects with optional hooks around an update step.

An intervention is attached to what it may touch: the module it acts on, the optimizer
that trains that module (so a method that re-initialises weights can clear exactly the
matching Adam moments), and optionally target copies of the module (kept consistent after
a reset). It knows nothing of DQN, SAC or environments: the loop that drives it is

    interventions = [pl.SWR(model, lam=1e-3), pl.ReDo(model, optimizer, tau=0.1)]
    for batch in data:
        loss = compute_loss(model, batch)
        for iv in interventions:                 # extra loss terms (L2, L2-Init, ...)
            extra = iv.loss()
            if extra is not None:
                loss = loss + extra
        optimizer.zero_grad(); loss.backward(); optimizer.step()
        for iv in interventions:                 # in the order given
            iv.after_step(batch.inputs)          # rescale, recycle, perturb, clip...
    # when the task changes (if the learner is told):
    for iv in interventions:
        iv.on_task_switch(task)

Every hook is optional; the defaults do nothing. `after_step` counts the updates itself,
so periodic methods (`every=N`) need no step argument. `metrics()` returns the
intervention's own scalars (logged under `plasticity/<name>`), and `state_dict()` /
`load_state_dict()` carry whatever it must keep across a checkpoint.
"""

from __future__ import annotations

from typing import Any

import torch

Inputs = "torch.Tensor | tuple[torch.Tensor, ...] | None"


class Intervention:
    """Base class of every plasticity intervention. Subclasses override what they need."""

    #: short name used for logging tags, e.g. ``plasticity/swr_scale``
    name: str = "intervention"

    def __init__(self) -> None:
        self.updates = 0  # number of completed `after_step` calls

    def loss(self) -> torch.Tensor | None:
        """An extra term added to the learner's loss before `backward()`, or None."""
        return None

    def after_step(self, inputs: Any = None) -> None:
        """Called right after `optimizer.step()`. `inputs` is a batch the module accepts
        (a tensor, or a tuple of positional arguments), used by methods that need
        activations (ReDo); others ignore it."""
        self.updates += 1

    def on_task_switch(self, task: int) -> None:
        """Called when the learner is told that the task changed (task index)."""

    def metrics(self) -> dict[str, float]:
        """Scalars describing what the intervention did, keyed by tag suffix."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state.get("updates", 0))


def call_module(module: torch.nn.Module, inputs: Any) -> torch.Tensor:
    """Run `module` on `inputs`: a tensor, or a tuple of positional arguments."""
    if isinstance(inputs, (tuple, list)):
        return module(*inputs)
    return module(inputs)
