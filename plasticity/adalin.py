"""Adaptive Linearity Injection (AdaLin).

Paper: Rohani, Khajavi, Chung, Chen & Vaswani, "Preserving Plasticity in Continual
Learning with Adaptive Linearity Injection" (CoLLAs 2025, arXiv:2505.09486).

Every neuron i (every channel of a convolutional feature map) gets a learnable alpha_i:

    f_i(x) = phi(x) + alpha_i * x * g(x),     g(x) = cos(pi/2 * |phi'(x)| / L)

with L the Lipschitz constant of phi (max |phi'|) and no gradient through g: linearity is
injected where phi is flat (its gradient vanishes) and nowhere where phi is steepest.
We evaluate g as sin(pi/2 * (1 - |phi'(x)|/L)), the same function, which is exactly 0
where |phi'| = L and exactly 1 where phi' = 0 in floating point.

Supported phi, with phi' and L:

    relu                  phi' = 1[x > 0]                  L = 1
                          g = 1[x <= 0], so f is a PReLU with a learnable slope per neuron
    leaky_relu (slope s)  phi' = 1 (x > 0), s (x <= 0)     L = max(1, |s|)
    tanh                  phi' = 1 - tanh(x)^2             L = 1, g = sin(pi/2 * tanh(x)^2)
    gelu (exact)          phi' = Phi(x) + x*pdf(x)         L = phi'(sqrt 2)
                                                             = (1 + erf 1)/2 + e^-1/sqrt(pi)
                                                             ~= 1.1289041
    gelu (tanh approx.)   derivative of the tanh formula   L ~= 1.1289931 (found numerically)

Defaults: ``alpha_init=0.0`` (the network starts as the plain phi network), ``dim=1``
(the feature axis: channels of (B, C, H, W), features of (B, F)).

``convert(module)`` swaps every nn.ReLU / nn.LeakyReLU / nn.Tanh / nn.GELU *module* for an
AdaLin of the same phi. The width of each activation is read from the layer that feeds it
in the traced forward pass (`plasticity.structure`): the Linear (``out_features``, feature
axis -1) or Conv (``out_channels``, axis 1) it follows, through a norm, pooling or dropout
(not through a flatten). A module that does not trace falls back to the nearest preceding
Linear/Conv in registration order (true for nn.Sequential). Activations called
functionally (``F.relu``) are modules of nobody and are not converted; an activation
module called after layers of different widths is refused (its single alpha has one
width), one called after layers of the same width becomes one AdaLin whose alphas those
calls share. Create the optimizer after converting, so it trains the alphas.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_HALF_PI = math.pi / 2
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_TANH_C = 0.044715


def _gelu_tanh_grad(x: float) -> float:
    u = _SQRT_2_OVER_PI * (x + _GELU_TANH_C * x**3)
    t = math.tanh(u)
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _SQRT_2_OVER_PI * (1 + 3 * _GELU_TANH_C * x * x)


def _argmax_unimodal(f, lo: float, hi: float, iters: int = 200) -> float:
    for _ in range(iters):
        a, b = lo + (hi - lo) / 3, hi - (hi - lo) / 3
        if f(a) < f(b):
            lo = a
        else:
            hi = b
    return f((lo + hi) / 2)


#: Lipschitz constants max|phi'| of the exact and the tanh-approximated GELU. The
#: negative lobe's |phi'| peaks at ~0.068, so the maximum is the positive peak near sqrt 2.
GELU_LIPSCHITZ = 0.5 * (1.0 + math.erf(1.0)) + math.exp(-1.0) / math.sqrt(math.pi)
GELU_TANH_LIPSCHITZ = _argmax_unimodal(_gelu_tanh_grad, 0.5, 3.0)

_NAMES = ("relu", "leaky_relu", "tanh", "gelu")
_SUPPORTED_MODULES = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.GELU)


class AdaLin(nn.Module):
    """phi(x) + alpha * x * g(x) with one learnable alpha per feature along ``dim``.

    Args:
        base: phi, as a module (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.GELU) or a name
            ("relu", "leaky_relu", "tanh", "gelu"). A module's slope/approximation is kept.
        num_features: number of neurons (features or channels) along ``dim``.
        alpha_init: initial value of every alpha.
        dim: the feature axis of the input (negative values count from the end).
        negative_slope: slope of "leaky_relu" when ``base`` is given by name.
        approximate: "none" or "tanh", for "gelu" given by name.
    """

    #: the plasticity monitor finds activation modules by this flag
    is_activation = True

    def __init__(
        self,
        base: str | nn.Module,
        num_features: int,
        alpha_init: float = 0.0,
        dim: int = 1,
        *,
        negative_slope: float = 0.01,
        approximate: str = "none",
    ) -> None:
        super().__init__()
        if isinstance(base, nn.Module):
            if isinstance(base, nn.LeakyReLU):
                kind, negative_slope = "leaky_relu", float(base.negative_slope)
            elif isinstance(base, nn.ReLU):
                kind = "relu"
            elif isinstance(base, nn.Tanh):
                kind = "tanh"
            elif isinstance(base, nn.GELU):
                kind, approximate = "gelu", base.approximate
            else:
                raise ValueError(
                    f"adalin: base must be one of {', '.join(_NAMES)} (or their nn modules), "
                    f"got {type(base).__name__}"
                )
        elif base in _NAMES:
            kind = base
        else:
            raise ValueError(f"adalin: base must be one of {', '.join(_NAMES)}, got {base!r}")
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"adalin: num_features must be an integer >= 1, got {num_features!r}")
        if approximate not in ("none", "tanh"):
            raise ValueError(f"adalin: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.kind = kind
        self.negative_slope = float(negative_slope)
        self.approximate = approximate
        self.num_features = num_features
        self.dim = dim
        if kind in ("relu", "tanh"):
            self.lipschitz = 1.0
        elif kind == "leaky_relu":
            self.lipschitz = max(1.0, abs(self.negative_slope))
        else:
            self.lipschitz = GELU_TANH_LIPSCHITZ if approximate == "tanh" else GELU_LIPSCHITZ
        self.alpha_init = float(alpha_init)
        self.alpha = nn.Parameter(torch.full((num_features,), self.alpha_init))

    def reset_parameters(self) -> None:
        """Set every alpha back to ``alpha_init`` (used by resets and plasticity injection)."""
        with torch.no_grad():
            self.alpha.fill_(self.alpha_init)

    def phi(self, x: torch.Tensor) -> torch.Tensor:
        """The base activation."""
        if self.kind == "relu":
            return F.relu(x)
        if self.kind == "leaky_relu":
            return F.leaky_relu(x, self.negative_slope)
        if self.kind == "tanh":
            return torch.tanh(x)
        return F.gelu(x, approximate=self.approximate)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """g(x) = cos(pi/2 * |phi'(x)| / L), computed without gradient."""
        with torch.no_grad():
            if self.kind == "relu":
                return (x <= 0).to(x.dtype)
            if self.kind == "leaky_relu":
                pos = math.sin(_HALF_PI * (1.0 - 1.0 / self.lipschitz))
                neg = math.sin(_HALF_PI * (1.0 - abs(self.negative_slope) / self.lipschitz))
                return torch.where(x > 0, x.new_full((), pos), x.new_full((), neg))
            if self.kind == "tanh":
                return torch.sin(_HALF_PI * torch.tanh(x).square())
            if self.approximate == "tanh":
                u = _SQRT_2_OVER_PI * (x + _GELU_TANH_C * x.pow(3))
                t = torch.tanh(u)
                grad = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _SQRT_2_OVER_PI * (
                    1 + 3 * _GELU_TANH_C * x * x
                )
            else:
                cdf = 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))
                pdf = torch.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
                grad = cdf + x * pdf
            return torch.sin(_HALF_PI * (1.0 - grad.abs() / self.lipschitz))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = self.dim % x.dim()
        if self.kind == "relu" and dim == 1:
            return F.prelu(x, self.alpha)  # the same function, one fused kernel
        shape = [1] * x.dim()
        shape[dim] = self.num_features
        return self.phi(x) + self.alpha.view(shape) * x * self.gate(x)

    def extra_repr(self) -> str:
        base = self.kind
        if self.kind == "leaky_relu":
            base += f", negative_slope={self.negative_slope}"
        if self.kind == "gelu" and self.approximate != "none":
            base += f", approximate={self.approximate!r}"
        return f"{base}, num_features={self.num_features}, dim={self.dim}"


