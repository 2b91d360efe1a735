"""What the package knows about a network's structure, and the toolkit of the re-initialising
interventions (Reset, Shrink & Perturb, ReDo, CBP). The monitor and the metrics use the same
two definitions (`weight_layers`, `is_activation`), so "a layer" and "an activation" mean
the same thing in every intervention and every ``plasticity/*`` tag.

What it knows about a network, and how it finds it:

* **Weight layers** are the `nn.Linear` and `nn.Conv1d/2d/3d` submodules (and their
  subclasses), taken in *registration order* (`module.modules()`). Only these: the
  interventions need their in/out layout (incoming weights of unit j are ``W[j]``, outgoing
  ones a column block of the next layer), which transposed convolutions, ``nn.Bilinear`` or
  ``nn.Embedding`` do not have, although they too own a weight of two or more dimensions;
  such modules still count in whole-network norms, not as layers. For
  `nn.Sequential`-style networks registration order is the forward order. It is NOT the
  forward order when a module registers its layers in a different order than it calls
  them, or when data branches (residual connections, two heads read the same features). `neuron_groups(..., pairs=...)` takes the structure
  explicitly for such networks.
* A **neuron group** is a hidden layer L_i with the layer(s) reading its output. Neuron j is
  output unit / channel j of L_i; its *incoming* weights are `W_i[j]` (and `bias_i[j]`), its
  *outgoing* weights are the columns of the next layer that read it:
  `W_{i+1}[:, j]` for Linear→Linear and Conv→Conv, the block of columns
  `j·S:(j+1)·S` (S = H·W·… = in_features / out_channels) when a conv feeds a Linear through a
  Flatten. An activation that widens its input k times by concatenation along the feature
  (channel) dimension, such as CReLU ``[relu(x), relu(-x)]``, declares a class attribute
  ``width_multiplier = k``; unit j is then read through channels ``j, n + j, …, (k-1)·n + j``.
  Layers right after the next layer that take the same input size with no module between
  them (two parallel heads, e.g. the value and advantage streams of a dueling head) are
  treated as further readers of the same units. A pair whose shapes do not fit these rules
  (e.g. the output of one Q-network followed by the first layer of a twin) is not a hidden
  pair: that layer counts as an output layer. The LAST weight layer is always an output
  layer; output layers are never recycled.
* An **activation** module is an instance of one of `ACTIVATIONS` (the element-wise
  built-ins: ReLU, LeakyReLU, PReLU, ELU, GELU, SiLU, Mish, Tanh, Sigmoid, Hardtanh/ReLU6,
  Softsign, ...) or any module with the attribute ``is_activation = True`` (AdaLin, CReLU,
  your own; usually a class attribute). The submodules of an activation are part of it
  (`find_activations` does not search them).
* The **activation** of a group is the first activation module registered after L_i and
  before L_{i+1}. Activity is measured at its output; when there is none (functional
  activations), at the output of the norm layer if any, else of L_i itself (then it
  measures pre-activations: use activation modules).
* A **norm layer** (LayerNorm / GroupNorm / BatchNorm) between L_i and its activation has
  per-unit parameters (γ_j, β_j; running mean/var for BatchNorm) indexed by the unit on their
  first dimension. Recycling unit j resets them to their fresh values (γ=1, β=0, mean 0,
  var 1) and zeroes their optimizer moments; per-unit parameters of the activation (AdaLin's
  α_j, a per-channel PReLU's slope) are reset the same way. LayerNorm and GroupNorm mix units, so the
  outgoing-weights-zero rule keeps the network's output unchanged only when there is no such
  norm layer.

Fresh values always come from the module's own `reset_parameters()` (the PyTorch default
initialiser, or a subclass's override), drawn from torch's global generator, so a seeded
run is reproducible. Parametrised modules (`torch.nn.utils.parametrize`) are not supported.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from plasticity.base import call_module

WEIGHT_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: element-wise activation classes recognised without a flag (nn.ReLU6 is a Hardtanh)
ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Softplus, nn.Hardswish, nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardsigmoid,
    nn.Softsign,
)
NORMS: tuple[type[nn.Module], ...] = (nn.LayerNorm, nn.GroupNorm, _BatchNorm)
#: optimizer state entries that are per-element moments (Adam/AdamW/Adamax, RMSprop, SGD)
MOMENT_KEYS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "exp_inf", "momentum_buffer",
               "square_avg", "grad_avg")


def is_weight_layer(m: nn.Module) -> bool:
    return isinstance(m, WEIGHT_LAYERS)


def is_activation(m: nn.Module) -> bool:
    """An instance of `ACTIVATIONS`, or a module whose ``is_activation`` attribute (class or
    instance) is ``True`` itself (a tensor or submodule of that name does not count)."""
    return isinstance(m, ACTIVATIONS) or getattr(m, "is_activation", False) is True


def is_norm(m: nn.Module) -> bool:
    return isinstance(m, NORMS)


def weight_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """`(qualified name, layer)` of every Linear/Conv submodule (`WEIGHT_LAYERS`), in
    registration order; the name of `module` itself is ``""``."""
    return [(n, m) for n, m in module.named_modules() if is_weight_layer(m)]


def find_activations(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """`(qualified name, activation)` of every activation module (see `is_activation`) in
    registration order, not descending into a found one (AdaLin's φ, a CReLU's inner ReLU)."""
    found: list[tuple[str, nn.Module]] = []
    for name, m in module.named_modules():
        if any(outer == "" or name.startswith(f"{outer}.") for outer, _ in found):
            continue
        if is_activation(m):
            found.append((name, m))
    return found


def num_units(layer: nn.Module) -> int:
    """Output units of a Linear, output channels of a Conv."""
    return layer.out_channels if isinstance(layer, _ConvNd) else layer.out_features


def _in_size(layer: nn.Module) -> int:
    return layer.in_channels if isinstance(layer, _ConvNd) else layer.in_features


@dataclass
class NeuronGroup:
    """The units of one hidden layer and everything attached to them (see module docstring)."""

    name: str                       # qualified name of `layer` in the module
    layer: nn.Module                # L_i: incoming weights are its rows / output channels
    next_layers: tuple[nn.Module, ...]  # readers of the units (outgoing weights)
    activation: nn.Module | None    # activation module after L_i, if any
    norm: nn.Module | None          # norm layer after L_i, if any
    multiplier: int = 1             # k: the activation's width multiplier (2 for CReLU)
    spatial: int = 1                # S: columns per channel when a Conv feeds a Linear

    @property
    def n_units(self) -> int:
        return num_units(self.layer)

    @property
    def probe(self) -> nn.Module:
        """The module whose output is this group's activity."""
        return self.activation or self.norm or self.layer

    def activity(self, output: torch.Tensor) -> torch.Tensor:
        """Mean |h| per unit over the batch (and positions): shape (k, n) for a probe output."""
        if not torch.is_tensor(output):
            raise TypeError(f"{self.name}: activity needs a tensor output, got {type(output).__name__}")
        dim = 1 if isinstance(self.layer, _ConvNd) else output.dim() - 1
        width = self.multiplier * self.n_units
        if output.shape[dim] != width:
            raise RuntimeError(f"{self.name}: expected {width} units on dim {dim} of the activation, "
                               f"got shape {tuple(output.shape)}; pass explicit pairs")
        dims = [d for d in range(output.dim()) if d != dim]
        return output.detach().abs().float().mean(dim=dims).view(self.multiplier, self.n_units)

    def outgoing_columns(self, idx: torch.Tensor) -> torch.Tensor:
        """Indices along dim 1 of each next layer's weight that read units `idx`."""
        idx = idx.to(self.layer.weight.device, torch.long).flatten()
        ch = torch.cat([c * self.n_units + idx for c in range(self.multiplier)])
        if self.spatial == 1:
            return ch
        pos = torch.arange(self.spatial, device=ch.device)
        return (ch[:, None] * self.spatial + pos).flatten()

    def outgoing_abs_sum(self) -> torch.Tensor:
        """Σ|w_out| per unit and copy, shape (k, n), summed over all next layers."""
        total = None
        for nl in self.next_layers:
            s = nl.weight.detach().abs().sum(dim=0).reshape(self.multiplier, self.n_units, -1).sum(-1)
            total = s if total is None else total + s
        return total


