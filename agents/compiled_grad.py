"""Gradients of a loss with respect to one module's parameters, forward and backward in one
compiled graph.

Eager training runs the forward op by op, records the autograd graph, then walks it in
`backward()`: on a CPU with small MLPs (SAC's 256-256 networks, batch 256) that bookkeeping
costs about as much as the matrix products. `CompiledGrad` instead traces

    grads, aux = torch.func.grad(lambda params: functional_call(module, params, fn)(*args))

under `torch.compile`, so the forward, the backward and every element-wise op between them
become one graph (the matrix products stay library calls; a bias joins the element-wise
kernel after its product, `agents/inductor_passes.py`), and writes the result into
`p.grad` of the module's trainable parameters. The optimizer step that follows is the
usual eager one; a loss term added afterwards (an intervention's penalty) is handled by an
ordinary `backward()`, which accumulates onto these gradients, since gradients add.

    critic_grad = CompiledGrad(critic, lambda obs, a, y: ((critic(obs, a) - y).pow(2).mean(), None))
    aux = critic_grad(obs, a, y)       # critic's p.grad set; nothing else receives a gradient
    optimizer.step()

`fn(*args)` returns `(loss, aux)`. It may call `module` and any other module: only
`module`'s parameters are differentiated (other tensors are constants of the graph, and
the call runs under `torch.no_grad()` so nothing records an eager graph either). `aux` is
returned detached. The parameters are re-read at every call (a structure change such as
plasticity injection just triggers a recompilation). A compiled graph cannot run forward
hooks faithfully, so `usable()` tells the caller to take its eager path while a hook is
attached to any module `fn` calls (`watch`, default `[module]`): an intervention or a
monitor watching the training forward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from agents.inductor_passes import UnfuseBiasAddmm


class _Objective(nn.Module):
    """Holds `module` as a submodule so `functional_call` can swap its parameters while `fn` runs."""

    def __init__(self, module: nn.Module, fn: Callable[..., tuple[torch.Tensor, Any]]):
        super().__init__()
        self.module = module
        self.fn = fn

    def forward(self, *args: Any) -> tuple[torch.Tensor, Any]:
        return self.fn(*args)


def has_hooks(module: nn.Module) -> bool:
    """True if any submodule has a forward (pre-)hook attached."""
    return any(m._forward_hooks or m._forward_pre_hooks for m in module.modules())


class CompiledGrad:
    """`p.grad` of `module`'s trainable parameters for the loss `fn(*args)[0]`, in one compiled graph."""

    def __init__(self, module: nn.Module, fn: Callable[..., tuple[torch.Tensor, Any]], compile: bool = True,
                 watch: Sequence[nn.Module] = ()):
        self.module = module
        self.watch = [module, *watch]
        objective = _Objective(module, fn)

        def loss_of(params: dict[str, torch.Tensor], *args: Any) -> tuple[torch.Tensor, Any]:
            return torch.func.functional_call(objective, params, args)

        grad = torch.func.grad(loss_of, has_aux=True)
        self._grad = torch.compile(grad, options={"post_grad_custom_post_pass": UnfuseBiasAddmm()}) if compile else grad

    def usable(self) -> bool:
        """False while a forward hook is attached to a watched module (the caller should go eager)."""
        return not any(has_hooks(m) for m in self.watch)

    def __call__(self, *args: Any) -> Any:
        """Set `p.grad` (replacing any previous value) of every trainable parameter; return aux."""
        named = [(f"module.{n}", p) for n, p in self.module.named_parameters() if p.requires_grad]
        with torch.no_grad():
            grads, aux = self._grad({n: p.detach() for n, p in named}, *args)
        for n, p in named:
            p.grad = grads[n]
        return aux
