"""The re-initialising interventions' toolkit (Reset, Shrink & Perturb, ReDo, CBP): fresh
values for a module, optimizer moments cleared or zeroed, and units of a neuron group
(`plasticity.layers.NeuronGroup`) recycled.

* Fresh values always come from the module's own `reset_parameters()` (the PyTorch default
  initialiser, or a subclass's override), drawn from torch's global generator, so a seeded
  run is reproducible.
* Recycling unit j of a group: fresh incoming weights ``W_L[j]``, zero bias ``bias_L[j]``,
  zero outgoing weights (every reader's columns of j, see `NeuronGroup.outgoing_columns`),
  and the optimizer moments of exactly those entries zeroed. A norm layer between L and its
  activation has per-unit parameters (γ_j, β_j; running mean/var for BatchNorm): they are
  reset to their fresh values and their moments zeroed; per-unit parameters of the
  activation (AdaLin's α_j, a per-channel PReLU's slope) are reset the same way. LayerNorm
  and GroupNorm mix units, so the outgoing-weights-zero rule keeps the output unchanged only
  without such a norm.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from plasticity.layers import NeuronGroup

#: optimizer state entries that are per-element moments (Adam/AdamW/Adamax, RMSprop, SGD)
MOMENT_KEYS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "exp_inf", "momentum_buffer",
               "square_avg", "grad_avg")


# ---------------------------------------------------------------- fresh initialisation

def _tensors(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [(n, t) for n, t in list(module.named_parameters()) + list(module.named_buffers())]


def fresh_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A fresh sample of `module`'s parameters and buffers from its own `reset_parameters()`,
    keyed like `named_parameters()` / `named_buffers()`. The module itself is left unchanged."""
    if not callable(getattr(module, "reset_parameters", None)):
        raise TypeError(f"{type(module).__name__} has no reset_parameters(); cannot draw a fresh init")
    with torch.no_grad():
        saved = {n: t.detach().clone() for n, t in _tensors(module)}
        module.reset_parameters()
        fresh = {}
        for n, t in _tensors(module):
            fresh[n] = t.detach().clone()
            t.copy_(saved[n])
    return fresh


def reinit_(module: nn.Module) -> None:
    """Re-initialise `module` in place with its `reset_parameters()` (the Parameter objects stay
    the same, so optimizers keep pointing at them)."""
    if not callable(getattr(module, "reset_parameters", None)):
        raise TypeError(f"{type(module).__name__} has no reset_parameters(); cannot re-initialise it")
    with torch.no_grad():
        module.reset_parameters()


def copy_into(src: nn.Module, dst: nn.Module) -> None:
    """Copy parameters and buffers of `src` into the same-shaped `dst`, in place."""
    with torch.no_grad():
        for (n, s), (m, d) in zip(_tensors(src), _tensors(dst)):
            if n != m or s.shape != d.shape:
                raise ValueError(f"copy_into: {n} {tuple(s.shape)} does not match {m} {tuple(d.shape)}")
            d.copy_(s)


# ---------------------------------------------------------------- optimizer state

def clear_optimizer_state(optimizer: torch.optim.Optimizer | None, params: Iterable[torch.Tensor]) -> None:
    """Delete the whole optimizer state of `params` (Adam restarts them at step 0)."""
    if optimizer is None:
        return
    for p in params:
        optimizer.state.pop(p, None)


def zero_optimizer_entries(optimizer: torch.optim.Optimizer | None, param: torch.Tensor,
                           index: torch.Tensor, dim: int = 0) -> None:
    """Zero the moments (see MOMENT_KEYS: Adam's exp_avg, exp_avg_sq, max_exp_avg_sq, …) of
    exactly the slices `index` along `dim` of `param`. The shared step count is kept."""
    if optimizer is None or param not in optimizer.state:
        return
    for key, value in optimizer.state[param].items():
        if key in MOMENT_KEYS and torch.is_tensor(value) and value.shape == param.shape:
            value.index_fill_(dim, index.to(value.device), 0.0)


# ---------------------------------------------------------------- recycling

def reinit_incoming(group: NeuronGroup, idx: torch.Tensor, optimizer: torch.optim.Optimizer | None) -> None:
    """Units `idx`: fresh incoming weights, zero bias, fresh per-unit parameters of the norm
    layer and of the activation (e.g. AdaLin's slope α_j), and the optimizer moments of those
    entries zeroed."""
    layer = group.layer
    idx = idx.to(layer.weight.device, torch.long)
    fresh = fresh_state(layer)
    with torch.no_grad():
        layer.weight[idx] = fresh["weight"][idx]
        zero_optimizer_entries(optimizer, layer.weight, idx, 0)
        if getattr(layer, "bias", None) is not None:
            layer.bias[idx] = 0.0
            zero_optimizer_entries(optimizer, layer.bias, idx, 0)
        for extra in (group.norm, group.activation):
            if extra is None or not callable(getattr(extra, "reset_parameters", None)):
                continue
            if not any(True for _ in _tensors(extra)):
                continue
            fresh_x = fresh_state(extra)
            for n, t in _tensors(extra):
                if t.dim() > 0 and t.shape[0] == group.n_units and n in fresh_x:
                    t[idx] = fresh_x[n][idx]
                    if isinstance(t, nn.Parameter):
                        zero_optimizer_entries(optimizer, t, idx, 0)


def zero_outgoing(group: NeuronGroup, idx: torch.Tensor, optimizer: torch.optim.Optimizer | None) -> None:
    """Units `idx`: zero every outgoing weight and its optimizer moments."""
    cols = group.outgoing_columns(idx)
    with torch.no_grad():
        for nl in group.next_layers:
            nl.weight.index_fill_(1, cols, 0.0)
            zero_optimizer_entries(optimizer, nl.weight, cols, 1)


def recycle(selection: Sequence[tuple[NeuronGroup, torch.Tensor]],
            optimizer: torch.optim.Optimizer | None) -> int:
    """Recycle units: all incoming re-initialisations first, then all outgoing zeroing, so a
    recycled unit's outgoing weights are zero even when the next layer's units are recycled
    too. Returns the number of units recycled."""
    count = 0
    for g, idx in selection:
        if idx.numel():
            reinit_incoming(g, idx, optimizer)
            count += idx.numel()
    for g, idx in selection:
        if idx.numel():
            zero_outgoing(g, idx, optimizer)
    return count
