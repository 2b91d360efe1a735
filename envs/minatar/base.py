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

**Draws inside a step.** A game counts the uniforms its ``_act`` draws in ``draws_per_step``
(a ``size=k`` draw counts ``k``). With a :class:`TorchRandomness` source (the default), each
step draws one ``[N, draws_per_step]`` block of ``float64`` uniforms from it and ``_act`` reads
its draws from the block (:class:`envs.minatar.randomness.StepDraws`), so a step is a pure
function of its state, its actions and the block. With a :class:`RecordedRandomness` (the
tests against the reference) ``_act`` draws from it directly, in the reference's order.

``compile=True`` runs the step through ``torch.compile`` (Inductor fuses its element-wise work
into a few loops): the state tensors and the block go in as arguments and the new state comes
back as results, so the compiled graph holds no state and, with the block, has no break; its
steps equal the eager ones exactly (tests compare them). With a :class:`RecordedRandomness`
the compiled step breaks at each draw. The observation stays eager (compiling it too made
steps slower). Compiling costs seconds to tens of seconds per game and number of envs the
first time (Inductor's on-disk cache shortens later runs); benchmarks/RESULTS.md says what
it gains per game.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from envs.minatar.randomness import Randomness, StepDraws, TorchRandomness

ACTIONS = ("n", "l", "u", "r", "d", "f")
"""MinAtar's action set in the reference's order: no-op, left, up, right, down, fire."""
NOOP, LEFT, UP, RIGHT, DOWN, FIRE = range(6)
NUM_ACTIONS = len(ACTIONS)
GRID = 10
"""Observations are ``GRID x GRID`` cells."""


def pick(mask: torch.Tensor, a: torch.Tensor | int, b: torch.Tensor | int) -> torch.Tensor:
    """``torch.where(mask, a, b)`` for integers, as ``b + mask * (a - b)`` (``mask`` bool or 0/1):
    three element-wise ops that run several times faster on the CPU than ``where`` on the
    games' integer slot and row tensors."""
    return b + mask * (a - b)


class BatchedGame(ABC):
    """N copies of one MinAtar game in one tensor state (see the module docstring)."""

    name: ClassVar[str]
    """CamelCase game name, e.g. ``"Breakout"``."""
    num_channels: ClassVar[int]
    """Observation channels ``C``."""
    state_names: ClassVar[tuple[str, ...]]
    """Attributes holding the game's state tensors (env dimension first)."""
    views: ClassVar[tuple[str, ...]] = ()
    """Properties decoding a packed state into the reference's fields (env dimension first):
    :meth:`state_dict` adds them, :meth:`load_state_dict` ignores them."""
    draws_per_step: ClassVar[int] = 0
    """Uniforms one ``_act`` draws (a draw of ``size=k`` counts ``k``); 0 for a game that draws none."""

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
        self.reads_are_free = self.device.type == "cpu"
        """True on a CPU, where reading a tensor's value on the host costs nothing, so a step
        may branch on values (skip an empty reset, work only on the slots in use); False on an
        accelerator, where no step or reset reads a value on the host and nothing waits for the
        device. Both paths give the same states (tests set it False on a CPU to run the other)."""
        # where each env's [C, 10, 10] observation starts in the flat batch (see `_paint`)
        self._env_cells = (self.env_index * (self.num_channels * GRID * GRID)).unsqueeze(1)
        self._init_state()
        self._block_draws = isinstance(self.random, TorchRandomness) and self.draws_per_step > 0
        advance = type(self)._act_with_block if self._block_draws else type(self)._act
        self.compiled = bool(compile)
        """Whether the step runs through ``torch.compile``."""
        self._advance = self._compiled(advance) if compile else advance.__get__(self)
        self.reset()

    def _act_with_block(self, actions: torch.Tensor, block: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``_act`` with its draws read from ``block`` (``[N, draws_per_step]`` uniforms)."""
        source = self.random
        self.random = StepDraws(block)  # type: ignore[assignment]
        try:
            return self._act(actions)
        finally:
            self.random = source

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
        """Start new episodes where ``mask`` ([N] bool) is True (all envs when None). Where reads
        are free (:attr:`reads_are_free`), a mask without True returns at once (no draw either);
        elsewhere the masked reset runs, so that nothing waits for the device."""
        mask = self.all_envs if mask is None else mask.to(device=self.device, dtype=torch.bool)
        if self.reads_are_free and not bool(mask.any()):
            return
        self._reset(mask)

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply sticky actions, step every env once; ``(reward float32 [N], terminated bool [N])``."""
        actions = actions.to(device=self.device, dtype=torch.long)
        u = self.random.uniform(self.all_envs)
        actions = pick(u < self.sticky_action_prob, self.last_action, actions)
        self.last_action = actions
        if self._block_draws:
            block = torch.rand(self.num_envs, self.draws_per_step, dtype=torch.float64,
                               generator=self.random.generator, device=self.device)
            return self._advance(actions, block)
        return self._advance(actions)

    # -------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        """Every state tensor (cloned), the decoded :attr:`views`, the previous actions and the
        randomness."""
        state = {name: getattr(self, name).clone() for name in (*self.state_names, *self.views)}
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

    def set_env(self, i: int, name: str, value: Any) -> None:
        """Set state field ``name`` of env ``i`` to a reference game's value (an int, or an
        array for a map); a game whose fields store a value in another layout converts it.
        An unknown field is refused in one line."""
        fields = (*self.state_names, "terminal")
        if name not in fields:
            raise ValueError(f"{self.name} has no field {name!r}; fields: {', '.join(fields)}")
        ours = getattr(self, name)
        value = torch.as_tensor(value)
        ours[i] = value != 0 if ours.dtype == torch.bool else value

    def set_env_fields(self, i: int, fields: dict[str, Any]) -> None:
        """Set several reference fields of env ``i`` (``{name: value}``), as :meth:`set_env`
        one by one; a game that keeps some fields as one joint state sets those together."""
        for name, value in fields.items():
            self.set_env(i, name, value)

    # ----------------------------------------------------------------- helpers
    def _paint(self, cells: torch.Tensor, obs: torch.Tensor | None = None,
               env_last: bool = False) -> torch.Tensor:
        """The ``[N, C, 10, 10]`` observation with ``cells`` set: ``[N, K]`` (``[K, N]`` with
        ``env_last``) indices ``channel * 100 + row * 10 + col`` into each env's own grids, set
        by one ``index_fill_`` into ``obs`` (``[N, C * 100]`` bool, holding what the game wrote
        before) or into zeros. A game points an object that shows nowhere at a cell that is set
        anyway."""
        n = self.num_envs
        if obs is None:
            obs = self._zeros()
        offsets = self._env_cells.view(1, -1) if env_last else self._env_cells
        obs.view(-1).index_fill_(0, (cells + offsets).reshape(-1), True)
        return obs.view(n, self.num_channels, GRID, GRID)

    def _zeros(self) -> torch.Tensor:
        """A new ``[N, C * 100]`` bool observation of zeros, allocated and cleared as bytes
        (``uint8``; clearing a ``bool`` tensor directly is slower on the CPU)."""
        size = self.num_channels * GRID * GRID
        return torch.zeros(self.num_envs, size, dtype=torch.uint8, device=self.device).view(torch.bool)
