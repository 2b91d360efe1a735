"""Concatenated ReLU (CReLU).

Paper: Shang, Sohn, Almeida & Lee, "Understanding and Improving Convolutional Neural
Networks via Concatenated Rectified Linear Units" (ICML 2016); used against loss of
plasticity by Abbas, Zhao, Modayil, White & Machado, "Loss of Plasticity in Continual
Deep Reinforcement Learning" (CoLLAs 2023).

    CReLU(x) = [relu(x), relu(-x)]      concatenated along ``dim``

Every pre-activation passes its signal on whatever its sign, so no unit is ever silent
for every input. The output is twice as wide as the input along ``dim``: the next layer
takes ``width_multiplier * width`` inputs (a network builder reads
``CReLU.width_multiplier``, or ``width_multiplier(module)`` for any activation).
Default ``dim=1``: the channels of (B, C, H, W) or the features of (B, F); use -1 for
features-last inputs such as (B, T, F).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CReLU(nn.Module):
    """[relu(x), relu(-x)] along ``dim``; doubles the width seen by the next layer."""

    #: the plasticity monitor finds activation modules by this flag
    is_activation = True
    #: output width / input width along ``dim``
    width_multiplier = 2

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise ValueError(f"crelu: dim must be an integer, got {dim!r}")
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(torch.cat((x, -x), dim=self.dim))

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


def width_multiplier(activation: nn.Module) -> int:
    """How many times wider an activation's output is than its input (1 for most)."""
    return int(getattr(activation, "width_multiplier", 1))
