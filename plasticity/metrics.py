"""Plasticity metrics: pure functions on tensors (no hooks, no state).

Every function returns tensors that stay on the input's device (0-dim tensors for
scalars; call ``float(x)`` to read one), so a caller can compute many of them and move
the results to the host in one transfer, as `plasticity.monitor.Monitor` does.

Activation shapes: ``(B, F)`` for fully connected layers, ``(B, C, *spatial)`` for
convolutions. A *unit* is a feature (``F``) or a channel (``C``); its statistics are
averaged over the batch **and** all spatial positions.

Definitions
-----------
- **Neuron score** (ReDo, Sokar et al. 2023): ``s_i = m_i / mean_j m_j`` with
  ``m_i = mean |a_i|`` over the batch and positions. If every ``m_i`` is 0 the layer is
  entirely dead and every score is 0.
- **Dormant** unit: ``s_i <= tau``, evaluated as ``m_i <= tau * mean_j m_j`` (no
  division, so ``tau = 0`` is exact: a unit is dormant at ``tau = 0`` iff its output is
  exactly 0 on every input and position, i.e. it is *dead*).
- **Active units** (the "activation footprint" of Abbas et al. 2023, the fraction of
  active units tracked by Lyle et al.): the fraction of (unit, input, position) entries on
  which a unit is active, i.e. the mean over units of the fraction of inputs that switch
  each unit on. For rectifier-like activations (ReLU, leaky ReLU, GELU, ELU, SiLU, ...)
  "active" means a positive output (the identity-like side). For bounded, saturating
  activations (tanh, sigmoid) "active" means *not saturated*. It complements the dead
  ratio, which counts units that are off on *every* input.
- **Saturated** unit (tanh, sigmoid): the output, rescaled from ``[low, high]`` to
  ``[-1, 1]``, has magnitude ``>= threshold`` on every input and position. Such a unit is
  "busy" (large |output|, so its dormancy score is high) yet gets almost no gradient
  (``tanh' = 1 - y^2 <= 0.02`` at ``threshold = 0.99``): the saturating analogue of a
  dead ReLU unit. Sigmoid maps to the same scale since ``2 sigmoid(x) - 1 = tanh(x/2)``.
- **Effective rank** (Roy & Vetterli 2007): ``exp(-sum_k p_k log p_k)``, ``p = sigma /
  sum(sigma)`` of the singular values of the ``(B, D)`` feature matrix.
- **srank_delta** (Kumar et al. 2021): the fewest ``k`` with ``sum_{i<=k} sigma_i >=
  (1 - delta) sum_i sigma_i`` (singular values in decreasing order).
  Both ranks are 0 for an all-zero matrix and NaN if the features are not finite.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from plasticity.layers import weight_layers

Tensor = torch.Tensor


# ----------------------------------------------------------------------------- units
def _acc_dtype(t: Tensor) -> torch.dtype:
    """Accumulation dtype: float64 stays float64, everything else reduces in float32."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _unit_dims(acts: Tensor) -> tuple[int, ...]:
    """The dimensions averaged per unit: the batch and every spatial dimension."""
    if acts.dim() < 2:
        raise ValueError(
            f"activations must be (B, F) or (B, C, *spatial), got shape {tuple(acts.shape)}")
    return (0, *range(2, acts.dim()))


def unit_means(acts: Tensor) -> Tensor:
    """Per-unit mean |activation| over the batch and spatial positions, shape ``(C,)``,
    computed in float32 (or float64 for float64 inputs)."""
    return acts.detach().abs().mean(dim=_unit_dims(acts), dtype=_acc_dtype(acts))


def scores_from_means(means: Tensor) -> Tensor:
    """ReDo scores from per-unit mean |activation|: ``means / means.mean()``, all zeros
    when the layer mean is 0 (then every ``means[i]`` is 0 too)."""
    layer_mean = means.mean()
    return means / torch.where(layer_mean > 0, layer_mean, torch.ones_like(layer_mean))


def dormant_mask_from_means(means: Tensor, tau: float = 0.025) -> Tensor:
    """Dormant units from per-unit mean |activation|: ``means <= tau * means.mean()``."""
    return means <= tau * means.mean()


def neuron_scores(acts: Tensor) -> Tensor:
    """ReDo score of every unit (feature or channel), shape ``(C,)``; see the module doc."""
    return scores_from_means(unit_means(acts))


def dormant_mask(acts: Tensor, tau: float = 0.025) -> Tensor:
    """Boolean ``(C,)`` mask of units whose ReDo score is ``<= tau``."""
    return dormant_mask_from_means(unit_means(acts), tau)


def dormant_ratio(acts: Tensor, tau: float = 0.025) -> Tensor:
    """Fraction of units whose ReDo score is ``<= tau`` (``tau = 0``: exactly dead units)."""
    return dormant_mask(acts, tau).float().mean()


def _saturation(acts: Tensor, threshold: float, low: float, high: float) -> Tensor:
    """Elementwise: output within ``(1 - threshold)`` of either end, on the [-1, 1] scale."""
    if not high > low:
        raise ValueError(f"saturation range needs high > low, got ({low}, {high})")
    z = (2.0 * acts.detach().float() - (low + high)) / (high - low)
    return z.abs() >= threshold


def active_fraction(
    acts: Tensor, bounds: tuple[float, float] | None = None, threshold: float = 0.99
) -> Tensor:
    """Per-unit fraction of inputs (and positions) on which the unit is active, ``(C,)``.

    ``bounds=None``: rectifier-like, active means output > 0. ``bounds=(low, high)``: a
    saturating activation with that output range, active means not saturated.
    """
    if bounds is None:
        on = acts.detach() > 0
    else:
        on = ~_saturation(acts, threshold, *bounds)
    return on.float().mean(dim=_unit_dims(acts))


