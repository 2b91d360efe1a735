"""Build everything a run needs from its configuration, refusing bad input up front.

`build(cfg)` creates the task schedule, the agent, the replay buffer, the interventions and
the plasticity monitor. Every error a user can cause (unknown task, preset, intervention
or parameter, a bad hyper-parameter, a missing optional package) surfaces here as a
`ValueError` with one line, before the run directory exists.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

import plasticity as pl
from agents.base import Agent
from agents.dqn import DQN, linear_epsilon
from replay import make_replay
from envs import AtariOptions, TaskSchedule
from plasticity import registry
from runner.config import TrainConfig


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
class Components:
    """The parts of a run and the few numbers the loop derives from the configuration."""

    cfg: TrainConfig
    device: torch.device
    schedule: Any
    agent: Agent
    replay: Any
    monitors: dict[str, Any] = field(default_factory=dict)
    random_baselines: dict[int, float] = field(default_factory=dict)
    measurements: int = 0
    eval_envs: dict[int, Any] = field(default_factory=dict)  # one evaluation env per task
    eval_episodes_done: int = 0

    @property
    def batch_size(self) -> int:
        return self.cfg.dqn.batch_size if self.cfg.agent == "dqn" else self.cfg.sac.batch_size

    @property
    def learning_starts(self) -> int:
        return self.cfg.dqn.learning_starts if self.cfg.agent == "dqn" else self.cfg.sac.learning_starts

    @property
    def updates_per_env_step(self) -> float:
        agent_cfg = self.cfg.dqn if self.cfg.agent == "dqn" else self.cfg.sac
        return agent_cfg.gradient_steps / agent_cfg.train_freq

    @property
    def prioritized(self) -> bool:
        return self.cfg.replay.kind == "prioritized"

    def visit_start_step(self, step: int) -> int:
        """Environment step at which the current visit began (for ε restarts)."""
        return self.schedule.visit * self.schedule.steps_per_visit if step else 0

    def after_update(self, batch: Any, step: int, log: Any) -> None:
        """Measure plasticity every `monitor.every` gradient steps."""
        every = self.cfg.monitor.every
        if not every or not self.monitors or self.agent.updates % every:
            return
        sample = self.replay.sample(self.cfg.monitor.batch_size)
        self.measurements += 1
        hist = bool(self.cfg.monitor.histogram_every) and self.measurements % self.cfg.monitor.histogram_every == 0
        several = len(self.monitors) > 1
        for name, mon in self.monitors.items():
            learnable = self.agent.learnables[name]
            stats = mon.measure(learnable.inputs(sample))
            prefix = f"plasticity/{name}/" if several else "plasticity/"
            log.scalars({prefix + k.removeprefix("plasticity/"): v for k, v in stats.items()}, step)
            if hist:
                for layer, scores in mon.scores.items():
                    log.writer.add_histogram(f"{prefix}neuron_scores/{layer}", scores, step)
        log.scalars({f"plasticity/{k}": v for k, v in self.agent.extra_metrics(sample).items()}, step)

    def measure_random_baselines(self) -> dict[int, float]:
        from runner.evaluate import evaluate_random

        n = self.cfg.eval.random_episodes
        return {i: evaluate_random(self, i, n) for i in range(len(self.schedule.tasks))} if n else {}


def random_actions(comp: Components, task: int, n: int) -> torch.Tensor:
    """Uniformly random valid actions for `n` envs, on the device."""
    if comp.schedule.discrete:
        probs = comp.schedule.action_masks[task].float().expand(n, -1)
        return torch.multinomial(probs, 1).squeeze(1)
    return torch.rand(n, comp.schedule.action_dim, device=comp.device) * 2 - 1


def epsilon_at(cfg: TrainConfig, comp: Components, step: int, visit_start: int) -> float:
    if cfg.dqn.epsilon_restart:
        return linear_epsilon(cfg.dqn, step - visit_start, comp.schedule.steps_per_visit)
    return linear_epsilon(cfg.dqn, step, comp.schedule.total_steps)


def _make_agent(cfg: TrainConfig, schedule: Any, device: torch.device, arch: dict[str, str]) -> Agent:
    if cfg.agent == "dqn":
        if not schedule.discrete:
            raise ValueError(f"--agent dqn needs discrete actions; {schedule.tasks[0].id} is continuous: use --agent sac")
        dqn_cfg = dataclasses.replace(cfg.dqn, **arch)
        return DQN(dqn_cfg, schedule.obs_shape, schedule.num_actions, schedule.action_masks, device, cfg.seed)
    from agents.sac import SAC

    if schedule.discrete:
        raise ValueError(f"--agent sac needs continuous actions; {schedule.tasks[0].id} is discrete: use --agent dqn")
    sac_cfg = dataclasses.replace(cfg.sac, **arch)
    return SAC(sac_cfg, schedule.obs_shape, schedule.action_dim, device, cfg.seed)


def _attach_interventions(agent: Agent, specs: list[registry.InterventionSpec]) -> None:
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


def build(cfg: TrainConfig) -> Components:
    """Create the run's components; raise ValueError (one line) on any bad input."""
    cfg.validate()
    specs = registry.parse_all(cfg.plasticity)
    arch = registry.architecture(specs)
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    atari = AtariOptions(repeat_action_probability=cfg.env.sticky_actions, noop_max=cfg.env.noop_max,
                         max_num_frames_per_episode=cfg.env.max_episode_frames)
    schedule = TaskSchedule(cfg.env.task_ids(), cfg.env.steps_per_visit, cfg.env.cycles, cfg.env.num_envs,
                            device=device, seed=cfg.seed, atari=atari)
    try:
        agent = _make_agent(cfg, schedule, device, arch)
        _attach_interventions(agent, specs)
        is_dqn = cfg.agent == "dqn"
        replay = make_replay(
            cfg.replay.kind, cfg.replay.capacity, cfg.env.num_envs, schedule.obs_shape, schedule.obs_dtype,
            schedule.frame_stack,
            action_shape=() if schedule.discrete else (schedule.action_dim,),
            action_dtype=torch.long if schedule.discrete else torch.float32,
            n_step=cfg.dqn.n_step if is_dqn else cfg.sac.n_step,
            gamma=cfg.dqn.gamma if is_dqn else cfg.sac.gamma,
            reward_clip=cfg.dqn.reward_clip if is_dqn else None,
            device=device, seed=cfg.seed, alpha=cfg.replay.alpha, beta0=cfg.replay.beta0,
            beta_steps=max(1, schedule.total_steps),
        )
        monitors = {}
        if cfg.monitor.every:
            monitors = {name: pl.Monitor(l.module, tau=cfg.monitor.tau) for name, l in agent.learnables.items()}
    except BaseException:
        schedule.close()
        raise
    return Components(cfg, device, schedule, agent, replay, monitors)
