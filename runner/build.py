"""Build the parts of a run from its configuration, refusing bad input up front.

`build(cfg)` creates the task schedule, the agent (through `agents.registry`), its
interventions, the replay buffer, the evaluator and the plasticity monitoring. Every error a
user can cause (unknown task, preset, agent, intervention or parameter, a bad
hyper-parameter, a missing optional package, an intervention that needs task boundaries
when they are hidden) surfaces here as a one-line `ValueError`, before the run directory
exists; whatever was created is closed again.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from agents import registry as agent_registry
from agents.base import Agent
from replay import make_replay
from envs import AtariOptions, TaskSchedule
from envs.minatar.vector import MinAtarOptions
from plasticity import registry
from runner.config import TrainConfig
from runner.evaluator import Evaluator
from runner.monitoring import Monitoring


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a device; valid: auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine; use auto or cpu")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class RunParts:
    """What the training loop runs: each part has `state_dict`/`load_state_dict`."""

    schedule: Any
    agent: Agent
    replay: Any
    evaluator: Evaluator
    monitoring: Monitoring

    def close(self) -> None:
        self.evaluator.close()
        self.schedule.close()


def attach_interventions(agent: Agent, specs: list[registry.InterventionSpec]) -> list[tuple[str, Any]]:
    """Attach each non-architectural intervention to the networks it names (`on=`), or to all;
    returns (spec name, intervention) pairs."""
    attached = []
    for spec in specs:
        if spec.is_architecture:
            continue
        names = spec.on or tuple(agent.learnables)
        for name in names:
            if name not in agent.learnables:
                raise ValueError(f"--plasticity {spec.name}: on={name!r} is not a network of this agent; "
                                 f"valid: {', '.join(agent.learnables)}")
            learnable = agent.learnables[name]
            iv = registry.build(spec, learnable.module, learnable.optimizer, learnable.targets)
            learnable.interventions.append(iv)
            attached.append((spec.name, iv))
    return attached


def check_task_boundaries(cfg: TrainConfig, attached: list[tuple[str, Any]]) -> None:
    """With hidden boundaries, refuse what can only act at a task switch."""
    if cfg.task_boundaries:
        return
    if getattr(cfg.agent_config(), "epsilon_restart", False):
        raise ValueError(f"--{cfg.agent}.epsilon-restart restarts exploration at task switches, which "
                         "--no-task-boundaries hides; drop one of the two")
    for name, iv in attached:
        if getattr(iv, "needs_task_boundaries", False):
            raise ValueError(f"--plasticity {name} acts only at task switches, which --no-task-boundaries "
                             "hides; give it a period instead (see --plasticity-help)")


def build(cfg: TrainConfig) -> RunParts:
    """Create the run's parts; raise ValueError (one line) on any bad input."""
    cfg.validate()
    specs = registry.parse_all(cfg.plasticity)
    arch = registry.architecture(specs)
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    sticky = {} if cfg.env.sticky_actions is None else {"repeat_action_probability": cfg.env.sticky_actions}
    atari = AtariOptions(**sticky, noop_max=cfg.env.noop_max, max_num_frames_per_episode=cfg.env.max_episode_frames)
    sticky = {} if cfg.env.sticky_actions is None else {"sticky_action_prob": cfg.env.sticky_actions}
    minatar = MinAtarOptions(**sticky, difficulty_ramping=cfg.env.difficulty_ramping,
                             max_episode_steps=cfg.env.max_episode_steps, compile=cfg.env.compile)
    schedule = TaskSchedule(cfg.env.task_ids(), cfg.env.steps_per_visit, cfg.env.cycles, cfg.env.num_envs,
                            device=device, seed=cfg.seed, atari=atari, minatar=minatar)
    try:
        agent_cfg = cfg.agent_config(**arch)
        agent = agent_registry.build_agent(cfg.agent, agent_cfg, schedule, device, cfg.seed)
        check_task_boundaries(cfg, attach_interventions(agent, specs))
        replay = make_replay(
            cfg.replay.kind, cfg.replay.capacity, cfg.env.num_envs, schedule.obs_shape, schedule.obs_dtype,
            schedule.frame_stack,
            action_shape=() if schedule.discrete else (schedule.action_dim,),
            action_dtype=torch.long if schedule.discrete else torch.float32,
            **agent_cfg.replay_options(),
            device=device, seed=cfg.seed, alpha=cfg.replay.alpha, beta0=cfg.replay.beta0,
            beta_steps=max(1, schedule.total_steps),
        )
        evaluator = Evaluator(
            schedule.make_eval_envs, len(schedule.tasks),
            schedule.action_masks if schedule.discrete else None,
            0 if schedule.discrete else schedule.action_dim,
            episodes=cfg.eval.episodes, random_episodes=cfg.eval.random_episodes, max_steps=cfg.eval.max_steps,
            epsilon=cfg.eval.epsilon, seed=cfg.seed)
        monitoring = Monitoring(agent, cfg.monitor.every, cfg.monitor.batch_size, cfg.monitor.tau,
                                cfg.monitor.histogram_every)
    except BaseException:
        schedule.close()
        raise
    return RunParts(schedule, agent, replay, evaluator, monitoring)
