"""Where a batched MinAtar game gets its random numbers: one source, per env, with a mask.

The reference games (the ``minatar`` package) draw from a ``numpy.random.RandomState`` with
``rand()``, ``rand(k)``, ``randint(high)``, ``randint(low, high)`` and ``randint(low, high, k)``.
A batched game makes the same calls for all its envs at once, through a :class:`Randomness`:

- ``uniform(mask, size=None)``: like ``rand()`` (``[N]``) or ``rand(size)`` (``[N, size]``),
  floats in ``[0, 1)``;
- ``integers(low, high, mask, size=None)``: like ``randint(low, high[, size])``, integers in
  ``[low, high)``; ``low``/``high`` are ints or per-env ``[N]`` integer tensors.

``mask`` (``[N]`` bool) says which envs draw now: an env whose entry is False consumes
nothing from its stream and its returned entries are unspecified (callers must not use them).
A game calls these in the same per-env order as the reference calls its ``RandomState``, so
that :class:`RecordedRandomness`, fed per env with what the reference drew, reproduces the
reference exactly.

Two sources:

- :class:`TorchRandomness`: a ``torch.Generator`` on the game's device; draws for every env
  and ignores the mask (cheaper than a gather), no host transfer, no Python loop over envs.
  Floats are ``float32``.
- :class:`StepDraws`: what a game's step draws from when its source is a
  :class:`TorchRandomness`: the base class draws one ``[N, K]`` block of ``float64`` uniforms
  per step (``K`` = the game's ``draws_per_step``) and the step reads its draws from the block's
  columns in order, so the step is a pure function of its state, its actions and the block
  (``torch.compile`` traces it as one graph, and compiled and eager steps agree exactly).
- :class:`RecordedRandomness`: per-env queues of the reference's draws (see
  :class:`RandomStateRecorder`, which wraps a ``RandomState`` and appends every call and its
  result to a queue); pops them per env in order and checks that each pop asks for the
  call the reference made (same method, bounds and size), so a game that draws in another
  order fails loudly instead of silently drifting. Floats are ``float64`` (the reference's).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

Bound = int | torch.Tensor


def integers_from_uniform(u: torch.Tensor, low: Bound, high: Bound) -> torch.Tensor:
    """``low + floor(u * (high - low))`` for uniforms ``u`` (``[N]`` or ``[N, k]``, ``float64``);
    ``low``/``high`` are ints or per-env ``[N]`` tensors."""
    if isinstance(low, int) and low == 0:  # the common case, in two operations
        span = high.unsqueeze(-1) if isinstance(high, torch.Tensor) and u.dim() == 2 else high
        return (u * span).long()
    low_t = torch.as_tensor(low, device=u.device)
    span = torch.as_tensor(high, device=u.device) - low_t
    if u.dim() == 2:
        low_t = low_t.unsqueeze(-1) if low_t.dim() else low_t
        span = span.unsqueeze(-1) if span.dim() else span
    return low_t + (u * span).long()


class Randomness(ABC):
    """A source of per-env random numbers for ``num_envs`` envs on ``device``."""

    replays_reference = False
    """True for a source that replays the reference's draws: a game must then make the
    reference's calls (same method, bounds, size, order); other sources let a game draw the
    same distribution in fewer calls."""

    def __init__(self, num_envs: int, device: str | torch.device) -> None:
        self.num_envs = int(num_envs)
        self.device = torch.device(device)

    @abstractmethod
    def uniform(self, mask: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """``[N]`` (or ``[N, size]``) floats in ``[0, 1)``, like ``RandomState.rand``."""

    @abstractmethod
    def integers(self, low: Bound, high: Bound, mask: torch.Tensor,
                 size: int | None = None) -> torch.Tensor:
        """``[N]`` (or ``[N, size]``) int64 in ``[low, high)``, like ``RandomState.randint``."""

    def seed(self, seed: int) -> None:
        """Restart the source from ``seed`` (a no-op for sources that cannot be seeded)."""

    def state_dict(self) -> dict[str, Any]:
        """What restores the source (empty when it cannot be saved)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class TorchRandomness(Randomness):
    """Draws from a ``torch.Generator`` on the device, for every env, ignoring the mask.

    ``integers(low, high)`` is ``low + floor(u * (high - low))`` with ``u`` uniform in
    ``float64`` (bias below 1e-15 for the ranges MinAtar uses), so per-env tensor bounds
    cost one fused expression.
    """

    def __init__(self, num_envs: int, device: str | torch.device = "cpu", seed: int = 0) -> None:
        super().__init__(num_envs, device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(seed))

    def seed(self, seed: int) -> None:
        self.generator.manual_seed(int(seed))

    def _shape(self, size: int | None) -> tuple[int, ...]:
        return (self.num_envs,) if size is None else (self.num_envs, size)

    def uniform(self, mask: torch.Tensor, size: int | None = None) -> torch.Tensor:
        return torch.rand(self._shape(size), generator=self.generator, device=self.device)

    def integers(self, low: Bound, high: Bound, mask: torch.Tensor,
                 size: int | None = None) -> torch.Tensor:
        if isinstance(low, int) and isinstance(high, int):
            return torch.randint(low, high, self._shape(size), generator=self.generator,
                                 device=self.device)
        u = torch.rand(self._shape(size), generator=self.generator, device=self.device,
                       dtype=torch.float64)
        return integers_from_uniform(u, low, high)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


