"""Networks: encoders (MLP, Nature CNN, IMPALA CNN, MinAtar CNN) and heads (Q, dueling Q).

Activation and normalisation are constructor arguments, so an intervention that changes
the architecture (AdaLin, CReLU, LayerNorm) is an option, not a fork:

    encoder = make_encoder("nature_cnn", obs_shape=(4, 84, 84), activation="adalin")
    q = QNetwork(encoder, num_actions=18, dueling=True)

Activation and norm modules come from `plasticity.layers` (one definition of what an
activation, a norm and a layer are, shared with the interventions, which read each
network's structure from its traced forward pass). Image inputs
are `uint8` and scaled to [0, 1] inside the encoder, so replay keeps frames as bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from agents.compile.forms import compiling
from plasticity.layers import ACTIVATION_NAMES as ACTIVATIONS  # one definition, shared with plasticity/
from plasticity.layers import NORM_NAMES as NORMS
from plasticity.layers import activation_width_multiplier as width_multiplier
from plasticity.layers import make_activation, make_norm

ENCODERS = ("mlp", "nature_cnn", "impala_cnn", "minatar_cnn")


def _block(layer: nn.Module, out: int, activation: str, norm: str | None, conv: bool) -> list[nn.Module]:
    mods = [layer]
    n = make_norm(norm, out, conv)
    if n is not None:
        mods.append(n)
    mods.append(make_activation(activation, out))
    return mods


class MLPEncoder(nn.Sequential):
    """Linear → [norm] → activation, repeated; `out_dim` is the feature width."""

    def __init__(self, in_dim: int, hidden: Sequence[int] = (256, 256), activation: str = "relu",
                 norm: str | None = None):
        mods: list[nn.Module] = [nn.Flatten()]
        width = in_dim
        for h in hidden:
            mods += _block(nn.Linear(width, h), h, activation, norm, conv=False)
            width = h * width_multiplier(activation)
        super().__init__(*mods)
        self.out_dim = width


class ScalarHead(nn.Linear):
    """`nn.Linear(in_features, 1)`: one value per sample (a critic's Q(s, a)).

    Eager, it is `nn.Linear`. Compiled (`agents.compile.compiling()`: `torch.compile` or a
    `CompiledGrad` trace) it is
    written as a multiply and a row sum, `(x * w).sum(-1) + b`, which Inductor fuses with the
    neighbouring element-wise work, forward and backward; as a one-column matrix product it
    would be three BLAS calls per update (the forward, the outer product of the input
    gradient, the weight gradient) that cost far more than their arithmetic on a CPU. Same
    parameters, same state dict.
    """

    def __init__(self, in_features: int):
        super().__init__(in_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if compiling():
            return (x * self.weight).sum(-1, keepdim=True) + self.bias
        return super().forward(x)


class ScaleImage(nn.Module):
    """uint8 frames → float in [0, 1]; float inputs pass through unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            return x.float().div_(255.0)
        return x


class NatureCNN(nn.Sequential):
    """The DQN encoder of Mnih et al. (2015): 3 conv layers and a 512-unit linear layer."""

    memory_format = torch.channels_last
    """Layout of its weights and inputs: channels-last lets oneDNN / cuDNN pick their fast
    kernels for 84x84 frames (an encoder without the attribute takes the default layout)."""

    def __init__(self, obs_shape: Sequence[int], activation: str = "relu", norm: str | None = None,
                 features: int = 512):
        c, h, w = obs_shape
        m = width_multiplier(activation)
        mods: list[nn.Module] = [ScaleImage()]
        mods += _block(nn.Conv2d(c, 32, 8, stride=4), 32, activation, norm, conv=True)
        mods += _block(nn.Conv2d(32 * m, 64, 4, stride=2), 64, activation, norm, conv=True)
        mods += _block(nn.Conv2d(64 * m, 64, 3, stride=1), 64, activation, norm, conv=True)
        mods.append(nn.Flatten())
        with torch.no_grad():
            flat = nn.Sequential(*mods)(torch.zeros(1, c, h, w)).shape[1]
        mods += _block(nn.Linear(flat, features), features, activation, norm, conv=False)
        super().__init__(*mods)
        self.out_dim = features * m


class ResidualBlock(nn.Module):
    """IMPALA residual block: x + conv(act(conv(act(x))))."""

    def __init__(self, channels: int, activation: str, norm: str | None):
        super().__init__()
        if width_multiplier(activation) != 1:
            raise ValueError(f"impala_cnn does not support activation {activation!r} (it changes the width)")
        self.act0 = make_activation(activation, channels)
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm0 = make_norm(norm, channels, conv=True) or nn.Identity()
        self.act1 = make_activation(activation, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm1 = make_norm(norm, channels, conv=True) or nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm0(self.conv0(self.act0(x)))
        y = self.norm1(self.conv1(self.act1(y)))
        return x + y


class ImpalaCNN(nn.Sequential):
    """The IMPALA encoder (Espeholt et al., 2018): 3 stages of conv, max-pool and two
    residual blocks, then a 256-unit linear layer."""

    memory_format = torch.channels_last
    """As NatureCNN's."""

    def __init__(self, obs_shape: Sequence[int], activation: str = "relu", norm: str | None = None,
                 channels: Sequence[int] = (16, 32, 32), features: int = 256):
        c, h, w = obs_shape
        mods: list[nn.Module] = [ScaleImage()]
        for out in channels:
            mods += [nn.Conv2d(c, out, 3, padding=1), nn.MaxPool2d(3, stride=2, padding=1),
                     ResidualBlock(out, activation, norm), ResidualBlock(out, activation, norm)]
            c = out
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        mods += [make_activation(activation, c), nn.Flatten()]
        mods += _block(nn.Linear(c * h * w, features), features, activation, norm, conv=False)
        super().__init__(*mods)
        self.out_dim = features


class MinAtarCNN(nn.Sequential):
    """The MinAtar network of Young & Tian (2019): a 3x3 convolution with 16 channels (stride 1,
    no padding), then a 128-unit linear layer, each followed by the activation. Observations
    are 0/1 cells (``uint8`` or ``bool``), cast to float unscaled. Weights and inputs keep the
    default (channels-first) layout: on a 10x10 grid channels-last gains nothing in the
    convolution and costs a copy at the flatten (benchmarks/RESULTS.md)."""

    def __init__(self, obs_shape: Sequence[int], activation: str = "relu", norm: str | None = None,
                 channels: int = 16, features: int = 128):
        c, h, w = obs_shape
        m = width_multiplier(activation)
        mods: list[nn.Module] = [CastToFloat()]
        mods += _block(nn.Conv2d(c, channels, 3, stride=1), channels, activation, norm, conv=True)
        mods.append(nn.Flatten())
        mods += _block(nn.Linear(channels * m * (h - 2) * (w - 2), features), features, activation, norm,
                       conv=False)
        super().__init__(*mods)
        self.out_dim = features * m


class CastToFloat(nn.Module):
    """Integer or bool cells → float32 with the same values (MinAtar's 0/1 grids)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.is_floating_point() else x.float()


def default_encoder(obs_shape: Sequence[int]) -> str:
    """The encoder ``"auto"`` picks: minatar_cnn for 10x10 grids, nature_cnn for other images, else mlp."""
    if len(obs_shape) == 3:
        return "minatar_cnn" if tuple(obs_shape[1:]) == (10, 10) else "nature_cnn"
    return "mlp"


def make_encoder(kind: str, obs_shape: Sequence[int], activation: str = "relu",
                 norm: str | None = None, hidden: Sequence[int] = (256, 256)) -> nn.Module:
    """Build an encoder by name; it has an `out_dim` attribute."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; valid: none, layer")
    if kind == "mlp":
        return MLPEncoder(math.prod(obs_shape), hidden, activation, norm)
    if len(obs_shape) != 3 and kind in ("nature_cnn", "impala_cnn"):
        raise ValueError(f"encoder {kind!r} needs image observations (C, H, W), got shape {tuple(obs_shape)}; use mlp")
    if kind == "nature_cnn":
        return NatureCNN(obs_shape, activation, norm)
    if kind == "impala_cnn":
        return ImpalaCNN(obs_shape, activation, norm)
    if kind == "minatar_cnn":
        if len(obs_shape) != 3:
            raise ValueError(f"encoder 'minatar_cnn' needs grid observations (C, H, W), got shape {tuple(obs_shape)}")
        return MinAtarCNN(obs_shape, activation, norm)
    raise ValueError(f"unknown encoder {kind!r}; valid: {', '.join(ENCODERS)}")


class QNetwork(nn.Module):
    """Q(s, ·) = head(encoder(s)); the dueling head computes V(s) + A(s, a) − mean_a A(s, a)."""

    def __init__(self, encoder: nn.Module, num_actions: int, dueling: bool = False):
        super().__init__()
        self.encoder = encoder
        self.dueling = dueling
        if dueling:
            self.value = nn.Linear(encoder.out_dim, 1)
            self.head = nn.Linear(encoder.out_dim, num_actions)
        else:
            self.head = nn.Linear(encoder.out_dim, num_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        z = self.encoder(obs)
        q = self.head(z)
        if self.dueling:
            q = self.value(z) + q - q.mean(dim=1, keepdim=True)
        return q
