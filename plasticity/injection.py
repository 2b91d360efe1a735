"""Plasticity injection.

Paper: Nikishin, Oh, Ostrovski, Lyle, Pascanu, Dabney & Barreto, "Deep Reinforcement
Learning with Plasticity Injection" (NeurIPS 2023, arXiv:2305.15555).

At the moment of injection the head h (a submodule, e.g. the Q-value MLP on top of the
encoder) is frozen, a fresh head h' of the same architecture is created with a new
initialisation, and a frozen copy h'_0 of it is subtracted:

    head(z) = h(z) + (h'(z) - h'_0(z))

h' and h'_0 are identical at that moment, so the output is exactly unchanged, while the
trainable parameters of the head are fresh. Gradients still flow through all three heads
into the encoder, which keeps training.

Defaults: ``head="head"`` (dotted path of the submodule to inject into), inject on every
task switch the learner is told about (``at_task_switch=True``; a switch before the first
update, i.e. the start of the first task, is ignored), or once after ``at_step`` updates
(``at_step=None``: never). The paper injects once; here a second injection *nests*: the
whole current head (h + h' - h'_0) is frozen as the new h and another fresh pair is added,
so only the newest h' trains. Each injection adds two head-sized forward passes, so
``max_injections`` (None: unlimited) ignores triggers beyond that count.

Optimizer: the trainable old head parameters are replaced, position by position, by the
fresh ones in the optimizer's param groups (same group, same hyper-parameters), and their
optimizer state (Adam moments) is dropped; the fresh parameters start with no state.
Frozen parameters get ``requires_grad=False`` and are in no param group.
Targets: each target copy gets the same structure, with its own old head frozen and
copies of the online h' and h'_0, so its output is also unchanged, its parameter names
and order match the online network, and hard or Polyak syncs keep working.
Fresh initialisation: every submodule's ``reset_parameters()`` (PyTorch default init), or
``init(head)`` when given. Heads that sample noise (NoisyNet) break the exact equality.

Hidden task boundaries: `on_task_switch` is never called, so with ``at_step=None`` nothing
would ever be injected; the intervention says so with ``needs_task_boundaries = True`` and
the runner refuses that combination. Give ``at_step=N`` for the one-off form of the paper.

Checkpoints: ``state_dict`` stores the number of injections; ``load_state_dict`` redoes
them structurally, so load the intervention's state *before* the model's and the
optimizer's. A compiled module (torch.compile) must be recompiled after an injection.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Iterable

import torch
import torch.fx
from torch import nn

from plasticity.base import Intervention


def _combine(old: Any, fresh: Any, fresh_init: Any) -> Any:
    if isinstance(old, (torch.Tensor, torch.fx.Proxy)):  # a Proxy while the structure is traced
        return old + (fresh - fresh_init)  # fresh - fresh_init is exactly 0 at injection
    if isinstance(old, (tuple, list)):
        return type(old)(_combine(a, b, c) for a, b, c in zip(old, fresh, fresh_init))
    if isinstance(old, dict):
        return {k: _combine(old[k], fresh[k], fresh_init[k]) for k in old}
    raise TypeError(f"injection: cannot combine head outputs of type {type(old).__name__}")


class InjectedHead(nn.Module):
    """frozen(z) + fresh(z) - fresh_init(z); outputs may be tensors, tuples or dicts."""

    def __init__(self, frozen: nn.Module, fresh: nn.Module, fresh_init: nn.Module) -> None:
        super().__init__()
        self.frozen = frozen
        self.fresh = fresh
        self.fresh_init = fresh_init

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        old = self.frozen(*args, **kwargs)
        return _combine(old, self.fresh(*args, **kwargs), self.fresh_init(*args, **kwargs))


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _freeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)
        p.grad = None


def _base(head: nn.Module) -> nn.Module:
    """The trainable head of the original architecture inside (possibly nested) injections."""
    return head.fresh if isinstance(head, InjectedHead) else head


def _reinit(module: nn.Module) -> None:
    with torch.no_grad():
        for m in module.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()


class PlasticityInjection(Intervention):
    """Freeze the head, add a fresh head minus its frozen copy (see module doc).

    Args:
        module: the network holding the head.
        optimizer: the optimizer training ``module`` (must train the head).
        targets: target copies of ``module``; they get the same structure.
        head: dotted path of the head submodule inside ``module`` (and each target).
        at_step: inject once after this many updates (>= 1); None never.
        at_task_switch: inject at every task switch after the first update.
        max_injections: ignore triggers after this many injections (>= 1); None unlimited.
        init: callable re-initialising a fresh head in place; None uses reset_parameters().
    """

    name = "injection"
    #: what replaces injection at task switches when the learner is not told about them
    without_task_boundaries = "injects only with at_step=N (at_step=None needs announced switches)"

    def __init__(
        self,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        targets: Iterable[nn.Module] = (),
        head: str = "head",
        at_step: int | None = None,
        at_task_switch: bool = True,
        max_injections: int | None = None,
        init: Callable[[nn.Module], None] | None = None,
    ) -> None:
        super().__init__()
        if optimizer is None:
            raise ValueError("injection: optimizer is required (it must train the fresh head)")
        if not isinstance(head, str) or not head:
            raise ValueError(
                f"injection: head must be a non-empty dotted submodule name, got {head!r}"
            )
        if at_step is not None and not _is_count(at_step):
            raise ValueError(f"injection: at_step must be None or an integer >= 1, got {at_step!r}")
        if max_injections is not None and not _is_count(max_injections):
            raise ValueError(
                f"injection: max_injections must be None or an integer >= 1, got {max_injections!r}"
            )
        if init is not None and not callable(init):
            raise ValueError(f"injection: init must be callable or None, got {init!r}")
        self.module = module
        self.optimizer = optimizer
        self.targets = list(targets)
        self.head = head
        self.at_step = at_step
        self.at_task_switch = bool(at_task_switch)
        self.needs_task_boundaries = at_step is None
        self.max_injections = max_injections
        self.init = init
        self.injections = 0
        for net, label in [(module, "module"), *((t, "target") for t in self.targets)]:
            head_module = self._get(net, label)
            if not any(True for _ in head_module.parameters()):
                raise ValueError(f"injection: head {head!r} of the {label} has no parameters")
        trained = {id(p) for g in optimizer.param_groups for p in g["params"]}
        if not any(id(p) in trained for p in self._get(module, "module").parameters()):
            raise ValueError(f"injection: the optimizer does not train head {head!r}")

    # -- structure ---------------------------------------------------------------------------

    def _get(self, net: nn.Module, label: str) -> nn.Module:
        try:
            return net.get_submodule(self.head)
        except AttributeError:
            raise ValueError(
                f"injection: head {self.head!r} is not a submodule of the {label} "
                f"({type(net).__name__})"
            ) from None

    def _set(self, net: nn.Module, new: nn.Module) -> None:
        parent_path, _, attr = self.head.rpartition(".")
        parent = net.get_submodule(parent_path) if parent_path else net
        setattr(parent, attr, new)

    def inject(self) -> bool:
        """Inject now (unless ``max_injections`` is reached). Returns whether it did."""
        with torch.no_grad():
            if self.max_injections is not None and self.injections >= self.max_injections:
                return False
            current = self._get(self.module, "module")
            base = _base(current)
            fresh = copy.deepcopy(base)  # same architecture, device, dtype, requires_grad flags
            if self.init is None:
                _reinit(fresh)
            else:
                self.init(fresh)
            fresh_init = copy.deepcopy(fresh)
            _freeze(fresh_init)
            self._swap_in_optimizer(list(base.parameters()), list(fresh.parameters()))
            _freeze(current)
            self._set(self.module, InjectedHead(current, fresh, fresh_init))

            for target in self.targets:
                t_current = self._get(target, "target")
                t_fresh, t_init = copy.deepcopy(fresh), copy.deepcopy(fresh_init)
                if not any(p.requires_grad for p in _base(t_current).parameters()):
                    _freeze(t_fresh)  # a frozen target stays entirely frozen
                _freeze(t_current)
                self._set(target, InjectedHead(t_current, t_fresh, t_init))
            self.injections += 1
            return True

    def _swap_in_optimizer(self, old: list[nn.Parameter], new: list[nn.Parameter]) -> None:
        replace = {id(p): q for p, q in zip(old, new) if p.requires_grad}
        for group in self.optimizer.param_groups:
            swapped = [replace.get(id(p), p) for p in group["params"]]
            for p in group["params"]:
                if id(p) in replace:
                    self.optimizer.state.pop(p, None)
            group["params"] = swapped

    # -- hooks -------------------------------------------------------------------------------

    def after_step(self, inputs: Any = None) -> None:
        super().after_step(inputs)
        if self.at_step is not None and self.updates == self.at_step:
            self.inject()

    def on_task_switch(self, task: int) -> None:
        if self.at_task_switch and self.updates > 0:
            self.inject()

    def metrics(self) -> dict[str, float]:
        return {"injection_count": float(self.injections)}

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "injections": self.injections}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        wanted = int(state.get("injections", 0))
        if wanted < self.injections:
            raise ValueError(
                f"injection: checkpoint has {wanted} injections, the module already has "
                f"{self.injections}"
            )
        while self.injections < wanted:
            if not self.inject():
                raise ValueError(
                    f"injection: checkpoint has {wanted} injections, max_injections is "
                    f"{self.max_injections}"
                )
