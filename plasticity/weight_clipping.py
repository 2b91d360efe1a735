"""Weight clipping.

Paper: Elsayed, Lan, Lyle & Mahmood, "Weight Clipping for Deep Continual and
Reinforcement Learning" (RLC 2024, arXiv:2407.01704).

After every optimizer step, every parameter of layer l is clamped to

    [-kappa * s_l, kappa * s_l],       s_l = 1 / sqrt(fan_in_l)

where s_l is the bound of the layer's initial uniform distribution (PyTorch's default
init of Linear/Conv weights and biases is U(-1/sqrt(fan_in), 1/sqrt(fan_in))) and fan_in
is ``in_features`` for a Linear and ``in_channels / groups * prod(kernel_size)`` for a
Conv. The paper clips all parameters of a layer with the layer's bound, so the bias is
clipped too by default (``clip_bias=True``); normalisation layers (gain initialised at 1)
and other modules are left alone. Weight layers are those of `plasticity.layers`
(Linear, Conv1d/2d/3d).

Default ``kappa=3.0`` (the paper sweeps small multiples of the init bound; 2-4 work in
its RL experiments). ``optimizer`` and ``targets`` are accepted for the common signature
only. CLI name ``weight_clipping`` (alias ``clip``); metric
``weight_clipping_frac_at_bound``. Cost: one in-place clamp per parameter, no host synchronisation; ``metrics()``
reports the fraction of weights sitting exactly at the bound (clipped and not moved back
inside since).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch import nn

from plasticity.base import Intervention
from plasticity.layers import is_weight_layer


def fan_in(layer: nn.Module) -> int:
    """Inputs feeding one output unit: weight[0].numel() (in_features, or in/groups*k*k)."""
    return layer.weight[0].numel()


class WeightClipping(Intervention):
    """Clamp every Linear/Conv parameter to +-kappa/sqrt(fan_in) after each update."""

    name = "weight_clipping"

    def __init__(
        self,
        module: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        targets: Iterable[nn.Module] = (),
        kappa: float = 3.0,
        clip_bias: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(kappa, bool) or not isinstance(kappa, (int, float)) or not kappa > 0:
            raise ValueError(f"weight_clipping: kappa must be > 0, got {kappa!r}")
        self.kappa = float(kappa)
        self.clip_bias = bool(clip_bias)
        self.groups: list[tuple[float, list[torch.Tensor]]] = []
        for m in module.modules():
            if is_weight_layer(m):
                bound = self.kappa / math.sqrt(fan_in(m))
                params = [m.weight]
                if self.clip_bias and m.bias is not None:
                    params.append(m.bias)
                self.groups.append((bound, params))
        if not self.groups:
            raise ValueError(f"weight_clipping: module {type(module).__name__} has no Linear/Conv layer")

    def clip(self) -> None:
        """Clamp now."""
        with torch.no_grad():
            for bound, params in self.groups:
                for p in params:
                    p.clamp_(-bound, bound)

    def after_step(self, inputs: Any = None) -> None:
        super().after_step(inputs)
        self.clip()

    def metrics(self) -> dict[str, float]:
        with torch.no_grad():
            at_bound = total = 0
            for bound, params in self.groups:
                for p in params:
                    at_bound += int((p.abs() >= bound).sum())
                    total += p.numel()
            return {"weight_clipping_frac_at_bound": at_bound / total}
