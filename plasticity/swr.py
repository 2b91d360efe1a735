"""Soft Weight Rescaling (SWR).

Paper: Oh, Park, Han & Kim, "Recovering Plasticity of Neural Networks via Soft Weight
Rescaling" (2025, arXiv:2507.04683).

After every optimizer step, for each weight layer l (Linear/Conv) in forward order:

    c_l = lam * ||W_l^init|| / ||W_l|| + (1 - lam)        (Frobenius norms)
    W_l <- c_l * W_l
    b_l <- C_l * b_l,       C_l = C_in(l) * c_l          (one running product per path)

where C_in(l) is the product of the layer that feeds l (1 for a layer reading the
network's input), read from the traced forward pass (`plasticity.structure`), not from
the registration order. So each branch of a forked network keeps its own product: in a
twin critic ``q1`` and ``q2`` each compute exactly ``C_q1 * q1(x)`` and ``C_q2 * q2(x)``;
a policy's ``mean`` and ``log_std`` heads, a dueling head's value and advantage streams
each get their encoder's product times their own c. With Linear/Conv layers and
positively homogeneous activations (ReLU, LeakyReLU, ReLU-AdaLin/PReLU, CReLU,
max-pooling, flatten) every branch output is exactly ``C_branch * f_branch(x)``: the
output is scaled, its argmax is not. (A dueling head combines two streams with different
products, so its Q-values are each stream scaled by its own C, not one common C.)
A normalisation layer (LayerNorm, GroupNorm, BatchNorm, InstanceNorm, RMSNorm) removes the
scale of its input, so the product restarts there: its gain gamma is rescaled with its own
c (from ||gamma^init||), the product restarts at that c, and its shift beta is scaled by it.

Residual sums (IMPALA blocks, ``x + f(x)``): the two operands carry different products
(``f``'s layers multiply theirs in), so the sum is not exactly a scaled copy of the old
sum. SWR still rescales every layer by its own c; the product after a sum (or a
concatenation, or any op with several tensor inputs) is the product of its FIRST operand,
i.e. the skip path in ``x + f(x)``, and the layers after the block scale their biases with
it. ``||W^init||`` is recorded once, when SWR is attached.

Defaults: ``lam=1e-3`` (the paper's value for CNNs; it sweeps lam in {1, 1e-1, 1e-2,
1e-3, 1e-4}), ``every=1`` (every update). ``head_lam`` (default: same as ``lam``) is
used for the layers of the head, which is ``head`` (a submodule or its dotted name) or,
when ``head=None``, every output layer (each layer whose output reaches the network's
output without passing another Linear/Conv: both twin critics' last layers, both policy
heads, both dueling streams).

A network that does not trace with torch.fx is refused at construction; ``chain=True``
then says explicitly to rescale in registration order as one chain (one product through
all layers, exact only for a plain chain whose registration order is its forward order;
head_lam then goes to the last layer). The layer list is fixed at construction: layers
added later (plasticity injection) are not rescaled, and a layer whose weight is frozen
(``requires_grad=False``) is skipped (c = 1, bias untouched; its branch keeps the product
it receives). A layer whose current norm is 0 is left alone (c = 1). Target networks and
optimizer state are not touched (``optimizer`` and ``targets`` are accepted for the
common signature only): a target is re-synced by the agent on its own schedule.

Cost: per layer one norm, two scalar ops and two in-place multiplies, all on the
parameters' device with no host synchronisation (only ``metrics()`` reads values back).
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

from plasticity.base import Intervention
from plasticity.layers import is_norm, is_weight_layer


class _Layer:
    """One rescaled layer: its weight, optional bias, whether it restarts the product."""

    __slots__ = ("module", "weight", "bias", "restart", "lam", "init_norm", "scaled_init", "src", "name")

    def __init__(self, module: nn.Module, restart: bool, lam: float, name: str = "") -> None:
        self.module = module
        self.name = name
        self.src: int | None = None  # index of the layer whose product feeds this one
        self.weight: torch.Tensor | None = getattr(module, "weight", None)
        self.bias: torch.Tensor | None = getattr(module, "bias", None)
        self.restart = restart
        self.lam = lam
        self.init_norm: torch.Tensor | None = None  # ||W^init||
        self.scaled_init: torch.Tensor | None = None  # lam * ||W^init||, used every step

    def set_init_norm(self, norm: torch.Tensor) -> None:
        self.init_norm = norm
        self.scaled_init = norm * self.lam


def _check_lam(label: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise ValueError(f"swr: {label} must be in (0, 1], got {value!r}")
    return float(value)


class SoftWeightRescaling(Intervention):
    """Rescale every layer towards its initial norm after each update (see module doc).

    Args:
        module: the network to rescale.
        optimizer: unused (common signature).
        targets: unused (common signature); target copies are left alone.
        lam: rescaling rate of the encoder layers, in (0, 1].
        head_lam: rescaling rate of the head layers, in (0, 1]; None means ``lam``.
        head: the head, as a submodule of ``module`` or its dotted name; None means the
            last Linear/Conv layer.
        every: rescale after every ``every``-th update (>= 1).
        chain: rescale in registration order as one chain instead of reading the traced
            forward pass (for a network that does not trace; see the module docstring).
    """

    name = "swr"

    def __init__(
        self,
        module: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        targets: Iterable[nn.Module] = (),
        lam: float = 1e-3,
        head_lam: float | None = None,
        head: str | nn.Module | None = None,
        every: int = 1,
        chain: bool = False,
    ) -> None:
        super().__init__()
        self.lam = _check_lam("lam", lam)
        self.head_lam = self.lam if head_lam is None else _check_lam("head_lam", head_lam)
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"swr: every must be an integer >= 1, got {every!r}")
        self.every = every
        self.module = module
        self.chain = bool(chain)
        self.layers = self._collect(module, head)
        if not any(not layer.restart for layer in self.layers):
            raise ValueError(f"swr: module {type(module).__name__} has no Linear/Conv layer")
        with torch.no_grad():
            for layer in self.layers:
                if layer.weight is not None:
                    layer.set_init_norm(torch.linalg.vector_norm(layer.weight.detach()))
        self._scale: torch.Tensor | None = None  # output scale C of the last rescale

    # -- construction -------------------------------------------------------------------

    def _collect(self, module: nn.Module, head: str | nn.Module | None) -> list[_Layer]:
        if isinstance(head, str):
            try:
                head_module = module.get_submodule(head)
            except AttributeError:
                raise ValueError(
                    f"swr: head {head!r} is not a submodule of {type(module).__name__}"
                ) from None
        elif isinstance(head, nn.Module):
            if not any(m is head for m in module.modules()):
                raise ValueError(
                    f"swr: head {type(head).__name__} is not a submodule of the module"
                )
            head_module = head
        elif head is None:
            head_module = None
        else:
            raise ValueError(f"swr: head must be a submodule, a dotted name or None, got {head!r}")

        head_ids = set()
        if head_module is not None:
            head_ids = {id(m) for m in head_module.modules()}
        layers: list[_Layer] = []
        if self.chain:
            for name, m in module.named_modules():
                if is_weight_layer(m) or is_norm(m):
                    layers.append(_Layer(m, restart=is_norm(m), lam=self.lam, name=name))
            for i in range(1, len(layers)):
                layers[i].src = i - 1
            outputs = [max((i for i, x in enumerate(layers) if not x.restart), default=-1)]
        else:
            from plasticity.structure import Structure

            st = Structure(module, "swr", "chain=True rescales in registration order as one chain")
            index: dict[Any, int] = {}
            by_module: dict[int, int] = {}
            nodes = []
            for node in st.nodes:
                kind = st.kind(node)
                if kind not in ("layer", "norm"):
                    continue
                m = st.module_of(node)
                if id(m) in by_module:  # a norm called twice: rescaled once
                    index[node] = by_module[id(m)]
                    continue
                index[node] = by_module[id(m)] = len(layers)
                layers.append(_Layer(m, restart=kind == "norm", lam=self.lam, name=node.target))
                nodes.append(node)
            for layer, node in zip(layers, nodes):
                src = st.first_source(node)
                layer.src = None if src is None else index[src]
            outs = {id(st.module_of(n)) for n in st.output_layers()}
            outputs = [i for i, x in enumerate(layers) if id(x.module) in outs]
        for i, layer in enumerate(layers):
            if head_module is not None:
                if id(layer.module) in head_ids:
                    layer.lam = self.head_lam
            elif i in outputs:
                layer.lam = self.head_lam
        if head_module is not None and not any(id(layer.module) in head_ids for layer in layers):
            raise ValueError(f"swr: head {head!r} contains no Linear/Conv/normalisation layer")
        return layers

    # -- the update ----------------------------------------------------------------------

    def rescale(self) -> None:
        """Apply one SWR step to the module now."""
        with torch.no_grad():
            products: list[torch.Tensor | None] = []  # C of each layer's output; None stands for 1
            for layer in self.layers:
                base = None if layer.restart or layer.src is None else products[layer.src]
                w = layer.weight
                if w is not None and not w.requires_grad:
                    products.append(base)  # frozen (e.g. by plasticity injection): c = 1
                    continue
                product = base
                if w is not None:
                    init = layer.scaled_init
                    if init.device != w.device or init.dtype != w.dtype:
                        init = layer.scaled_init = init.to(device=w.device, dtype=w.dtype)
                    norm = torch.linalg.vector_norm(w)
                    c = torch.where(norm > 0, init / norm + (1.0 - layer.lam), torch.ones_like(norm))
                    w.mul_(c)
                    product = c if base is None else base * c
                if layer.bias is not None and product is not None:
                    layer.bias.mul_(product)
                products.append(product)
            self.products = products
            self._scale = products[-1] if products else None

    def after_step(self, inputs: Any = None) -> None:
        super().after_step(inputs)
        if self.updates % self.every == 0:
            self.rescale()

    # -- reporting and checkpoints ---------------------------------------------------------

    def metrics(self) -> dict[str, float]:
        with torch.no_grad():
            squares = [
                torch.linalg.vector_norm(layer.weight).square()
                for layer in self.layers
                if layer.weight is not None and not layer.restart
            ]
            out = {"swr_weight_norm": float(torch.stack(squares).sum().sqrt())}
            if self._scale is not None:
                out["swr_scale"] = float(self._scale)
            return out

    def state_dict(self) -> dict[str, Any]:
        init_norms = [
            None if layer.init_norm is None else float(layer.init_norm) for layer in self.layers
        ]
        return {"updates": self.updates, "init_norms": init_norms}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        norms = state.get("init_norms")
        if norms is None:
            return
        if len(norms) != len(self.layers):
            raise ValueError(
                f"swr: checkpoint has {len(norms)} layers, this module has {len(self.layers)}"
            )
        for layer, norm in zip(self.layers, norms):
            if layer.weight is not None and norm is not None:
                layer.set_init_norm(
                    torch.tensor(norm, dtype=layer.weight.dtype, device=layer.weight.device)
                )


SWR = SoftWeightRescaling
