"""The agents a run can use, by name: `--agent NAME` picks one, `--NAME.*` sets its options.

Each entry names the agent's config dataclass (a field of `TrainConfig` with the same name)
and a constructor `build(config, schedule, device, seed) -> Agent` that refuses a schedule
it cannot serve (continuous actions for DQN, discrete for SAC) in one line. Adding an agent
is one entry here, one config field in `runner/config.py`, and its own file in `agents/`;
nothing in the loop or the runner names an agent.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from agents.base import Agent


@dataclass(frozen=True)
class AgentEntry:
    """How to build one kind of agent."""

    name: str
    """The name on the command line (`--agent NAME`) and of its config field (`--NAME.lr`)."""
    module: str
    """Module holding `build(config, schedule, device, seed)` (imported on use)."""
    summary: str
    """One line for `--help`."""

    @property
    def build(self) -> Callable[[Any, Any, torch.device, int], Agent]:
        return importlib.import_module(self.module).build


AGENTS: dict[str, AgentEntry] = {
    "dqn": AgentEntry("dqn", "agents.dqn", "Double DQN with ε-greedy exploration (discrete actions)"),
    "sac": AgentEntry("sac", "agents.sac", "Soft Actor-Critic with twin critics (continuous actions)"),
}


def get(name: str) -> AgentEntry:
    """The entry for `name`; an unknown name is refused in one line listing the valid ones."""
    if name not in AGENTS:
        raise ValueError(f"--agent {name!r} is not an agent; valid: {', '.join(AGENTS)}")
    return AGENTS[name]


def build_agent(name: str, config: Any, schedule: Any, device: torch.device, seed: int) -> Agent:
    """Build agent `name` with its `config` for `schedule`."""
    return get(name).build(config, schedule, device, seed)
