"""Soft Weight Rescaling (SWR).

Paper: Oh, Park, Han & Kim, "Recovering Plasticity of Neural Networks via Soft Weight
Rescaling" (2025, arXiv:2507.04683).

After every optimizer step, for each weight layer l (Linear/Conv) in forward order:

    c_l = lam * ||W_l^init|| / ||W_l|| + (1 - lam)        (Frobenius norms)
    W_l <- c_l * W_l
    b_l <- C_l * b_l,       C_l = c_1 * c_2 * ... * c_l   (running product)

so a network of Linear/Conv layers and positively homogeneous activations (ReLU,
LeakyReLU, ReLU-AdaLin/PReLU, CReLU, max-pooling) computes exactly ``C * f(x)`` after
the step: the output is scaled, its argmax is not. A normalisation layer (LayerNorm,
GroupNorm, BatchNorm, InstanceNorm, RMSNorm) removes the scale of its input, so the
running product restarts there: its gain gamma is rescaled with its own c (from
||gamma^init||), ``C`` restarts at that c, and its shift beta is scaled by ``C``.
``||W^init||`` is recorded once, when SWR is attached.

Defaults: ``lam=1e-3`` (the paper's value for CNNs; it sweeps lam in {1, 1e-1, 1e-2,
1e-3, 1e-4}), ``every=1`` (every update). ``head_lam`` (default: same as ``lam``) is
used for the layers of the head, which is ``head`` (a submodule or its dotted name) or,
when ``head=None``, the last Linear/Conv layer in registration order.

Assumptions, stated once: layers are visited in registration order (``module.modules()``),
which must be the forward order, and the network must be a plain chain (no residual
sums) for ``C * f(x)`` to be exact; the rescaling itself is well defined for any network.
The layer list is fixed at construction: layers added later (plasticity injection) are
not rescaled, and a layer whose weight is frozen (``requires_grad=False``) is skipped
(c = 1, bias untouched; ``C * f(x)`` then holds only if frozen layers come first).
A layer whose current norm is 0 is left alone (c = 1). Target networks and
optimizer state are not touched (``optimizer`` and ``targets`` are accepted for the common
signature only): a target is re-synced by the agent on its own schedule.

Cost: per layer one norm, two scalar ops and two in-place multiplies, all on the
parameters' device with no host synchronisation (only ``metrics()`` reads values back).
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

from plasticity.base import Intervention

_WEIGHT_LAYERS = (nn.Linear, nn.modules.conv._ConvNd)
_NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.batchnorm._NormBase,  # BatchNorm*d, InstanceNorm*d
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


class _Layer:
    """One rescaled layer: its weight, optional bias, whether it restarts the product."""

    __slots__ = ("module", "weight", "bias", "restart", "lam", "init_norm", "scaled_init")

    def __init__(self, module: nn.Module, restart: bool, lam: float) -> None:
        self.module = module
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
    ) -> None:
        super().__init__()
        self.lam = _check_lam("lam", lam)
        self.head_lam = self.lam if head_lam is None else _check_lam("head_lam", head_lam)
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"swr: every must be an integer >= 1, got {every!r}")
        self.every = every
        self.module = module
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
        for m in module.modules():
            is_head = id(m) in head_ids
            lam = self.head_lam if is_head else self.lam
            if isinstance(m, _WEIGHT_LAYERS):
                layers.append(_Layer(m, restart=False, lam=lam))
            elif isinstance(m, _NORM_LAYERS):
                layers.append(_Layer(m, restart=True, lam=lam))
        if head_module is None:
            weighted = [i for i, layer in enumerate(layers) if not layer.restart]
            if weighted:
                layers[weighted[-1]].lam = self.head_lam
        elif not any(id(layer.module) in head_ids for layer in layers):
            raise ValueError(f"swr: head {head!r} contains no Linear/Conv/normalisation layer")
        return layers

    # -- the update ----------------------------------------------------------------------

    @torch.no_grad()
    def rescale(self) -> None:
        """Apply one SWR step to the module now."""
        product: torch.Tensor | None = None  # running C; None stands for 1
        for layer in self.layers:
            if layer.restart:
                product = None
            w = layer.weight
            if w is not None and not w.requires_grad:
                continue  # frozen (e.g. by plasticity injection): left alone, c = 1
            if w is not None:
                init = layer.scaled_init
                if init.device != w.device or init.dtype != w.dtype:
                    init = layer.scaled_init = init.to(device=w.device, dtype=w.dtype)
                norm = torch.linalg.vector_norm(w)
                c = torch.where(norm > 0, init / norm + (1.0 - layer.lam), torch.ones_like(norm))
                w.mul_(c)
                product = c if product is None else product * c
            if layer.bias is not None and product is not None:
                layer.bias.mul_(product)
        self._scale = product

    def after_step(self, inputs: Any = None) -> None:
        super().after_step(inputs)
        if self.updates % self.every == 0:
            self.rescale()

    # -- reporting and checkpoints ---------------------------------------------------------

    @torch.no_grad()
    def metrics(self) -> dict[str, float]:
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
