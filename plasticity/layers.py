"""One definition of what a layer, an activation, a norm and a neuron group are. The monitor,
the metrics, every intervention and the agents' networks (`make_activation`, `make_norm`)
use these definitions, so "a layer" and "an activation" mean the same thing everywhere; the
re-initialising interventions' toolkit over them (fresh values, optimizer moments, recycling
units) is `plasticity.reinit`.

* **Weight layers** are the `nn.Linear` and `nn.Conv1d/2d/3d` submodules (and their
  subclasses; `WEIGHT_LAYERS`). Only these: the interventions need their in/out layout
  (incoming weights of unit j are ``W[j]``, outgoing ones a column block of the next
  layer), which transposed convolutions, ``nn.Bilinear`` or ``nn.Embedding`` do not have;
  such modules still count in whole-network norms, not as layers.
* An **activation** module is an instance of one of `ACTIVATIONS` (the element-wise
  built-ins) or any module with the attribute ``is_activation = True`` (AdaLin, CReLU, your
  own). The submodules of an activation are part of it. Functional activations
  (``F.relu``, ``torch.tanh``, ``x.relu()``) are recognised in the traced forward pass
  (`plasticity.structure.ACTIVATION_FUNCTIONS`).
* A **norm** is an instance of `NORMS` (LayerNorm, GroupNorm, BatchNorm/InstanceNorm,
  RMSNorm).
* How they are connected is read from the forward pass, not from the registration order:
  see `plasticity.structure`. A **neuron group** is a hidden layer L with the layers
  reading its output. Neuron j is output unit / channel j of L; its *incoming* weights are
  ``W_L[j]`` (and ``bias_L[j]``), its *outgoing* weights the columns of every reader that
  read it: ``W_next[:, j]`` for Linear→Linear and Conv→Conv, the block ``j·S:(j+1)·S``
  (S = in_features / out_channels) when a conv feeds a Linear through a flatten. An
  activation that widens its input k times by concatenation along the feature dimension
  (CReLU ``[relu(x), relu(-x)]``) declares ``width_multiplier = k``; unit j is then read
  through channels ``j, n + j, …, (k-1)·n + j``. Output layers are never recycled.
* A **norm layer** between L and its activation (γ_j, β_j; running mean/var for BatchNorm)
  and the activation's own per-unit parameters (AdaLin's α_j, a per-channel PReLU's slope)
  belong to L's group (`NeuronGroup.norm`, `.activation`). Parametrised modules
  (`torch.nn.utils.parametrize`) are not supported.
"""

from __future__ import annotations

from collections.abc import Sequence
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
#: normalisation layers: LayerNorm, GroupNorm, BatchNorm*d / InstanceNorm*d, RMSNorm
NORMS: tuple[type[nn.Module], ...] = (
    nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)
#: activation names accepted by `make_activation` (the networks' ``activation=`` option)
ACTIVATION_NAMES = ("relu", "leaky_relu", "tanh", "gelu", "adalin", "crelu")
#: norm names accepted by `make_norm` (the networks' ``norm=`` option)
NORM_NAMES = (None, "layer")


def make_activation(name: str, num_features: int) -> nn.Module:
    """The activation module called `name` (one of `ACTIVATION_NAMES`); `num_features` sizes
    AdaLin's per-neuron slopes (AdaLin here is the ReLU-based one)."""
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU(0.01)
    if name == "tanh":
        return nn.Tanh()
    if name == "gelu":
        return nn.GELU()
    if name == "adalin":
        from plasticity.adalin import AdaLin

        return AdaLin("relu", num_features)
    if name == "crelu":
        from plasticity.crelu import CReLU

        return CReLU()
    raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATION_NAMES)}")


def activation_width_multiplier(name: str) -> int:
    """How many times wider the named activation's output is than its input (2 for CReLU)."""
    return 2 if name == "crelu" else 1


