"""An agent's gradient step for one learnable: compiled when possible, eager otherwise."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from agents.base import Learnable, extra_loss
from agents.compile.compiled_grad import CompiledGrad


def loss_gradients(learnable: Learnable, compiled: CompiledGrad | None,
                   objective: Callable[..., tuple[torch.Tensor, Any]], args: tuple,
                   inputs: list[torch.Tensor] | None = None) -> Any:
    """Set `p.grad` of `objective(*args)[0]` + the interventions' loss terms (`extra_loss`) for
    the learnable's parameters (or only `inputs`); return the objective's detached aux values.

    Through `compiled` when it is given and `compiled.usable()` (no hook on a network the loss
    calls, the PyTorch internals present); an intervention's loss term then adds its gradient by
    an ordinary `backward()`, since gradients add. Otherwise the eager forward and `backward()`.
    """
    if compiled is not None and compiled.usable():
        aux = compiled(*args)  # replaces p.grad
        total = extra_loss(learnable)
    else:
        loss, aux = objective(*args)
        extra = extra_loss(learnable)
        total = loss if extra is None else loss + extra
        learnable.optimizer.zero_grad(set_to_none=True)
    if total is not None:
        total.backward(inputs=inputs)
    return aux