def _between(order: list[nn.Module], start: nn.Module, stop: nn.Module | None) -> list[nn.Module]:
    i = next(k for k, m in enumerate(order) if m is start)
    j = len(order) if stop is None else next(k for k, m in enumerate(order) if m is stop)
    return order[i + 1:j]


def _make_group(name: str, layer: nn.Module, nexts: Sequence[nn.Module], activation: nn.Module | None,
                norm: nn.Module | None) -> NeuronGroup | None:
    """A group if the shapes fit a hidden pair, else None (the layer is an output layer)."""
    n = num_units(layer)
    k = int(getattr(type(activation), "width_multiplier", 1)) if activation is not None else 1
    spatial = None
    for nl in nexts:
        if isinstance(nl, _ConvNd):
            ok = isinstance(layer, _ConvNd) and nl.groups == 1 and nl.in_channels == k * n
            s = 1
        elif isinstance(layer, _ConvNd):
            ok = nl.in_features % (k * n) == 0
            s = nl.in_features // (k * n)
        else:
            ok, s = nl.in_features == k * n, 1
        if not ok or (spatial is not None and s != spatial):
            return None
        spatial = s
    return NeuronGroup(name, layer, tuple(nexts), activation, norm, k, spatial or 1)


def neuron_groups(module: nn.Module, pairs: Sequence[Sequence[Any]] | None = None) -> list[NeuronGroup]:
    """The hidden layers of `module` as neuron groups, in registration order.

    `pairs` overrides discovery: a list of ``(layer, next)`` where `next` is a layer or a list
    of layers reading `layer`'s output, optionally followed by the activation module and the
    norm module (``None`` for none): ``(layer, next, activation, norm)``.
    """
    names = {id(m): n for n, m in module.named_modules()}
    if pairs is not None:
        out = []
        for p in pairs:
            layer, nexts = p[0], p[1]
            nexts = tuple(nexts) if isinstance(nexts, (list, tuple)) else (nexts,)
            act = p[2] if len(p) > 2 else None
            norm = p[3] if len(p) > 3 else None
            if id(layer) not in names or not is_weight_layer(layer):
                raise ValueError("neuron_groups: every pair must start with a Linear/Conv layer of the module")
            g = _make_group(names[id(layer)], layer, nexts, act, norm)
            if g is None:
                raise ValueError(f"neuron_groups: shapes of {names[id(layer)]} and its next layer(s) do not fit")
            out.append(g)
        return out
    order = list(module.modules())
    layers = weight_layers(module)
    groups: list[NeuronGroup] = []
    i = 0
    while i < len(layers) - 1:
        name, layer = layers[i]
        nexts = [layers[i + 1][1]]
        j = i + 1
        # parallel readers: same kind and input size, nothing registered in between
        while (j + 1 < len(layers) and type(layers[j + 1][1]) is type(nexts[0])
               and _in_size(layers[j + 1][1]) == _in_size(nexts[0])
               and not _between(order, layers[j][1], layers[j + 1][1])):
            nexts.append(layers[j + 1][1])
            j += 1
        between = _between(order, layer, nexts[0])
        act = next((m for m in between if is_activation(m)), None)
        norm = next((m for m in between if is_norm(m)), None)
        g = _make_group(name, layer, nexts, act, norm)
        if g is not None:
            groups.append(g)
        i = j if g is not None and len(nexts) > 1 else i + 1
    return groups