class StepDraws:
    """Serves one step's draws from the columns of a pre-drawn ``[N, K]`` block of uniforms.

    ``uniform(mask)`` is the next column, ``uniform(mask, k)`` the next ``k``;
    ``integers(low, high, mask[, k])`` is ``low + floor(u * (high - low))`` of the next column(s),
    as :class:`TorchRandomness` maps floats to integers. Every env reads every column (the mask
    is ignored, as :class:`TorchRandomness` ignores it). Asking for more columns than the block
    has raises ``IndexError``: a game's ``draws_per_step`` must count every draw of its step.
    """

    replays_reference = False

    def __init__(self, block: torch.Tensor) -> None:
        self.block = block
        self.used = 0

    def _take(self, size: int | None) -> torch.Tensor:
        width = 1 if size is None else size
        if self.used + width > self.block.shape[1]:
            raise IndexError(f"the step drew more than the {self.block.shape[1]} columns of its block")
        cols = self.block[:, self.used:self.used + width]
        self.used += width
        return cols[:, 0] if size is None else cols

    def uniform(self, mask: torch.Tensor, size: int | None = None) -> torch.Tensor:
        return self._take(size)

    def integers(self, low: Bound, high: Bound, mask: torch.Tensor,
                 size: int | None = None) -> torch.Tensor:
        return integers_from_uniform(self._take(size), low, high)


@dataclass(frozen=True)
class Draw:
    """One call the reference made on its ``RandomState`` and what it returned."""

    method: str
    """``"rand"`` or ``"randint"``."""
    low: int
    high: int
    """``randint``'s bounds (0, 0 for ``rand``)."""
    size: int | None
    """None for a scalar draw, else the length of the returned vector."""
    value: Any
    """The returned float/int, or 1-D array."""

    def describe(self) -> str:
        size = "" if self.size is None else f", size={self.size}"
        if self.method == "rand":
            return f"rand({'' if self.size is None else self.size})"
        return f"randint({self.low}, {self.high}{size})"


class RandomStateRecorder:
    """Stands in for a ``numpy.random.RandomState``: delegates and logs each call to ``sink``.

    Covers the calls the reference games make: ``rand()``, ``rand(k)``, ``randint(high)``,
    ``randint(low, high)``, ``randint(low, high, size)`` (keywords too).
    """

    def __init__(self, random_state: np.random.RandomState, sink: deque) -> None:
        self._rs = random_state
        self.sink = sink

    def rand(self, *size: int):
        value = self._rs.rand(*size)
        if len(size) > 1:
            raise NotImplementedError("RandomStateRecorder records 0-d or 1-d rand() only")
        self.sink.append(Draw("rand", 0, 0, size[0] if size else None, np.copy(value)))
        return value

    def randint(self, low, high=None, size=None, dtype=int):
        value = self._rs.randint(low, high, size, dtype)
        lo, hi = (0, low) if high is None else (low, high)
        if size is not None and not isinstance(size, (int, np.integer)):
            (size,) = tuple(size)
        # a copy: the reference may change the returned array in place (Freeway does)
        self.sink.append(Draw("randint", int(lo), int(hi), None if size is None else int(size),
                              np.copy(value)))
        return value


class RecordedRandomness(Randomness):
    """Replays, per env, the draws a reference env made (``streams[i]`` is env ``i``'s queue).

    The queues may grow while a game consumes them (the reference and the game can run in
    lockstep). A pop that asks for another call than the one recorded raises
    ``AssertionError`` naming the env, the call asked for and the call recorded.
    """

    replays_reference = True

    def __init__(self, num_envs: int, device: str | torch.device = "cpu") -> None:
        super().__init__(num_envs, device)
        self.streams: list[deque] = [deque() for _ in range(self.num_envs)]
        self.popped = 0
        """Draws consumed so far (all envs)."""

    def recorder(self, env: int, random_state: np.random.RandomState) -> RandomStateRecorder:
        """A ``RandomState`` stand-in whose draws feed env ``env``'s queue."""
        return RandomStateRecorder(random_state, self.streams[env])

    def _pop(self, env: int, method: str, low: int, high: int, size: int | None) -> Draw:
        stream = self.streams[env]
        asked = Draw(method, low, high, size, None).describe()
        if not stream:
            raise AssertionError(f"env {env}: the game asked for {asked} but the reference drew nothing more")
        draw = stream.popleft()
        if (draw.method, draw.size) != (method, size) or (
            method == "randint" and (draw.low, draw.high) != (low, high)
        ):
            raise AssertionError(
                f"env {env} draw {self.popped}: the game asked for {asked} "
                f"but the reference drew {draw.describe()}"
            )
        self.popped += 1
        return draw

    def _envs(self, mask: torch.Tensor) -> list[int]:
        return torch.nonzero(mask.cpu(), as_tuple=False).flatten().tolist()

    def uniform(self, mask: torch.Tensor, size: int | None = None) -> torch.Tensor:
        shape = (self.num_envs,) if size is None else (self.num_envs, size)
        out = np.zeros(shape, dtype=np.float64)
        for i in self._envs(mask):
            out[i] = self._pop(i, "rand", 0, 0, size).value
        return torch.from_numpy(out).to(self.device)

    def integers(self, low: Bound, high: Bound, mask: torch.Tensor,
                 size: int | None = None) -> torch.Tensor:
        shape = (self.num_envs,) if size is None else (self.num_envs, size)
        lows = np.broadcast_to(torch.as_tensor(low).cpu().numpy(), (self.num_envs,))
        highs = np.broadcast_to(torch.as_tensor(high).cpu().numpy(), (self.num_envs,))
        out = np.zeros(shape, dtype=np.int64)
        for i in self._envs(mask):
            out[i] = self._pop(i, "randint", int(lows[i]), int(highs[i]), size).value
        return torch.from_numpy(out).to(self.device)

    def remaining(self) -> int:
        """Recorded draws not consumed yet (all envs)."""
        return sum(len(s) for s in self.streams)