def make_norm(name: str | None, num_features: int, conv: bool) -> nn.Module | None:
    """The norm layer called `name` (one of `NORM_NAMES`): ``"layer"`` is LayerNorm over the
    features of a vector, GroupNorm with one group (LayerNorm over (C, H, W) with a
    per-channel affine) for a feature map; None is no norm."""
    if name is None:
        return None
    if name == "layer":
        return nn.GroupNorm(1, num_features) if conv else nn.LayerNorm(num_features)
    raise ValueError(f"unknown norm {name!r}; valid: none, layer")


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
    structure: Any = None           # the traced Structure it comes from (None: explicit pairs)
    probe_node: Any = None          # the traced node whose value is the group's activity
    hook_module: nn.Module | None = None  # a module called once whose output is that value

    @property
    def n_units(self) -> int:
        return num_units(self.layer)

    @property
    def probe(self) -> nn.Module | None:
        """The module whose output is this group's activity, when a forward hook can read it
        (None when the activity is the output of a functional activation or of a module
        called several times: then only the traced probe can read it)."""
        if self.structure is not None:
            return self.hook_module
        return self.activation or self.norm or self.layer

    def activity(self, output: torch.Tensor, signed: bool = False) -> torch.Tensor:
        """Mean |h| (mean h if `signed`) per unit over the batch (and positions): shape (k, n)."""
        if not torch.is_tensor(output):
            raise TypeError(f"{self.name}: activity needs a tensor output, got {type(output).__name__}")
        dim = 1 if isinstance(self.layer, _ConvNd) else output.dim() - 1
        width = self.multiplier * self.n_units
        if output.shape[dim] != width:
            raise RuntimeError(f"{self.name}: expected {width} units on dim {dim} of the activation, "
                               f"got shape {tuple(output.shape)}; pass explicit pairs")
        dims = [d for d in range(output.dim()) if d != dim]
        h = output.detach().float()
        return (h if signed else h.abs()).mean(dim=dims).view(self.multiplier, self.n_units)

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


def make_group(name: str, layer: nn.Module, nexts: Sequence[nn.Module], activation: nn.Module | None,
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


def neuron_groups(module: nn.Module, pairs: Sequence[Sequence[Any]] | None = None,
                  who: str = "plasticity") -> list[NeuronGroup]:
    """The hidden layers of `module` as neuron groups, in forward order, read from the traced
    forward pass (`plasticity.structure.Structure`; a module that does not trace is refused
    with a ValueError naming it).

    `pairs` gives the structure explicitly instead: a list of ``(layer, next)`` where `next`
    is a layer or a list of layers reading `layer`'s output, optionally followed by the
    activation module and the norm module (``None`` for none): ``(layer, next, activation,
    norm)``. Activity is then read by forward hooks on the activation (else norm, else layer).
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
                raise ValueError(f"{who}: every pair must start with a Linear/Conv layer of the module")
            g = make_group(names[id(layer)], layer, nexts, act, norm)
            if g is None:
                raise ValueError(f"{who}: shapes of {names[id(layer)]} and its next layer(s) do not fit")
            out.append(g)
        return out
    from plasticity.structure import Structure

    hint = "pairs=[(layer, next_layers, activation, norm), ...]"
    return Structure(module, who, hint).groups()


# ---------------------------------------------------------------- activity measurement

def _bn_snapshot(module: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(b, b.clone()) for m in module.modules() if isinstance(m, _BatchNorm)
            for b in m.buffers(recurse=False)]


def measure_activity(module: nn.Module, groups: Sequence[NeuronGroup], inputs: Any,
                     signed: bool = False) -> Any:
    """Mean |h| per unit of each group, shape (k, n), from one no-grad forward on `inputs`;
    with `signed`, the pair (mean |h| list, mean h list).

    Groups read from the traced structure are measured by running the traced graph up to
    their activation nodes (this reads functional activations and shared modules exactly);
    groups given by explicit pairs by forward hooks on their activation modules.

    Forward hooks exist only for this call (removed even on error); BatchNorm running
    statistics are restored afterwards, so the measurement leaves no trace.
    """
    stats: list[torch.Tensor | None] = [None] * len(groups)
    means: list[torch.Tensor | None] = [None] * len(groups)
    handles = []

    def make_hook(i: int):
        def hook(_m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
            stats[i] = groups[i].activity(out)
            means[i] = groups[i].activity(out, signed=True)
        return hook

    snap = _bn_snapshot(module)
    structure = groups[0].structure if groups else None
    if structure is not None and all(g.structure is structure for g in groups):
        probe = structure.probe([g.probe_node for g in groups])
        try:
            with torch.no_grad():
                outs = call_module(probe, inputs)
        finally:
            with torch.no_grad():
                for b, saved in snap:
                    b.copy_(saved)
        absolute = [g.activity(o) for g, o in zip(groups, outs)]
        if signed:
            return absolute, [g.activity(o, signed=True) for g, o in zip(groups, outs)]
        return absolute
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
    if signed:
        return stats, means
    return stats  # type: ignore[return-value]