# ---------------------------------------------------------------- activity measurement

def _bn_snapshot(module: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(b, b.clone()) for m in module.modules() if isinstance(m, _BatchNorm)
            for b in m.buffers(recurse=False)]


def measure_activity(module: nn.Module, groups: Sequence[NeuronGroup], inputs: Any) -> list[torch.Tensor]:
    """Mean |h| per unit of each group, shape (k, n), from one no-grad forward on `inputs`.

    Forward hooks exist only for this call (removed even on error); BatchNorm running
    statistics are restored afterwards, so the measurement leaves no trace.
    """
    stats: list[torch.Tensor | None] = [None] * len(groups)
    handles = []

    def make_hook(i: int):
        def hook(_m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
            stats[i] = groups[i].activity(out)
        return hook

    snap = _bn_snapshot(module)
    try:
        for i, g in enumerate(groups):
            handles.append(g.probe.register_forward_hook(make_hook(i)))
        with torch.no_grad():
            call_module(module, inputs)
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for b, saved in snap:
                b.copy_(saved)
    missing = [g.name for g, s in zip(groups, stats) if s is None]
    if missing:
        raise RuntimeError(f"measure_activity: no activation seen for {', '.join(missing)} "
                           "(module not called in forward?); pass explicit pairs")
    return stats  # type: ignore[return-value]


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
