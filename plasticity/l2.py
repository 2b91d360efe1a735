"""L2 regularisation towards zero (L2) and towards the initial parameters (L2-Init).

Papers: L2 is the classic weight penalty, studied against loss of plasticity by Dohare
et al., "Loss of plasticity in deep continual learning" (Nature 2024) and Lyle et al.
(2023); L2-Init is Kumar, Marklund & Van Roy, "Maintaining Plasticity in Continual
Learning via Regenerative Regularization" (2023, arXiv:2308.11958).

    L2:       loss() = coef / 2 * sum_p ||theta_p||^2
    L2-Init:  loss() = lam * sum_p ||theta_p - theta_p,0||^2      (Kumar et al.'s lambda)

theta_0 is a copy of the parameters taken when the intervention is attached (a plain
tensor, not a parameter; it is saved by ``state_dict``). The term is added to the
learner's loss before ``backward()``, so with Adam it is L2 regularisation, not decoupled
weight decay.

L2-Init takes the paper's lambda as written there (``lam``, no factor 1/2), so a value
read from the paper regularises as in the paper; its gradient is ``2*lam*(theta -
theta_0)``. (An earlier version took ``coef`` with ``coef/2``; ``coef`` is no longer
accepted for L2-Init, so an old value cannot silently mean half of itself: use
``lam = coef / 2``.)

Defaults: ``coef=1e-4`` for L2 and ``lam=1e-3`` for L2-Init. Both papers sweep the
coefficient over roughly {1e-2, 1e-3, 1e-4, 1e-5} and the best value depends on the task
and on the scale of the main loss; L2-Init tolerates a larger coefficient because it pulls
towards a useful point (the initialisation) instead of towards zero. Tune per setting.

``weights_only=False`` regularises every parameter (as both papers do); ``True`` only
the parameters with at least two dimensions (Linear/Conv weight matrices and kernels),
leaving biases, normalisation gains and AdaLin slopes free. The parameter set is fixed at
construction. ``optimizer`` and ``targets`` are accepted for the common signature only.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

from plasticity.base import Intervention


def _check_coef(name: str, coef: Any) -> float:
    if isinstance(coef, bool) or not isinstance(coef, (int, float)) or not coef >= 0.0:
        raise ValueError(f"{name}: coef must be >= 0, got {coef!r}")
    return float(coef)


def _select(module: nn.Module, weights_only: bool, name: str) -> list[nn.Parameter]:
    params = [p for p in module.parameters() if not weights_only or p.dim() >= 2]
    if not params:
        raise ValueError(f"{name}: module {type(module).__name__} has no parameter to regularise")
    return params


class _Penalty(Intervention):
    """factor * sum_p ||theta_p - anchor_p||^2 over a fixed parameter set; ``_offsets``
    gives the differences theta_p - anchor_p (the anchor is 0 for L2, theta_0 for L2-Init)."""

    metric = "penalty"  # key of the norm of the offsets in ``metrics()``
    factor = 0.0

    def _setup(self, module: nn.Module, coef: Any, weights_only: bool) -> None:
        self.coef = _check_coef(self.name, coef)
        self.weights_only = bool(weights_only)
        self.params = _select(module, self.weights_only, self.name)

    def _offsets(self) -> list[torch.Tensor]:
        raise NotImplementedError

    def loss(self) -> torch.Tensor:
        total = torch.stack([d.square().sum() for d in self._offsets()]).sum()
        return self.factor * total

    def metrics(self) -> dict[str, float]:
        with torch.no_grad():
            norms = torch.stack([torch.linalg.vector_norm(d) for d in self._offsets()])
            return {self.metric: float(torch.linalg.vector_norm(norms))}


class L2(_Penalty):
    """coef/2 * sum of squared parameters, added to the loss."""

    name = "l2"
    metric = "l2_param_norm"

    def __init__(
        self,
        module: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        targets: Iterable[nn.Module] = (),
        coef: float = 1e-4,
        weights_only: bool = False,
    ) -> None:
        super().__init__()
        self._setup(module, coef, weights_only)
        self.factor = 0.5 * self.coef

    def _offsets(self) -> list[torch.Tensor]:
        return self.params


class L2Init(_Penalty):
    """lam * squared distance of the parameters from their initial values (Kumar et al.'s lambda)."""

    name = "l2init"
    metric = "l2init_distance"

    def __init__(
        self,
        module: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        targets: Iterable[nn.Module] = (),
        lam: float = 1e-3,
        weights_only: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam >= 0.0:
            raise ValueError(f"l2init: lam must be >= 0, got {lam!r}")
        self._setup(module, lam, weights_only)
        self.lam = self.factor = float(lam)
        self.init = [p.detach().clone() for p in self.params]

    def _offsets(self) -> list[torch.Tensor]:
        if self.init[0].device != self.params[0].device:  # the module was moved
            self.init = [t.to(p.device) for t, p in zip(self.init, self.params)]
        return [p - p0 for p, p0 in zip(self.params, self.init)]

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "init": [t.clone() for t in self.init]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        init = state.get("init")
        if init is None:
            return
        if len(init) != len(self.init) or any(a.shape != b.shape for a, b in zip(init, self.init)):
            raise ValueError("l2init: checkpoint's initial parameters do not match this module")
        for dst, src in zip(self.init, init):
            dst.copy_(src)
