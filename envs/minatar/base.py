"""The batched MinAtar game: N environments in one tensor state on one device.

A game subclasses :class:`BatchedGame` and writes three methods over its tensors, each
acting on every env at once (no Python loop over envs, no host transfer):

- ``_reset(mask)``: put the envs where ``mask`` ([N] bool) is True in a start state
  (the reference's ``Env.reset``), drawing through ``self.random`` with that mask;
- ``_act(actions) -> (reward, terminal)``: one step of every env that is not terminal
  (the reference's ``Env.act`` after the sticky-action rule), drawing with masks that leave
  out terminal envs (the reference's ``act`` returns before drawing there);
- ``observation() -> [N, C, 10, 10] bool``.

It lists its state tensors' attribute names in ``state_names`` (for ``state_dict``); every
one of them has the env dimension first. ``self.terminal`` ([N] bool) is part of every game.

What the base class does, as ``minatar.Environment`` does around a game:

- **Sticky actions.** Each step, for every env, ``u = uniform()``; the action taken is the
  previous action taken when ``u < sticky_action_prob`` (0.1 by default), else the agent's;
  that action becomes the previous one. The draw comes first in the step and happens in every
  env, terminal or not; the previous action starts at 0 (no-op) when the game is built and,
  as in the reference, is *not* cleared by a reset.
- **Terminal envs** step to reward 0, terminal True, and change nothing, until reset.
- **Actions** are MinAtar's six, indexed as the reference's ``action_map``:
  ``ACTIONS = ("n", "l", "u", "r", "d", "f")`` = no-op, left, up, right, down, fire.
- **Difficulty ramping** (``difficulty_ramping=True``, the reference's default) is passed to
  the games that ramp (Asterix, Seaquest, SpaceInvaders); the others ignore it.

Rewards are ``float32``, terminals ``bool``. Reset is explicit: ``step`` never resets
(the wrapper that serves the training schedule decides when, see ``envs.minatar.vector``).

``compile=True`` runs ``_act`` through ``torch.compile`` (Inductor fuses its element-wise
work into a few loops): the state tensors go in as arguments and come back as results, so
the compiled graph holds no state. Draws inside ``_act`` split the graph there (the
generator stays eager), which is why it pays only for a game that draws nothing while
stepping: Breakout (about 3x at N = 4096 on a CPU), not Freeway (slower than eager);
Asterix does not compile (an Inductor C++ error). Compiling ``observation`` too made steps
slower, so it stays eager. Compiling costs seconds to tens of seconds per game and number of
envs the first time (Inductor's on-disk cache shortens later runs); see benchmarks/RESULTS.md.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from envs.minatar.randomness import Randomness, TorchRandomness

ACTIONS = ("n", "l", "u", "r", "d", "f")
"""MinAtar's action set in the reference's order: no-op, left, up, right, down, fire."""
NOOP, LEFT, UP, RIGHT, DOWN, FIRE = range(6)
NUM_ACTIONS = len(ACTIONS)
GRID = 10
"""Observations are ``GRID x GRID`` cells."""


class BatchedGame(ABC):
    """N copies of one MinAtar game in one tensor state (see the module docstring)."""

    name: ClassVar[str]
    """CamelCase game name, e.g. ``"Breakout"``."""
    num_channels: ClassVar[int]
    """Observation channels ``C``."""
    state_names: ClassVar[tuple[str, ...]]
    """Attributes holding the game's state tensors (env dimension first)."""

    def __init__(
        self,
        num_envs: int,
        device: str | torch.device = "cpu",
        *,
        randomness: Randomness | None = None,
        sticky_action_prob: float = 0.1,
        difficulty_ramping: bool = True,
        seed: int = 0,
        compile: bool = False,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs={num_envs} must be >= 1")
        if not 0.0 <= sticky_action_prob <= 1.0:
            raise ValueError(f"sticky_action_prob={sticky_action_prob} must be in [0, 1]")
        self.num_envs = int(num_envs)
        self.device = torch.device(device)
        self.random = randomness if randomness is not None else TorchRandomness(num_envs, device, seed)
        if self.random.num_envs != self.num_envs:
            raise ValueError(f"randomness serves {self.random.num_envs} envs, the game {self.num_envs}")
        self.sticky_action_prob = float(sticky_action_prob)
        self.difficulty_ramping = bool(difficulty_ramping)
        self.all_envs = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        self.env_index = torch.arange(self.num_envs, device=self.device)
        self.last_action = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        self.terminal = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        self._init_state()
        if compile:
            self._act = self._compiled(type(self)._act)  # type: ignore[method-assign]
        self.reset()

    def _compiled(self, method):
        """``method`` of this game through ``torch.compile``, with the state as arguments and results."""
        names = (*self.state_names, "terminal")

        def pure(args, *tensors):
            for name, value in zip(names, tensors):
                setattr(self, name, value)
            out = method(self, *args)
            return out, tuple(getattr(self, name) for name in names)

        compiled = torch.compile(pure, dynamic=False)

        def run(*args):
            out, tensors = compiled(args, *(getattr(self, name) for name in names))
            for name, value in zip(names, tensors):
                setattr(self, name, value)
            return out

        return run

    # ---------------------------------------------------------------- per game
    @abstractmethod
    def _init_state(self) -> None:
        """Allocate every tensor of ``state_names`` (values are set by ``_reset``)."""

    @abstractmethod
    def _reset(self, mask: torch.Tensor) -> None:
        """Start a new episode in the envs where ``mask`` is True; leave the others alone."""

    @abstractmethod
    def _act(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of the non-terminal envs; ``(reward [N] float32, terminal [N] bool)``."""

    @abstractmethod
    def observation(self) -> torch.Tensor:
        """``[N, C, 10, 10]`` bool: channel ``c`` of cell (row ``y``, column ``x``)."""

    def difficulty(self) -> torch.Tensor | None:
        """The difficulty ramp's level per env (``[N]`` long), None for games that do not ramp."""
        return None

    # --------------------------------------------------------------- interface
    def reset(self, mask: torch.Tensor | None = None) -> None:
        """Start new episodes where ``mask`` ([N] bool) is True (all envs when None)."""
        mask = self.all_envs if mask is None else mask.to(device=self.device, dtype=torch.bool)
        self._reset(mask)

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply sticky actions, step every env once; ``(reward float32 [N], terminated bool [N])``."""
        actions = actions.to(device=self.device, dtype=torch.long)
        u = self.random.uniform(self.all_envs)
        actions = torch.where(u < self.sticky_action_prob, self.last_action, actions)
        self.last_action = actions
        return self._act(actions)

    # -------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        """Every state tensor (cloned), the previous actions and the randomness."""
        state = {name: getattr(self, name).clone() for name in self.state_names}
        state["terminal"] = self.terminal.clone()
        state["last_action"] = self.last_action.clone()
        state["random"] = self.random.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (same game, same number of envs)."""
        for name in (*self.state_names, "terminal", "last_action"):
            value = state[name]
            old = getattr(self, name)
            if value.shape != old.shape:
                raise ValueError(f"{self.name} state {name!r} has shape {tuple(value.shape)}, "
                                 f"expected {tuple(old.shape)}")
            setattr(self, name, value.to(device=self.device, dtype=old.dtype).clone())
        self.random.load_state_dict(state["random"])

    # ----------------------------------------------------------------- helpers
    def _cells(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Flat cell index ``row * 10 + col`` (same shapes)."""
        return rows * GRID + cols

    def _empty_observation(self) -> torch.Tensor:
        return torch.zeros(self.num_envs, self.num_channels * GRID * GRID, dtype=torch.bool,
                           device=self.device)
