"""The run's configuration: typed dataclasses parsed by `tyro`.

Every field has a one-line docstring, which `python train.py --help` shows. A preset (`runner/presets.py`)
is a named `TrainConfig` instance; options given on the command line override it. The fully
resolved configuration is written as `config.json` next to the TensorBoard files.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from agents.dqn import DQNConfig
from agents.sac import SACConfig


@dataclass
class EnvConfig:
    """The task schedule: which tasks, how long each visit lasts, how many cycles."""

    tasks: tuple[str, ...] = ("gym:CartPole-v1",)
    """Task ids in visiting order: atari:<Game>, minatar:<Game> (Asterix, Breakout, Freeway, Seaquest, SpaceInvaders: batched on the training device) or gym:<Gymnasium id>, each optionally with @SHIFT (see --env.shift), e.g. gym:CartPole-v1@permute-obs."""
    games: tuple[str, ...] = ()
    """Shorthand for Atari tasks: Pong Breakout ... (replaces --env.tasks when given)."""
    shift: str = ""
    """Shifts for every task without its own ID@SHIFT, redrawn each visit, joined by +: permute-obs, obs-offset[:scale=1], obs-noise[:std=0.1], reward-scale[:low=0.1,high=10], reward-flip, permute-actions, dynamics[:params=all|gravity/length/mass/friction,low=0.5,high=2]."""
    steps_per_visit: int = 50_000
    """Environment steps (all envs together) spent on a task at each visit."""
    cycles: int = 2
    """How many times the whole task list is visited."""
    num_envs: int = 1
    """Parallel environments (ale-py's native vector env for Atari, one batched tensor program for MinAtar)."""
    sticky_actions: float | None = None
    """Atari and MinAtar: probability of repeating the previous action; None: each suite's standard, 0.25 for Atari (Machado et al., 2018), 0.1 for MinAtar (Young & Tian, 2019)."""
    noop_max: int = 0
    """Atari: up to this many no-op actions at reset (0 with sticky actions, as Machado et al.)."""
    max_episode_frames: int = 108_000
    """Atari: episode cap in emulator frames (ends in truncation, which bootstraps)."""
    difficulty_ramping: bool = True
    """MinAtar: ramp each game's difficulty as the reference does (Asterix, Seaquest, SpaceInvaders speed up as an episode goes on); --env.no-difficulty-ramping keeps them at their first level."""
    max_episode_steps: int | None = None
    """MinAtar: episode cap in agent steps (ends in truncation); None: no cap, as in MinAtar."""
    compile: bool = False
    """MinAtar: run each game's step through torch.compile (the same steps, value for value). Pays for SpaceInvaders, Asterix and Seaquest at small --env.num-envs (benchmarks/RESULTS.md); compiling takes seconds per game at the first step."""

    def task_ids(self) -> list[str]:
        ids = [f"atari:{g}" for g in self.games] if self.games else list(self.tasks)
        if self.shift:  # a task's own "@shift" wins over --env.shift
            ids = [t if "@" in t else f"{t}@{self.shift}" for t in ids]
        return ids

    def _non_minatar_tasks(self) -> list[str]:
        return [t for t in self.task_ids() if t.split(":", 1)[0].strip().lower() != "minatar"]

    def validate(self) -> None:
        for name in ("steps_per_visit", "cycles", "num_envs"):
            value = getattr(self, name)
            if value <= 0:
                raise ValueError(f"--env.{name.replace('_', '-')} must be a positive integer, got {value}")
        if self.sticky_actions is not None and not 0.0 <= self.sticky_actions <= 1.0:
            raise ValueError(f"--env.sticky-actions must be in [0, 1] (or None: the suite's standard), "
                             f"got {self.sticky_actions}")
        if self.max_episode_steps is not None:
            if self.max_episode_steps < 1:
                raise ValueError(f"--env.max-episode-steps must be >= 1 (or None: no cap), got {self.max_episode_steps}")
            others = self._non_minatar_tasks()
            if others:
                raise ValueError(f"--env.max-episode-steps caps MinAtar episodes only, but the tasks include "
                                 f"{others[0]!r} (Atari's cap is --env.max-episode-frames; Gym tasks keep their own)")
        if not self.difficulty_ramping:
            others = self._non_minatar_tasks()
            if others:
                raise ValueError(f"--env.no-difficulty-ramping applies to MinAtar games only, but the tasks "
                                 f"include {others[0]!r}")
        if self.compile:
            others = self._non_minatar_tasks()
            if others:
                raise ValueError(f"--env.compile compiles MinAtar games only, but the tasks include {others[0]!r}")
        if not self.task_ids():
            raise ValueError("no tasks: give --env.tasks ID ... or --env.games NAME ...")


@dataclass
class ReplayConfig:
    """The replay buffer (storage on the training device)."""

    kind: Literal["uniform", "prioritized"] = "uniform"
    """Sampler: uniform, or prioritized (sum tree); also settable as --replay KIND."""
    capacity: int = 100_000
    """Transitions kept (all envs together); Atari frames are stored once each."""
    alpha: float = 0.6
    """Prioritized: priority exponent."""
    beta0: float = 0.4
    """Prioritized: initial importance-sampling exponent, annealed to 1 over the run."""


@dataclass
class MonitorConfig:
    """Plasticity metrics logged under plasticity/* (dormant units, rank, norms)."""

    every: int = 2_000
    """Gradient steps between measurements (0 disables the monitor)."""
    batch_size: int = 256
    """Replay transitions the metrics are computed on."""
    tau: float = 0.025
    """Dormancy threshold of a neuron's normalised score (ReDo)."""
    histogram_every: int = 10
    """Write per-layer neuron-score histograms every this many measurements (0: never)."""


@dataclass
class EvalConfig:
    """Greedy evaluation of every task at the end of each visit (eval/<task>/return, results.json)."""

    episodes: int = 0
    """Episodes per task at each evaluation, run at once in separate envs (0 disables evaluation)."""
    every: int = 0
    """Also evaluate every task every this many environment steps (0: only at visit ends)."""
    epsilon: float = 0.0
    """ε of the evaluation policy (DQN)."""
    random_episodes: int = 0
    """Episodes of a uniformly random policy per task, for the summary's baseline column."""
    max_steps: int = 27_000
    """Cap on the steps of one evaluation episode."""


@dataclass
class TrainConfig:
    """Train an agent on a non-stationary cycle of tasks, with plasticity interventions and metrics."""

    preset: str = "quickstart"
    """Named starting configuration; other options override it (see the list above)."""
    agent: Literal["dqn", "sac"] = "dqn"
    """The learner (agents/registry.py): dqn (discrete actions) or sac (continuous actions); its options are --<agent>.*."""
    seed: int = 1
    """One seed for the environments, the networks, exploration and replay sampling."""
    device: str = "auto"
    """auto (cuda when present, else cpu), cpu or cuda[:N]."""
    threads: int = 0
    """CPU threads for PyTorch (0: leave PyTorch's default)."""
    run_dir: str | None = None
    """Where TensorBoard events, config.json and checkpoints go (default runs/<run-name>)."""
    run_name: str | None = None
    """Name of the run directory under runs/ (default <preset>__<agent>__s<seed>__<time>)."""
    resume: str | None = None
    """Continue the run stored in this directory (its saved configuration is used)."""
    checkpoint_every: int = 100_000
    """Environment steps between checkpoints (one is always written at the end; 0: only at the end)."""
    log_every: int = 1_000
    """Environment steps between losses/* and charts/SPS scalars."""
    progress: bool = True
    """Show a progress bar."""
    plasticity: tuple[str, ...] = ()
    """Interventions in order, e.g. swr:lam=1e-3 redo:tau=0.1,every=1000 (see --plasticity-help)."""
    task_boundaries: bool = True
    """Tell the agent and its interventions when the task changes (on_task_switch)."""
    env: EnvConfig = field(default_factory=EnvConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    dqn: DQNConfig = field(default_factory=DQNConfig)
    sac: SACConfig = field(default_factory=SACConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def agent_config(self, **overrides):
        """The selected agent's config (the field named like the agent), with `overrides` applied."""
        return dataclasses.replace(getattr(self, self.agent), **overrides)

    def validate(self) -> None:
        self.env.validate()
        self.agent_config().validate()
        batch = self.agent_config().batch_size
        if self.replay.capacity < batch:
            raise ValueError(f"--replay.capacity ({self.replay.capacity}) must be at least the batch size ({batch})")
        if self.checkpoint_every < 0:
            raise ValueError(f"--checkpoint-every must be >= 0, got {self.checkpoint_every}")
        if self.log_every <= 0:
            raise ValueError(f"--log-every must be > 0, got {self.log_every}")
        if self.monitor.every < 0:
            raise ValueError(f"--monitor.every must be >= 0, got {self.monitor.every}")
        if self.eval.episodes < 0 or self.eval.every < 0:
            raise ValueError(f"--eval.episodes and --eval.every must be >= 0, got {self.eval.episodes} and {self.eval.every}")
