"""ReDo: Recycling Dormant neurons (Sokar et al., 2023, "The dormant neuron phenomenon in
deep reinforcement learning").

Every `every` updates, on a batch of the module's inputs (the batch given to
`after_step`, e.g. the observations of the replay batch just trained on), score each hidden
neuron i of layer ℓ by its mean absolute activation, normalised by the layer's mean:

    s_i = E_x |h_i(x)|  /  ( (1/H_ℓ) Σ_j E_x |h_j(x)| )

(for a conv channel the expectation also runs over spatial positions; if the whole layer
is silent the scores are 0). Neuron i is dormant if s_i ≤ τ. Dormant neurons are recycled:
fresh incoming weights from the layer's initialiser, zero bias, zero outgoing weights (so a
recycled unit contributes nothing at the moment of recycling: the output is exactly unchanged
for dead units, and loses only the small contribution of units dormant but not dead; a
LayerNorm/GroupNorm that mixes the units breaks this), and the optimizer moments (Adam's exp_avg, exp_avg_sq, max_exp_avg_sq)
of exactly those entries zeroed. The output layer is never recycled. Hidden layers,
activations and outgoing weights come from the traced forward pass
(`plasticity.structure`: functional activations, forks such as a dueling head's two
streams, flattens); a hidden layer whose output reaches a residual sum, a concatenation or
the network's output is not recycled and not counted. A network that does not trace is
refused at construction; `pairs` gives the structure explicitly.

Defaults: τ = 0.1, every = 1000 updates, the whole batch given (``batch_size=None``; the
paper uses 64–256 samples, pass e.g. ``batch_size=256`` to cap it). The paper also uses
τ = 0.025 to measure dormancy.

Measurement: one no-grad forward of the traced network up to the activations, at each
check (no permanent hooks); BatchNorm running statistics are restored.
For tanh/sigmoid units a saturated neuron has a large |h| and is never "dormant" by this
score even though it has no gradient; the score fits ReLU-like activations.

Targets: left alone. The paper recycles the online network only; the target network
follows it through its usual (periodic or Polyak) update.
Metrics: ``redo_recycled`` (neurons recycled at the last check) and ``redo_dormant_ratio``
(fraction of hidden neurons dormant at the last check).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from plasticity.base import Intervention
from plasticity.layers import measure_activity, neuron_groups
from plasticity.reinit import recycle


def dormancy_scores(activity: torch.Tensor) -> torch.Tensor:
    """ReDo scores of one layer from its per-unit mean |h| (shape (n,) or (k, n) for a
    widening activation, averaged over the k copies): s = a / mean(a), or zeros if mean(a)=0."""
    a = activity.mean(dim=0) if activity.dim() == 2 else activity
    m = a.mean()
    return a / m if m > 0 else torch.zeros_like(a)


def _take(inputs: Any, n: int | None) -> Any:
    if n is None:
        return inputs
    if isinstance(inputs, (tuple, list)):
        return tuple(x[:n] if torch.is_tensor(x) else x for x in inputs)
    return inputs[:n]


class ReDo(Intervention):
    """Recycle neurons whose normalised activity is ≤ tau, every `every` updates."""

    name = "redo"
    needs_inputs = True

    def __init__(self, module: nn.Module, optimizer: torch.optim.Optimizer | None = None, *,
                 targets: Sequence[nn.Module] = (), tau: float = 0.1, every: int = 1000,
                 batch_size: int | None = None, pairs: Sequence[Sequence[Any]] | None = None) -> None:
        super().__init__()
        if not float(tau) >= 0.0:
            raise ValueError(f"redo: tau must be >= 0, got {tau!r}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"redo: every must be an int >= 1, got {every!r}")
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                       or batch_size < 1):
            raise ValueError(f"redo: batch_size must be None or an int >= 1, got {batch_size!r}")
        self.module = module
        self.optimizer = optimizer
        self.targets = list(targets)  # left alone, see the module docstring
        self.tau = float(tau)
        self.every = every
        self.batch_size = batch_size
        self.groups = neuron_groups(module, pairs, who="redo")
        if not self.groups:
            raise ValueError("redo: the module has no hidden layer (a Linear/Conv followed by another)")
        self.recycled = 0
        self.recycled_total = 0
        self.dormant_ratio = 0.0
        self._warned = False

    def scores(self, inputs: Any) -> list[torch.Tensor]:
        """Per hidden layer, the score s_i of every neuron on `inputs` (no side effects)."""
        acts = measure_activity(self.module, self.groups, _take(inputs, self.batch_size))
        return [dormancy_scores(a) for a in acts]

    def check(self, inputs: Any) -> int:
        """Score the neurons on `inputs` and recycle the dormant ones now; returns their number."""
        scores = self.scores(inputs)
        selection = [(g, torch.nonzero(s <= self.tau).flatten()) for g, s in zip(self.groups, scores)]
        n = recycle(selection, self.optimizer)
        total = sum(s.numel() for s in scores)
        self.recycled = n
        self.recycled_total += n
        self.dormant_ratio = n / total
        return n

    def after_step(self, inputs: Any = None) -> None:
        self.updates += 1
        if self.updates % self.every:
            return
        if inputs is None:
            if not self._warned:
                warnings.warn("redo: after_step got no inputs at a check; skipping it "
                              "(pass the batch's module inputs to after_step)", stacklevel=2)
                self._warned = True
            return
        self.check(inputs)

    def metrics(self) -> dict[str, float]:
        return {"redo_recycled": float(self.recycled), "redo_dormant_ratio": float(self.dormant_ratio)}

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "recycled": self.recycled, "recycled_total": self.recycled_total,
                "dormant_ratio": self.dormant_ratio}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state.get("updates", 0))
        self.recycled = int(state.get("recycled", 0))
        self.recycled_total = int(state.get("recycled_total", 0))
        self.dormant_ratio = float(state.get("dormant_ratio", 0.0))
