"""A batched MinAtar game with the schedule's conventions, every tensor on the device.

:class:`MinAtarVectorEnv` is what a schedule steps for a ``minatar:<Game>`` task:

- **Observations** are ``uint8`` ``[N, channels, 10, 10]`` with values 0/1, on the game's
  device: the replay keeps one byte per cell (a quarter of float32) and the MinAtar encoder
  casts to float without scaling (``agents.networks.MinAtarCNN``). The game's channels come
  first; channels past the game's own (``channels`` > the game's count) are zero, so games
  with different channel counts share one network.
- **Next-step auto-reset**, as the schedule's Gymnasium vector envs: after ``terminated |
  truncated`` in an env, its next step resets it, ignores its action, returns the new
  episode's first observation with reward 0 and both flags False, and ``valid`` False. On a
  CPU a step where no env resets skips the game's reset (and the draws it would make).
- **Time cap**: ``max_episode_steps`` (None: none, as in MinAtar) truncates an episode after
  that many agent steps.
- **Finished episodes** (raw return, length in agent steps) are kept on the device and
  handed over by :meth:`take_report` as host numbers: one device-to-host copy for all the
  episodes that ended since the last call. ``step`` calls it itself every
  ``report_every`` steps (default: every step on the CPU, where reading costs nothing;
  every 64 steps on an accelerator, so no step waits for the device), and when asked
  (``step(actions, report=True)``: the schedule asks at a visit's end).
- **Transitions** (``VectorStep.transitions``, a host number: how many of the step's env
  steps are transitions, for crediting gradient steps) is ``valid``'s count where reads are
  free. Elsewhere a step counts every env and the auto-reset steps are taken back at the next
  report (they ride in its copy), so the running total is exact at every report and no step
  reads the device.
- **Seeding**: ``reset(seed)`` reseeds the game's torch generator and resets every env.
- ``compile=True`` compiles the game's step, equal to the eager step value for value (see
  ``envs/minatar/base.py``; benchmarks/RESULTS.md says for which games it pays).

:class:`MinAtarGymEnv` is one env of a game as a ``gymnasium.Env`` (numpy observations,
same layout), for single-env evaluation code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import gymnasium
import numpy as np
import torch

from envs.minatar import NUM_ACTIONS, game_class
from envs.minatar.base import GRID

ACCELERATOR_REPORT_EVERY = 64


@dataclass(frozen=True)
class MinAtarOptions:
    """How a schedule builds its MinAtar envs (training and evaluation alike)."""

    sticky_action_prob: float = 0.1
    """Probability that an env repeats its previous action instead of the agent's (MinAtar's default)."""
    difficulty_ramping: bool = True
    """Ramp the difficulty as the reference does (Asterix, Seaquest, SpaceInvaders; MinAtar's default)."""
    max_episode_steps: int | None = None
    """Cap on an episode's agent steps, ending it in truncation (None: no cap, as in MinAtar)."""
    compile: bool = False
    """Compile the training envs' game steps (evaluation envs stay eager: they run few steps)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.sticky_action_prob <= 1.0:
            raise ValueError(f"MinAtar sticky_action_prob={self.sticky_action_prob} must be in [0, 1]")
        if self.max_episode_steps is not None and self.max_episode_steps < 1:
            raise ValueError(f"MinAtar max_episode_steps={self.max_episode_steps} must be >= 1 or None")

    def env_options(self) -> dict[str, Any]:
        """The keyword arguments every env of a schedule gets, training and evaluation alike."""
        return {"sticky_action_prob": self.sticky_action_prob, "difficulty_ramping": self.difficulty_ramping,
                "max_episode_steps": self.max_episode_steps}


class VectorStep(NamedTuple):
    """One step of every env (tensors on the device)."""

    obs: torch.Tensor
    """``[N, channels, 10, 10]`` uint8: the next observation (a new episode's first where valid is False)."""
    rewards: torch.Tensor
    """``[N]`` float32 raw rewards."""
    terminated: torch.Tensor
    """``[N]`` bool."""
    truncated: torch.Tensor
    """``[N]`` bool: the time cap (never set when ``max_episode_steps`` is None)."""
    valid: torch.Tensor
    """``[N]`` bool: False where this step was an auto-reset step."""
    episodes: list[tuple[int, float, int]]
    """``(env, return, length)`` of episodes handed over at this step (see ``report_every``)."""
    transitions: int
    """Transitions among this step's env steps, as a host number (see the module docstring)."""


class Report(NamedTuple):
    """What :meth:`MinAtarVectorEnv.take_report` hands over, in one device-to-host copy."""

    episodes: list[tuple[int, float, int]]
    """``(env, return, length)`` of the episodes ended since the previous report, in the order they ended."""
    resets: int
    """Auto-reset steps since the previous report that the steps counted as transitions (0
    where reads are free: those steps counted exactly)."""


class MinAtarVectorEnv:
    """``num_envs`` copies of one MinAtar game (see the module docstring)."""

    def __init__(self, game: str, num_envs: int, device: str | torch.device = "cpu", *,
                 channels: int | None = None, sticky_action_prob: float = 0.1,
                 difficulty_ramping: bool = True, max_episode_steps: int | None = None,
                 report_every: int | None = None, seed: int = 0, compile: bool = False) -> None:
        self.game = game_class(game)(num_envs, device, sticky_action_prob=sticky_action_prob,
                                     difficulty_ramping=difficulty_ramping, seed=seed, compile=compile)
        self.num_envs = int(num_envs)
        self.device = self.game.device
        self.channels = int(channels or self.game.num_channels)
        if self.channels < self.game.num_channels:
            raise ValueError(f"channels={self.channels} is fewer than {game}'s {self.game.num_channels}")
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ValueError(f"max_episode_steps={max_episode_steps} must be >= 1 or None")
        self.max_episode_steps = max_episode_steps
        self._report_every = report_every
        self.single_observation_shape = (self.channels, GRID, GRID)
        self.num_actions = NUM_ACTIONS
        n, dev = self.num_envs, self.device
        self._ep_ret = torch.zeros(n, dtype=torch.float32, device=dev)
        self._ep_len = torch.zeros(n, dtype=torch.long, device=dev)
        self._done = torch.zeros(n, dtype=torch.bool, device=dev)
        self._no = torch.zeros(n, dtype=torch.bool, device=dev)
        self._pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._since_report = 0
        self._resets = torch.zeros((), dtype=torch.long, device=dev)
        """Auto-reset steps counted as transitions since the last report (where reads are not free)."""

    @property
    def report_every(self) -> int:
        """Steps between two hand-overs of finished episodes: as given, else 1 where reads are
        free and ``ACCELERATOR_REPORT_EVERY`` (64) elsewhere."""
        if self._report_every:
            return self._report_every
        return 1 if self.reads_are_free else ACCELERATOR_REPORT_EVERY

    @report_every.setter
    def report_every(self, value: int | None) -> None:
        self._report_every = value

    @property
    def reads_are_free(self) -> bool:
        """The game's :attr:`~envs.minatar.base.BatchedGame.reads_are_free`: on a CPU a step
        reads whether any env resets or ends, and skips that bookkeeping when none does."""
        return self.game.reads_are_free

    @reads_are_free.setter
    def reads_are_free(self, value: bool) -> None:
        self.game.reads_are_free = bool(value)

    def observation(self) -> torch.Tensor:
        """``[N, channels, 10, 10]`` uint8 of the current state (a fresh tensor)."""
        cells = self.game.observation().view(torch.uint8)  # a game's fresh bool grid, its bytes as 0/1
        if self.channels == self.game.num_channels:
            return cells
        obs = torch.zeros(self.num_envs, self.channels, GRID, GRID, dtype=torch.uint8, device=self.device)
        obs[:, : self.game.num_channels] = cells
        return obs

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Reseed (when ``seed`` is given), start a new episode in every env, return the observation."""
        if seed is not None:
            self.game.random.seed(seed)
        self.game.reset()
        self._ep_ret.zero_()
        self._ep_len.zero_()
        self._done = self._no.clone()
        self._pending.clear()
        self._since_report = 0
        self._resets.zero_()
        return self.observation()

    def step(self, actions: torch.Tensor, report: bool = False) -> VectorStep:
        """Step every env once (see the module docstring); hand the episodes over now when
        ``report``, else every ``report_every`` steps."""
        resetting = self._done
        reward, terminated = self.game.step(actions)
        # on a CPU reading is free: a step where no env resets (or ends) skips that bookkeeping
        host, transitions = self.reads_are_free, self.num_envs
        if not host or bool(resetting.any()):
            self.game.reset(resetting)
            valid = ~resetting
            reward = torch.where(valid, reward, 0.0)
            terminated = terminated & valid
            self._ep_len = self._ep_len + valid.long()
            if host:
                transitions -= int(resetting.sum())
            else:  # taken back at the next report
                self._resets = self._resets + resetting.sum()
        else:
            valid = self.game.all_envs
            self._ep_len = self._ep_len + 1
        self._ep_ret = self._ep_ret + reward
        if self.max_episode_steps is not None:
            truncated = valid & ~terminated & (self._ep_len >= self.max_episode_steps)
            done = terminated | truncated
        else:
            truncated, done = self._no, terminated
        if not host or bool(done.any()):
            self._pending.append((done, self._ep_ret, self._ep_len))
            self._ep_ret = torch.where(done, 0.0, self._ep_ret)
            self._ep_len = torch.where(done, 0, self._ep_len)
        self._done = done
        self._since_report += 1
        episodes: list[tuple[int, float, int]] = []
        if report or self._since_report >= self.report_every:
            episodes, resets = self.take_report()
            transitions -= resets
        return VectorStep(self.observation(), reward, terminated, truncated, valid, episodes, transitions)

    def take_report(self) -> Report:
        """The episodes ended and the auto-reset steps counted as transitions since the last
        call (see :class:`Report`), in one device-to-host copy."""
        self._since_report = 0
        if not self._pending:  # where reads are free only steps where an episode ended are pending
            return Report([], 0)  # (elsewhere every step is: nothing ran since the last report)
        done, rets, lens = (torch.stack(x) for x in zip(*self._pending))
        self._pending.clear()
        steps, envs = torch.nonzero(done, as_tuple=True)
        packed = torch.cat((envs.double(), rets[steps, envs].double(), lens[steps, envs].double(),
                            self._resets.double().view(1)))
        self._resets = torch.zeros_like(self._resets)
        values = packed.cpu()  # the one copy
        rows = values[:-1].view(3, -1).tolist()
        return Report([(int(e), r, int(n)) for e, r, n in zip(*rows)], int(values[-1]))

    def close(self) -> None:
        """Nothing to release (present for the schedule's envs interface)."""


class MinAtarGymEnv(gymnasium.Env):
    """One env of a MinAtar game as a ``gymnasium.Env`` (``uint8`` ``(channels, 10, 10)`` numpy
    observations, 6 actions, no auto-reset; ``reset(seed=...)`` reseeds)."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, game: str, channels: int | None = None, device: str | torch.device = "cpu",
                 sticky_action_prob: float = 0.1, difficulty_ramping: bool = True,
                 max_episode_steps: int | None = None) -> None:
        self._env = MinAtarVectorEnv(game, 1, device, channels=channels, sticky_action_prob=sticky_action_prob,
                                     difficulty_ramping=difficulty_ramping)
        self.observation_space = gymnasium.spaces.Box(0, 1, self._env.single_observation_shape, np.uint8)
        self.action_space = gymnasium.spaces.Discrete(NUM_ACTIONS)
        self.max_episode_steps = max_episode_steps
        self._steps = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._steps = 0
        return self._env.reset(seed)[0].cpu().numpy(), {}

    def step(self, action):
        game = self._env.game
        reward, terminated = game.step(torch.as_tensor([int(action)], device=game.device))
        self._steps += 1
        truncated = self.max_episode_steps is not None and self._steps >= self.max_episode_steps
        obs = self._env.observation()[0].cpu().numpy()
        return obs, float(reward[0]), bool(terminated[0]), bool(truncated and not terminated[0]), {}
