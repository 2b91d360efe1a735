"""What one step of a :class:`envs.schedule.TaskSchedule` returns: the transition's tensors, the
episodes that finished, and the task switch when a visit ended."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch


class Episode(NamedTuple):
    """A finished episode: raw (unclipped; reward-shifted if the task has a reward shift) return
    and its number of agent steps."""

    task: int
    env: int
    ret: float
    length: int


class TaskSwitch(NamedTuple):
    """The visit budget ran out: the schedule moved from task ``previous`` to ``current``."""

    previous: int
    current: int
    visit: int


@dataclass(slots=True)
class StepResult:
    """What one vector step of the schedule returns (tensors on the schedule's device)."""

    next_obs: torch.Tensor
    """(N, *obs_shape): the true next observation (what replay stores)."""
    obs: torch.Tensor
    """What to act on next: ``next_obs``, or the new task's first observation after a switch."""
    rewards: torch.Tensor
    """(N,) float32 raw rewards."""
    terminated: torch.Tensor
    """(N,) bool: the episode ended; do not bootstrap."""
    truncated: torch.Tensor
    """(N,) bool: the episode was cut (time limit or task switch); bootstrap."""
    valid: torch.Tensor
    """(N,) bool: False where this step was an auto-reset step (not a transition)."""
    task: int
    """Index of the task this step belongs to."""
    episodes: list[Episode]
    """Episodes that finished at this step."""
    switch: TaskSwitch | None
    """Set when the visit ended at this step and a new task began."""
    transitions: int
    """Transitions among this step's env steps, as a host number, for crediting gradient steps
    without reading the device (see ``TaskSchedule``'s "Transitions")."""