def convert(module: nn.Module, alpha_init: float = 0.0) -> nn.Module:
    """Replace every nn.ReLU / nn.LeakyReLU / nn.Tanh / nn.GELU inside ``module`` by an AdaLin
    of the same phi (in place; the module is returned). With ``alpha_init=0`` the network
    computes exactly what it computed before. Raises ValueError when the width of an
    activation cannot be read from a preceding Linear/Conv layer."""
    if isinstance(module, _SUPPORTED_MODULES):
        raise ValueError(
            "adalin: convert needs a container; build AdaLin(base, num_features) directly"
        )
    from plasticity.structure import Structure

    try:
        st = Structure(module, "adalin")
    except ValueError:
        st = None
    if st is not None:
        _convert_traced(module, st, alpha_init)
        return module
    # (width, feature axis) of the most recent layer output in registration order;
    # None after a layer that changes the width in a way we cannot follow.
    state: dict[str, tuple[int, int] | None] = {"width": None}
    _convert_children(module, alpha_init, state, prefix="")
    return module


def _traced_width(st, node) -> tuple[int, int] | None:
    """(width, feature axis) of the layer feeding activation `node`, or None."""
    cur = node
    while True:
        ins = [n for n in cur.all_input_nodes if n.op != "get_attr"]
        if not ins:
            return None
        cur = ins[0]
        kind = st.kind(cur)
        module = st.module_of(cur)
        if kind == "layer":
            if isinstance(module, nn.modules.conv._ConvNd):
                return (module.out_channels, 1)
            return (module.out_features, -1)
        if kind == "norm" or isinstance(module, (nn.Dropout, nn.Identity, nn.modules.pooling._MaxPoolNd,
                                                 nn.modules.pooling._AvgPoolNd)):
            continue
        if kind == "act" and getattr(module, "width_multiplier", 1) == 1:
            continue
        return None