def active_units(
    acts: Tensor, bounds: tuple[float, float] | None = None, threshold: float = 0.99
) -> Tensor:
    """Fraction of (unit, input, position) entries that are active; see the module doc."""
    return active_fraction(acts, bounds, threshold).mean()


def saturated_mask(
    acts: Tensor, threshold: float = 0.99, low: float = -1.0, high: float = 1.0
) -> Tensor:
    """Boolean ``(C,)`` mask of units saturated on every input and position."""
    sat = _saturation(acts, threshold, low, high)
    return sat.transpose(0, 1).flatten(1).all(dim=1)


def saturated_ratio(
    acts: Tensor, threshold: float = 0.99, low: float = -1.0, high: float = 1.0
) -> Tensor:
    """Fraction of units saturated on every input and position (tanh: ``|y| >= 0.99``)."""
    return saturated_mask(acts, threshold, low, high).float().mean()


# -------------------------------------------------------------------------- features
def _singular_values(features: Tensor) -> tuple[Tensor, Tensor]:
    """Singular values (decreasing) of the features flattened to (B, D), computed on a
    copy with non-finite entries zeroed, and a 0-dim flag telling whether all were finite."""
    x = features.detach().flatten(1)
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    finite = torch.isfinite(x)
    x = torch.where(finite, x, torch.zeros((), dtype=x.dtype, device=x.device))
    return torch.linalg.svdvals(x), finite.all()


def _finite_or_nan(value: Tensor, finite: Tensor) -> Tensor:
    return torch.where(finite, value, torch.full_like(value, float("nan")))


def _erank(sigma: Tensor) -> Tensor:
    total = sigma.sum()
    p = sigma / torch.where(total > 0, total, torch.ones_like(total))
    return torch.where(total > 0, torch.exp(torch.special.entr(p).sum()), torch.zeros_like(total))


def _srank(sigma: Tensor, delta: float) -> Tensor:
    total = sigma.sum()
    below = (torch.cumsum(sigma, 0) < (1.0 - delta) * total).sum()
    return torch.where(total > 0, below + 1, torch.zeros_like(below)).to(sigma.dtype)


def effective_rank(features: Tensor) -> Tensor:
    """``exp(entropy(sigma / sum sigma))`` of the (B, D) feature matrix (0 if all zero)."""
    sigma, finite = _singular_values(features)
    return _finite_or_nan(_erank(sigma), finite)


def srank(features: Tensor, delta: float = 0.01) -> Tensor:
    """Fewest singular values whose sum reaches ``(1 - delta)`` of the total (0 if all zero)."""
    sigma, finite = _singular_values(features)
    return _finite_or_nan(_srank(sigma, delta), finite)


def feature_ranks(features: Tensor, delta: float = 0.01) -> tuple[Tensor, Tensor]:
    """``(effective_rank(features), srank(features, delta))`` from a single SVD."""
    sigma, finite = _singular_values(features)
    return _finite_or_nan(_erank(sigma), finite), _finite_or_nan(_srank(sigma, delta), finite)


def feature_norm(features: Tensor) -> Tensor:
    """Mean over samples of the L2 norm of each sample's flattened features."""
    x = features.detach().flatten(1)
    return torch.linalg.vector_norm(x, dim=1, dtype=_acc_dtype(x)).mean()


# --------------------------------------------------------------------------- weights
def _sq_norm(t: Tensor) -> Tensor:
    """Squared L2 norm as a float32 0-dim tensor (float64 for float64 inputs)."""
    return torch.linalg.vector_norm(t.detach(), dtype=_acc_dtype(t)).square()


def weight_norm(module: nn.Module) -> tuple[Tensor, dict[str, Tensor]]:
    """L2 norm of all of ``module``'s parameters (the vector theta) and, per weight layer
    (Linear/Conv, see `plasticity.layers.weight_layers`), the norm of that layer's own
    parameters (weight and bias). Per-layer keys are module names (``"root"`` for the
    module itself). Other parameters (norm layers, embeddings, ...) count in the total only."""
    params = list(module.parameters())
    if params:
        total = torch.stack([_sq_norm(p) for p in params]).sum().sqrt()
    else:
        total = torch.zeros(())
    per_layer = {}
    for name, layer in weight_layers(module):
        own = [p for p in layer.parameters(recurse=False)]
        per_layer[name or "root"] = torch.stack([_sq_norm(p) for p in own]).sum().sqrt()
    return total, per_layer


def snapshot(module: nn.Module) -> dict[str, Tensor]:
    """A detached copy of every parameter, keyed by name: the reference theta_0."""
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def weight_distance(module: nn.Module, initial_params: Mapping[str, Tensor]) -> Tensor:
    """``||theta - theta_0||`` over the parameters named in ``initial_params`` (a
    `snapshot`); parameters created after the snapshot are ignored."""
    terms = []
    for name, p in module.named_parameters():
        ref = initial_params.get(name)
        if ref is None:
            continue
        if ref.shape != p.shape:
            raise ValueError(
                f"parameter {name!r} has shape {tuple(p.shape)} but the reference has "
                f"{tuple(ref.shape)}: take a new snapshot after changing the architecture"
            )
        terms.append(_sq_norm(p.detach() - ref.to(p.device)))
    if not terms:
        return torch.zeros(())
    return torch.stack(terms).sum().sqrt()


def grad_norm(module: nn.Module) -> Tensor | None:
    """L2 norm of the current ``.grad`` of all parameters, or None if no parameter has one."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return None
    return torch.stack([_sq_norm(g) for g in grads]).sum().sqrt()
