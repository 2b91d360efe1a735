"""A fused Adam's step without `Optimizer.step`'s Python, and the Polyak step as one kernel.

Both call private PyTorch ops; when this PyTorch lacks one (`internals.available`), they do
the public thing instead, with the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.optim.optimizer as _optim

from agents.compile.internals import available


def optimizer_step(optimizer: torch.optim.Optimizer) -> None:
    """`optimizer.step()`, bit for bit; for a fused Adam whose state exists, without its Python.

    `torch.optim.Adam.step` spends ~50-80 µs per call on a CPU gathering its tensors (grad-mode
    handling, state checks, grouping by device and dtype) around the one `_fused_adam_` kernel
    that does the work: a SAC update takes three steps. Where nothing calls for that machinery
    (a fused, non-AMSGrad, non-maximising Adam with float hyper-parameters, no step hooks, no
    `step` wrapped by an LR scheduler, every parameter with a gradient already having state) this
    calls the same two ops the optimizer would; anything else (the first step, a state cleared
    by a reset, a hook, a PyTorch without those ops) takes `step()`.
    """
    if not _fast_adam_ok(optimizer):
        optimizer.step()
        return
    with torch.no_grad():
        for group in optimizer.param_groups:
            params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = optimizer.state[p]
                params.append(p)
                grads.append(p.grad)
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
                steps.append(state["step"])
            if not params:
                continue
            beta1, beta2 = group["betas"]
            torch._foreach_add_(steps, 1)
            torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, lr=group["lr"],
                               beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                               maximize=False)


def _fast_adam_ok(optimizer: torch.optim.Optimizer) -> bool:
    if type(optimizer) is not torch.optim.Adam or not available("fused_adam") or "step" in vars(optimizer) \
            or optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks \
            or _optim._global_optimizer_pre_hooks or _optim._global_optimizer_post_hooks:
        return False
    for group in optimizer.param_groups:
        if not group["fused"] or group["amsgrad"] or group["maximize"] or group["differentiable"] \
                or group.get("decoupled_weight_decay", False) or isinstance(group["lr"], torch.Tensor) \
                or any(isinstance(b, torch.Tensor) for b in group["betas"]):
            return False
        for p in group["params"]:
            if p.grad is not None and ("step" not in optimizer.state.get(p, ()) or p.grad.is_sparse):
                return False
    return True


@torch.no_grad()
def lerp_(targets: Sequence[torch.Tensor], sources: Sequence[torch.Tensor], weight: float) -> None:
    """t ← t + weight · (s − t) for every pair, in place: one multi-tensor kernel when this
    PyTorch has `_foreach_lerp_`, one `lerp_` per tensor otherwise (the same numbers)."""
    targets, sources = list(targets), list(sources)
    if available("foreach_lerp"):
        torch._foreach_lerp_(targets, sources, weight)
    else:
        for t, s in zip(targets, sources):
            t.lerp_(s, weight)
