"""What every agent shows the training loop and the plasticity interventions.

The loop (`train.train`) uses an agent through this small interface and nothing else:

    actions = agent.act(obs, task, step)          # exploration owned by the agent (ε-greedy,
                                                  # a sampled action, random before learning_starts)
    ...store the transition...
    if step >= agent.learning_starts and len(replay) >= agent.batch_size:
        for each of agent.updates_per_env_step updates per new transition:
            metrics = agent.update(replay.sample(agent.batch_size))
    agent.on_task_switch(task, step)               # only when task boundaries are shown
    returns = evaluate(agent.greedy(obs, task))   # evaluation policy, no exploration
    agent.log_scalars(step)                       # e.g. {"charts/epsilon": ε}

An agent owns one or more *learnables*: a module, the optimizer that trains it, the
target copies that follow it, and a function that turns a replay batch into the
module's inputs (for interventions that need activations, such as ReDo). Inside `update`,
for every learnable, the agent adds `extra_loss(learnable)` to its loss before
`backward()` and calls `after_step(learnable, batch)` right after `optimizer.step()`.
The agent never knows which interventions are attached.

Agents are found by name through `agents.registry`; an agent's config dataclass says how
the replay must treat its transitions (`replay_options()`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from plasticity.base import Intervention


def make_adam(params, lr: float, eps: float = 1e-8) -> torch.optim.Adam:
    """Adam with the fused kernel (one kernel for all parameters: about 3x faster than the
    per-tensor loop on CPU); the same update rule and state keys as plain Adam."""
    return torch.optim.Adam(params, lr=lr, eps=eps, fused=True)


@dataclass
class Learnable:
    """A trained module with its optimizer, its target copies and its attached interventions."""

    module: nn.Module
    optimizer: torch.optim.Optimizer
    targets: list[nn.Module]
    #: maps a replay batch to the module's inputs (a tensor or a tuple of positional args)
    inputs: Callable[[Any], Any]
    interventions: list[Intervention] = field(default_factory=list)


def extra_loss(learnable: Learnable) -> torch.Tensor | None:
    """Sum of the loss terms of the interventions attached to `learnable`, or None."""
    total = None
    for iv in learnable.interventions:
        term = iv.loss()
        if term is not None:
            total = term if total is None else total + term
    return total


def after_step(learnable: Learnable, batch: Any) -> None:
    """Run every attached intervention's `after_step`, in the order they were given."""
    if not learnable.interventions:
        return
    inputs = None
    for iv in learnable.interventions:
        if getattr(iv, "needs_inputs", True) and inputs is None:
            inputs = learnable.inputs(batch)
        iv.after_step(inputs)


class Agent:
    """Base class: subclasses fill `self.learnables`, the three loop numbers, and implement
    `act`, `greedy` and `update`."""

    learnables: dict[str, Learnable]
    updates: int = 0  # gradient steps taken
    batch_size: int
    """Transitions per gradient step."""
    learning_starts: int
    """Environment steps (all envs together) before the first gradient step."""
    updates_per_env_step: float
    """Gradient steps per stored transition (gradient_steps / train_freq)."""

    def act(self, obs: torch.Tensor, task: int, step: int) -> torch.Tensor:
        """Exploratory actions for `obs` of task `task` at environment step `step` (device tensor)."""
        raise NotImplementedError

    def greedy(self, obs: torch.Tensor, task: int) -> torch.Tensor:
        """The evaluation policy's actions (no exploration)."""
        raise NotImplementedError

    def update(self, batch: Any) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def log_scalars(self, step: int) -> dict[str, float]:
        """Scalars of the agent's own schedules at `step` (e.g. charts/epsilon), logged with the losses."""
        return {}

    def extra_metrics(self, batch: Any) -> dict[str, float]:
        """Agent-specific plasticity scalars on a monitoring batch (Q-values, entropy, ...)."""
        return {}

    def on_task_switch(self, task: int, step: int) -> None:
        """The schedule moved to `task` at environment step `step`; tell every intervention."""
        for learnable in self.learnables.values():
            for iv in learnable.interventions:
                iv.on_task_switch(task)

    def intervention_metrics(self) -> dict[str, float]:
        """Each intervention's own scalars, keyed `<learnable>/<name>` when there are several learnables."""
        out: dict[str, float] = {}
        several = len(self.learnables) > 1
        for lname, learnable in self.learnables.items():
            for iv in learnable.interventions:
                for key, value in iv.metrics().items():
                    out[f"{key}/{lname}" if several else key] = value
        return out

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for name, l in self.learnables.items():
            state[name] = {
                "module": l.module.state_dict(),
                "optimizer": l.optimizer.state_dict(),
                "targets": [t.state_dict() for t in l.targets],
                "interventions": [iv.state_dict() for iv in l.interventions],
            }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, l in self.learnables.items():
            s = state[name]
            # interventions first: one that changed the structure (plasticity injection)
            # rebuilds it, so the module, optimizer and target states below fit
            for iv, ivs in zip(l.interventions, s["interventions"]):
                iv.load_state_dict(ivs)
            l.module.load_state_dict(s["module"])
            l.optimizer.load_state_dict(s["optimizer"])
            for t, ts in zip(l.targets, s["targets"]):
                t.load_state_dict(ts)
