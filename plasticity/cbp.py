"""Continual Backprop (Dohare et al., 2024, "Loss of plasticity in deep continual
learning", Nature 632).

Backprop plus a slow, continual replacement of the least useful hidden units. Per hidden
unit i of layer ℓ, after every update:

    a_i ← a_i + 1                                          (age)
    u_i ← η·u_i + (1−η)·|h_i|·Σ_k |w_ki|                   (contribution utility)
    û_i = u_i / (1 − η^{a_i})                              (bias-corrected utility)

with |h_i| the unit's mean absolute activation over the batch (and spatial positions for a
conv channel) and Σ_k |w_ki| the sum of its outgoing weight magnitudes (all columns that
read it). Among the units with a_i > m (maturity threshold), layer ℓ accumulates
n_ℓ ← n_ℓ + ρ·#eligible and replaces the ⌊n_ℓ⌋ eligible units with the lowest û
(n_ℓ keeps the fractional rest). A replaced unit gets fresh incoming weights from its
layer's initialiser, zero bias, zero outgoing weights, age 0, utility 0, and the optimizer
moments of exactly those entries zeroed (same rules as ReDo, see plasticity.layers). The
output layer is never replaced.

Next-layer bias correction (``bias_correction=True``, the default, as in Dohare et al.'s
implementation): CBP also keeps, per unit, the running mean of its (signed) activation
``f_i ← η·f_i + (1−η)·mean(h_i)`` with the same bias correction ``f̂_i = f_i/(1−η^{a_i})``,
and before zeroing unit i's outgoing weights adds its mean contribution to each reader's
bias: ``b_k ← b_k + Σ_{columns c of i} w_kc · f̂_i`` (for a conv reader, summed over the
kernel too). What is preserved: each reader's pre-activation at the moment of replacement
is changed by ``w_k·(f̂_i − h_i(x))``, so the network's output is exactly unchanged on every
input on which the unit's activation equals its running mean (a unit whose activation is
constant: exact everywhere), and unchanged in expectation over the recent inputs for a
Linear reader. What is not preserved: the input-dependent part ``h_i(x) − f̂_i`` of the
replaced unit's contribution, and, for a conv reader, the border positions where padding
removes part of the kernel (the correction assumes every kernel tap reads the unit).
With ``bias_correction=False`` outgoing weights are zeroed only, which loses the whole
contribution ``w_k·h_i(x)``, i.e. also its mean. A reader without a bias gets no
correction.

Defaults: ρ (``replacement_rate``) = 1e-4, η (``decay``) = 0.99, m (``maturity``) = 10 000
updates: the values of the paper's RL experiments (PPO on Ant with changing friction; the
supervised experiments used m = 100). The paper's RL agent also used L2 (weight decay
1e-4) alongside, which is a separate intervention here.

Structure: the hidden layers, their activations and readers come from the traced forward
pass (`plasticity.structure`); ``pairs`` gives them explicitly for a network that does
not trace.

Where the activations come from: when every hidden layer's activation is a module called
once per forward, persistent forward hooks on it record, during every forward pass run with gradients enabled (the
training forward; acting and target computations under ``torch.no_grad`` are ignored), the
detached per-unit mean |h| — one reduction per layer, no stored activations, no extra
forward. `after_step` uses the average over the forwards since the previous step. Only if
none was recorded and `after_step` got `inputs` does it run one extra no-grad forward.
With functional activations (``F.relu``) or an activation module shared between layers no
hook can tell the calls apart: then every `after_step` runs that extra no-grad forward of
the traced network on `inputs` (its activations are those of the updated weights).
Call `remove_hooks()` to detach. Attach CBP before `torch.compile` (the hooks are Python
side effects and cause graph breaks).

Targets: left alone, as in ReDo (the target follows through its usual update).
Metrics: ``cbp_replaced`` (units replaced so far) and ``cbp_mature_fraction`` (fraction of
hidden units older than the maturity threshold).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from plasticity.base import Intervention
from plasticity.layers import measure_activity, neuron_groups
from plasticity.reinit import recycle


class ContinualBackprop(Intervention):
    """Replace a fraction `replacement_rate` of mature, low-utility hidden units per update."""

    name = "cbp"
    needs_inputs = True

    def __init__(self, module: nn.Module, optimizer: torch.optim.Optimizer | None = None, *,
                 targets: Sequence[nn.Module] = (), replacement_rate: float = 1e-4, decay: float = 0.99,
                 maturity: int = 10_000, bias_correction: bool = True,
                 pairs: Sequence[Sequence[Any]] | None = None) -> None:
        super().__init__()
        if not 0.0 <= float(replacement_rate) <= 1.0:
            raise ValueError(f"cbp: replacement_rate must be in [0, 1], got {replacement_rate!r}")
        if not 0.0 <= float(decay) < 1.0:
            raise ValueError(f"cbp: decay must be in [0, 1), got {decay!r}")
        if isinstance(maturity, bool) or not isinstance(maturity, int) or maturity < 0:
            raise ValueError(f"cbp: maturity must be an int >= 0, got {maturity!r}")
        self.module = module
        self.optimizer = optimizer
        self.targets = list(targets)  # left alone, see the module docstring
        self.replacement_rate = float(replacement_rate)
        self.decay = float(decay)
        self.maturity = maturity
        self.bias_correction = bool(bias_correction)
        self.groups = neuron_groups(module, pairs, who="cbp")
        if not self.groups:
            raise ValueError("cbp: the module has no hidden layer (a Linear/Conv followed by another)")
        dev = [g.layer.weight.device for g in self.groups]
        self.utility = [torch.zeros(g.n_units, device=d) for g, d in zip(self.groups, dev)]
        self.age = [torch.zeros(g.n_units, dtype=torch.long, device=d) for g, d in zip(self.groups, dev)]
        self.mean_activation = [torch.zeros(g.multiplier, g.n_units, device=d)
                                for g, d in zip(self.groups, dev)]
        self.to_replace = [0.0] * len(self.groups)
        self.replaced = 0
        self._sums: list[torch.Tensor | None] = [None] * len(self.groups)
        self._counts = [0] * len(self.groups)
        self._warned = False
        self._signed: list[torch.Tensor | None] = [None] * len(self.groups)
        hookable = all(g.probe is not None for g in self.groups)
        self._handles = ([g.probe.register_forward_hook(self._hook(i)) for i, g in enumerate(self.groups)]
                         if hookable else [])

    # ------------------------------------------------------------ activations
    def _hook(self, i: int):
        def hook(_m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
            if not torch.is_grad_enabled():
                return
            a = self.groups[i].activity(out)
            m = self.groups[i].activity(out, signed=True)
            self._sums[i] = a if self._sums[i] is None else self._sums[i] + a
            self._signed[i] = m if self._signed[i] is None else self._signed[i] + m
            self._counts[i] += 1
        return hook

    def remove_hooks(self) -> None:
        """Detach the forward hooks (the intervention then needs `inputs` in `after_step`)."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def _activity(self, inputs: Any) -> tuple[list[torch.Tensor], list[torch.Tensor]] | None:
        """Per group, mean |h| and mean h, each of shape (k, n)."""
        if all(c > 0 for c in self._counts):
            acts = ([s / c for s, c in zip(self._sums, self._counts)],  # type: ignore[operator]
                    [s / c for s, c in zip(self._signed, self._counts)])  # type: ignore[operator]
        elif inputs is not None:
            acts = measure_activity(self.module, self.groups, inputs, signed=True)
        else:
            acts = None
        self._sums = [None] * len(self.groups)
        self._signed = [None] * len(self.groups)
        self._counts = [0] * len(self.groups)
        return acts

    # ------------------------------------------------------------ the update
    def after_step(self, inputs: Any = None) -> None:
        self.updates += 1
        acts = self._activity(inputs)
        if acts is None and not self._warned:
            warnings.warn("cbp: no activations recorded (no grad-enabled forward) and no inputs; "
                          "utilities are not updated this step", stacklevel=2)
            self._warned = True
        eta = self.decay
        selection = []
        for i, g in enumerate(self.groups):
            self.age[i] += 1
            if acts is not None:
                contrib = (acts[0][i].to(self.utility[i].device) * g.outgoing_abs_sum()).sum(dim=0)
                self.utility[i].mul_(eta).add_(contrib, alpha=1.0 - eta)
                self.mean_activation[i].mul_(eta).add_(acts[1][i].to(self.utility[i].device),
                                                       alpha=1.0 - eta)
            eligible = self.age[i] > self.maturity
            n_eligible = int(eligible.sum())
            if n_eligible == 0:
                continue
            self.to_replace[i] += self.replacement_rate * n_eligible
            n = int(math.floor(self.to_replace[i]))
            if n == 0:
                continue
            self.to_replace[i] -= n
            corrected = self.bias_corrected_utility(i)
            corrected = torch.where(eligible, corrected, torch.full_like(corrected, math.inf))
            idx = torch.topk(corrected, min(n, n_eligible), largest=False).indices
            selection.append((g, idx))
            if self.bias_correction:
                self._correct_next_bias(i, idx)
            self.utility[i][idx] = 0.0
            self.mean_activation[i][:, idx] = 0.0
            self.age[i][idx] = 0
        if selection:
            self.replaced += recycle(selection, self.optimizer)

    def _correct_next_bias(self, i: int, idx: torch.Tensor) -> None:
        """b_k += Σ_c w_kc · f̂ over the outgoing columns c of units `idx` (before zeroing)."""
        with torch.no_grad():
            g = self.groups[i]
            age = self.age[i][idx].double()
            mean = (self.mean_activation[i][:, idx].double()
                    / (1.0 - torch.pow(torch.tensor(self.decay, dtype=torch.float64), age)))
            for nl in g.next_layers:
                if getattr(nl, "bias", None) is None:
                    continue
                w = nl.weight.detach()
                # columns of the readers, shaped (out, k, n_units, S, *kernel)
                cols = w.reshape(w.shape[0], g.multiplier, g.n_units, g.spatial, *w.shape[2:])
                picked = cols[:, :, idx].double()
                shape = [1, g.multiplier, idx.numel()] + [1] * (picked.dim() - 3)
                delta = (picked * mean.view(shape)).flatten(1).sum(dim=1)
                nl.bias.add_(delta.to(nl.bias.dtype))

    def bias_corrected_utility(self, i: int) -> torch.Tensor:
        """û = u / (1 − η^age) of layer i (0 where age is 0)."""
        denom = 1.0 - torch.pow(torch.tensor(self.decay, device=self.age[i].device), self.age[i].double())
        out = self.utility[i].double() / denom
        return torch.where(self.age[i] > 0, out, torch.zeros_like(out)).to(self.utility[i].dtype)

    def metrics(self) -> dict[str, float]:
        mature = sum(int((a > self.maturity).sum()) for a in self.age)
        total = sum(a.numel() for a in self.age)
        return {"cbp_replaced": float(self.replaced), "cbp_mature_fraction": mature / total}

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "replaced": self.replaced, "to_replace": list(self.to_replace),
                "utility": [u.clone() for u in self.utility], "age": [a.clone() for a in self.age],
                "mean_activation": [m.clone() for m in self.mean_activation]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state.get("updates", 0))
        self.replaced = int(state.get("replaced", 0))
        self.to_replace = [float(x) for x in state.get("to_replace", self.to_replace)]
        for dst, src in zip(self.utility, state.get("utility", [])):
            dst.copy_(src)
        for dst, src in zip(self.age, state.get("age", [])):
            dst.copy_(src)
        for dst, src in zip(self.mean_activation, state.get("mean_activation", [])):
            dst.copy_(src)