def _convert_traced(module: nn.Module, st, alpha_init: float) -> None:
    widths: dict[str, set[tuple[int, int] | None]] = {}
    for node in st.nodes:
        if node.op == "call_module" and isinstance(st.module_of(node), _SUPPORTED_MODULES):
            widths.setdefault(node.target, set()).add(_traced_width(st, node))
    for path, found in widths.items():
        child = module.get_submodule(path)
        if None in found:
            raise ValueError(
                f"adalin: cannot infer the width of activation {path!r} ({type(child).__name__}): "
                f"no Linear/Conv layer feeds it in the forward pass; build AdaLin(base, num_features) "
                f"for it by hand")
        if len(found) > 1:
            raise ValueError(f"adalin: activation {path!r} is called after layers of different widths "
                             f"{sorted(found)}; give each call its own module")
        (width, dim), = found
        parent, _, name = path.rpartition(".")
        setattr(module.get_submodule(parent) if parent else module, name,
                AdaLin(child, width, alpha_init=alpha_init, dim=dim))


def _convert_children(
    parent: nn.Module, alpha_init: float, state: dict, prefix: str
) -> None:
    for name, child in list(parent.named_children()):
        path = f"{prefix}{name}"
        if isinstance(child, nn.Linear):
            state["width"] = (child.out_features, -1)
        elif isinstance(child, nn.modules.conv._ConvNd):
            state["width"] = (child.out_channels, 1)
        elif isinstance(child, (nn.Flatten, nn.Unflatten)):
            state["width"] = None
        elif isinstance(child, _SUPPORTED_MODULES):
            if state["width"] is None:
                raise ValueError(
                    f"adalin: cannot infer the width of activation {path!r} "
                    f"({type(child).__name__}): no Linear/Conv layer right before it in "
                    f"registration order; build AdaLin(base, num_features) for it by hand"
                )
            width, dim = state["width"]
            setattr(parent, name, AdaLin(child, width, alpha_init=alpha_init, dim=dim))
        elif getattr(type(child), "width_multiplier", 1) != 1:
            state["width"] = None  # e.g. CReLU doubles the width
        else:
            _convert_children(child, alpha_init, state, prefix=f"{path}.")
