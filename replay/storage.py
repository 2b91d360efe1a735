"""Frame storage: every observation frame is stored once, in one ring per environment.

Layout (``N`` envs, ``S`` slots per env, ``F`` = frame_stack). Slots are interleaved
slot-major: slot ``s`` of env ``e`` is row ``s * N + e`` (the "start" samplers see, see
``replay/sampler.py``), so the slots written so far are a prefix of every per-slot tensor.
Past the allocated rows there is one scratch row that masked-out writes go to, so no write
needs a host decision.

* ``frames`` (rows, *frame_shape): for stacked Atari observations (F > 1) a slot holds one
  84x84 frame, the newest of a stack; for anything else (F = 1) a slot holds a whole
  observation. A stacked observation "at slot s" is rebuilt from slots s-F+1 .. s.
* per-slot metadata of the transition that *starts* at a slot: ``actions``, ``rewards``
  (float32, already clipped if ``reward_clip``), ``flags`` (uint8: 1 terminated,
  2 truncated), ``tasks`` (uint8), and ``start_valid`` (the transition may be sampled now).

Memory grows with what is stored, on every device: the tensors hold ``A <= S`` slots per
env (``A`` starts at ``min(S, 1024)``) and are reallocated to ``min(S, 2A)`` slots, the
written prefix copied, whenever the fullest env comes within ``2F + n + 1`` slots of ``A``
(the reads and writes of one add and one gather stay below that). The new frame rows are
``torch.empty``: on the CPU the kernel backs a page only once it is written, so the
resident size follows the written prefix; on CUDA ``empty`` reserves the memory, so the
device holds between one and two times the written prefix, and a growth step briefly holds
the old and the new tensors (1.5x the new size at most). ``reserve(slots)`` allocates ahead
(for instance to fail early when the device cannot hold the whole capacity).

Stream of one env. The first add of an episode writes the whole initial stack ``obs[0..F-1]``
into F consecutive slots: the first F-1 are padding (never a transition start), so the
stack is rebuilt exactly as the env built it (the ALE vector env stacks zeros at reset).
Every add then writes only the newest frame of ``next_obs`` into the next slot and the
transition's metadata into the slot of ``obs``. A final observation gets its own slot (it
is the ``next_obs`` of the last transition) but starts nothing. After ``terminated |
truncated`` the stream is closed and the next valid add opens a new episode; an add with
``valid=False`` (the auto-reset step of a Gymnasium next-step-autoreset vector env) stores
nothing. For a continuing episode ``obs`` is not read: it is the previous ``next_obs``.

A start ``a`` is made sampleable once its n-step window ``a .. a+n-1`` is written or its
episode ended inside the window, and stops being sampleable as soon as one of the slots
its stacks read (``a-F+1 .. a+m``) is overwritten by the ring. Because writing proceeds
forward, overwriting slot ``j`` only ever breaks the stacks of the old starts ``j .. j+F-1``.

A change of ``task`` between two adds ends every open episode as a truncation (bootstrap),
so no transition spans two tasks even if the caller did not flag the switch. Environments
reset by the caller outside auto-reset must be flagged ``truncated`` on their last step.

Capacity counts slots: each episode also uses F slots that are not transitions (F-1
padding + the final observation), which is < 1% of the buffer for Atari-length episodes.

Two ways to write, the same result: on an accelerator ``add`` is a fixed sequence of
vectorised tensor ops with no host decision (no sync, except a check whether to grow that
runs once in ``A / (4 (F + 1))`` adds or less often); on the CPU, where reading a value
costs nothing, it walks the envs in Python over NumPy views of the same tensors
(``replay/host_add.py``: a few scalar writes per env instead of ~60 tensor ops).
``host_path`` picks one (default: by device).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from replay.host_add import add_on_host
from replay.n_step import TERMINATED, TRUNCATED, n_step_window


@dataclass
class Gathered:
    """Rebuilt transitions for a set of flat start indices."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    discounts: torch.Tensor
    tasks: torch.Tensor



class FrameStorage:
    """Per-env frame rings with transition metadata; see the module docstring."""

    #: write with the per-env host loop (None: on the CPU only)
    host_path_default: bool | None = None
    #: slots per env allocated at construction (fewer if the capacity is smaller)
    initial_slots: int = 1024

    def __init__(
        self,
        capacity: int,
        num_envs: int,
        obs_shape: tuple[int, ...],
        obs_dtype: torch.dtype,
        frame_stack: int,
        action_shape: tuple[int, ...] = (),
        action_dtype: torch.dtype = torch.long,
        n_step: int = 1,
        gamma: float = 0.99,
        reward_clip: float | None = None,
        device: torch.device | str = "cpu",
    ):
        obs_shape = tuple(int(d) for d in obs_shape)
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if frame_stack < 1:
            raise ValueError(f"frame_stack must be >= 1, got {frame_stack}")
        if n_step < 1:
            raise ValueError(f"n_step must be >= 1, got {n_step}")
        if frame_stack > 1 and (len(obs_shape) < 2 or obs_shape[0] != frame_stack):
            raise ValueError(
                f"frame_stack={frame_stack} needs obs_shape=(frame_stack, *frame_shape), got obs_shape={obs_shape}"
            )
        slots = math.ceil(capacity / num_envs)
        # Enough slots that an env always keeps one sampleable start once it had one.
        min_slots = 2 * frame_stack + n_step + 1
        if capacity < 1 or slots < min_slots:
            raise ValueError(
                f"capacity={capacity} is too small: with num_envs={num_envs}, frame_stack={frame_stack}, "
                f"n_step={n_step} it must be >= {min_slots * num_envs} ({min_slots} slots per env)"
            )
        self.device = dev = torch.device(device)
        self.num_envs, self.slots, self.frame_stack, self.n_step = num_envs, slots, frame_stack, n_step
        self.num_starts = num_envs * slots
        self.obs_shape = obs_shape
        self.frame_shape = obs_shape[1:] if frame_stack > 1 else obs_shape
        self.obs_dtype, self.action_shape, self.action_dtype = obs_dtype, tuple(action_shape), action_dtype
        self.gamma = float(gamma)
        self.reward_clip = reward_clip
        # Slots an add or a gather may touch past the fullest env's next slot.
        self._margin = 2 * frame_stack + n_step + 1
        self.allocated_slots = 0
        self._allocate(min(slots, max(self.initial_slots, 2 * self._margin)))
        # Stream state per env, in absolute slot counts (ring slot = absolute % slots).
        self.next_slot = torch.zeros(num_envs, dtype=torch.long, device=dev)
        self.episode_open = torch.zeros(num_envs, dtype=torch.bool, device=dev)
        self.episode_first = torch.zeros(num_envs, dtype=torch.long, device=dev)
        # A start that is certainly sampleable (the newest made so), or -1 while none is.
        self._latest_start = torch.full((), -1, dtype=torch.long, device=dev)
        self.current_task: int | None = None
        self._next_slot_bound = 0  # host upper bound of next_slot.max()
        # Constants of the hot paths, built once.
        self._env_ids = torch.arange(num_envs, device=dev)
        self._stack_offsets = torch.arange(frame_stack, device=dev)
        self._stack_back = self._stack_offsets - (frame_stack - 1)
        self._overwrite_reach = torch.arange(2 * frame_stack, device=dev)
        self._window = torch.arange(n_step, device=dev)
        self._last_in_window = self._window == n_step - 1
        default = self.host_path_default
        self.host_path = dev.type == "cpu" if default is None else default
        self.host_views: tuple | None = None  # NumPy views for add_on_host, rebuilt when a tensor is replaced

    # ------------------------------------------------------------------ memory
    @property
    def scratch(self) -> int:
        """Row that masked-out writes go to (past the allocated slots)."""
        return self.allocated_slots * self.num_envs

    def _allocate(self, slots: int) -> None:
        """(Re)allocate every per-slot tensor for ``slots`` slots per env, keeping the written prefix."""
        dev, rows, keep = self.device, slots * self.num_envs + 1, self.scratch
        fresh = {  # frames are only read where written; the metadata past the prefix must be 0
            "frames": lambda: torch.empty(rows, *self.frame_shape, dtype=self.obs_dtype, device=dev),
            "actions": lambda: torch.zeros(rows, *self.action_shape, dtype=self.action_dtype, device=dev),
            "rewards": lambda: torch.zeros(rows, dtype=torch.float32, device=dev),
            "flags": lambda: torch.zeros(rows, dtype=torch.uint8, device=dev),
            "tasks": lambda: torch.zeros(rows, dtype=torch.uint8, device=dev),
            "start_valid": lambda: torch.zeros(rows, dtype=torch.bool, device=dev),
        }
        for name, make in fresh.items():  # one tensor at a time: the old one is freed before the next
            tensor = make()
            if keep:
                tensor[:keep] = getattr(self, name)[:keep]
            setattr(self, name, tensor)
        self.allocated_slots = slots

    def reserve(self, slots: int) -> None:
        """Allocate at least ``min(slots, self.slots)`` slots per env now."""
        slots = min(int(slots), self.slots)
        if slots > self.allocated_slots:
            self._allocate(slots)

    def _ensure_room(self) -> None:
        """Grow before an add could touch a slot past the allocated ones (see the module docstring)."""
        if self.allocated_slots == self.slots or self._next_slot_bound + self._margin <= self.allocated_slots:
            return
        self._next_slot_bound = int(self.next_slot.max())  # the only host read of the vectorised path
        if self._next_slot_bound + self._margin > self.allocated_slots * 3 // 4:
            self.reserve(max(2 * self.allocated_slots, self._next_slot_bound + 2 * self._margin))

    # ------------------------------------------------------------------ what samplers read
    def written_starts(self) -> torch.Tensor:
        """0-d long: starts at or past this were never written (>= 1)."""
        return self.next_slot.max().clamp(min=1, max=self.slots) * self.num_envs

    def is_sampleable(self, starts: torch.Tensor) -> torch.Tensor:
        return self.start_valid[starts.clamp(max=self.scratch)]

    def latest_start(self) -> torch.Tensor:
        return self._latest_start

    # ------------------------------------------------------------------ writing
    def _rows(self, absolute: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Rows of the (N, ...) absolute slots of each env, the scratch row where not ``mask``."""
        env = self._env_ids.view(-1, *([1] * (absolute.dim() - 1)))
        return torch.where(mask, absolute % self.slots * self.num_envs + env, self.scratch)

    def _mark(self, rows: torch.Tensor, valid: bool) -> torch.Tensor:
        """Set ``start_valid`` of ``rows`` (scratch rows ignored); returns the rows touched."""
        rows = rows.reshape(-1)
        self.start_valid.index_fill_(0, rows, valid)
        if valid:
            self.start_valid[self.scratch] = False
            newest = rows.masked_fill(rows == self.scratch, -1).max()
            self._latest_start = torch.where(newest >= 0, newest, self._latest_start)
        return rows

    def _validate_window(self, last: torch.Tensor, ends: torch.Tensor, complete: torch.Tensor) -> torch.Tensor:
        """Make sampleable the starts ``last - k`` (k < n) of the current episodes whose
        window is now fixed: k = n-1 where ``complete`` (n steps written), every other k
        where ``ends`` (k = n-1 without ``complete`` was fixed earlier)."""
        starts = last[:, None] - self._window
        fixed = (self._last_in_window & complete[:, None]) | (~self._last_in_window & ends[:, None])
        return self._mark(self._rows(starts, fixed & (starts >= self.episode_first[:, None])), True)

    def end_open_episodes(self) -> list[torch.Tensor]:
        """Close every open stream as if its last stored transition had been truncated."""
        open_ = self.episode_open
        last = self.next_slot - 2  # slot of the last transition; its next obs is at next_slot - 1
        rows = self._rows(last, open_)
        self.flags.index_copy_(0, rows, self.flags[rows] | TRUNCATED)
        touched = self._validate_window(last, open_, torch.zeros_like(open_))
        self.episode_open = torch.zeros_like(open_)
        return [touched]

    def add(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        next_obs: torch.Tensor,
        terminated: torch.Tensor,
        truncated: torch.Tensor,
        valid: torch.Tensor,
        task: int,
    ) -> list[torch.Tensor]:
        """Store one vector step; returns the starts whose ``start_valid`` may have changed
        (the scratch row stands for "none")."""
        if not 0 <= int(task) <= 255:
            raise ValueError(f"task must be in [0, 255] (stored as uint8), got {task}")
        self._ensure_room()
        self._next_slot_bound += self.frame_stack + 1  # an add moves an env by at most F + 1 slots
        touched: list[torch.Tensor] = []
        if self.current_task is not None and int(task) != self.current_task:
            touched += self.end_open_episodes()
        self.current_task = int(task)

        if self.host_path and self.device.type == "cpu":
            touched.append(add_on_host(self, obs, actions, rewards, next_obs, terminated, truncated, valid, int(task)))
            return touched
        dev, n_envs, stack = self.device, self.num_envs, self.frame_stack
        valid = torch.as_tensor(valid, device=dev).reshape(n_envs).bool()
        terminated = torch.as_tensor(terminated, device=dev).reshape(n_envs).bool()
        truncated = torch.as_tensor(truncated, device=dev).reshape(n_envs).bool()
        ends = (terminated | truncated) & valid
        rewards = torch.as_tensor(rewards, device=dev).reshape(n_envs).float()
        if self.reward_clip is not None:
            rewards = rewards.clamp(-self.reward_clip, self.reward_clip)

        # A valid step on a closed stream opens an episode: write its whole initial stack.
        new_episode = valid & ~self.episode_open
        pos = self.next_slot
        stack_rows = self._rows(pos[:, None] + self._stack_offsets, new_episode[:, None])
        obs = torch.as_tensor(obs, device=dev).reshape(n_envs * stack, *self.frame_shape)
        self.frames.index_copy_(0, stack_rows.reshape(-1), obs.to(self.frames.dtype))
        current = pos - 1 + new_episode.long() * stack  # slot of obs (its newest frame)
        newest = torch.as_tensor(next_obs, device=dev).reshape(n_envs, stack, *self.frame_shape)[:, -1]
        self.frames.index_copy_(0, self._rows(current + 1, valid), newest.to(self.frames.dtype))
        rows = self._rows(current, valid)
        actions = torch.as_tensor(actions, device=dev).reshape(n_envs, *self.actions.shape[1:])
        self.actions.index_copy_(0, rows, actions.to(self.actions.dtype))
        self.rewards.index_copy_(0, rows, rewards)
        self.flags.index_copy_(0, rows, terminated.to(torch.uint8) * TERMINATED + truncated.to(torch.uint8) * TRUNCATED)
        self.tasks.index_fill_(0, rows, int(task))
        new_pos = torch.where(valid, current + 2, pos)

        # Slots pos .. new_pos-1 were overwritten: old starts there and up to F-1 slots later
        # read them in their stacks.
        reach, written = self._overwrite_reach, (new_pos - pos)[:, None]
        overwritten = (reach < written + stack - 1) & (written > 0)
        touched.append(self._mark(self._rows(pos[:, None] + reach, overwritten), False))

        self.episode_first = torch.where(new_episode, current, self.episode_first)
        touched.append(self._validate_window(current, ends, valid))
        self.episode_open = torch.where(valid, ~ends, self.episode_open)
        self.next_slot = new_pos
        return touched

    # ------------------------------------------------------------------ reading
    def sampleable(self) -> torch.Tensor:
        """(N * S,) bool: which starts may be sampled now."""
        mask = torch.zeros(self.num_starts, dtype=torch.bool, device=self.device)
        mask[: self.scratch] = self.start_valid[: self.scratch]
        return mask

    def __len__(self) -> int:
        return int(self.start_valid[: self.scratch].sum())

    def _ring_rows(self, ring: torch.Tensor, env: torch.Tensor) -> torch.Tensor:
        return ring % self.slots * self.num_envs + env

    def _stacks(self, ring: torch.Tensor, env: torch.Tensor) -> torch.Tensor:
        """Stacked observations ending at ring slots ``ring`` (B,) of envs ``env`` (B,)."""
        if self.frame_stack == 1:  # a slot holds the whole observation
            return self.frames.index_select(0, self._ring_rows(ring, env))
        rows = self._ring_rows(ring[:, None] + self._stack_back, env[:, None])
        return self.frames.index_select(0, rows.reshape(-1)).view(len(ring), *self.obs_shape)

    def gather(self, starts: torch.Tensor) -> Gathered:
        """Rebuild the n-step transitions at the sampleable ``starts`` (B,)."""
        ring = starts // self.num_envs
        env = starts - ring * self.num_envs
        if self.n_step == 1:  # n_step_window with one step, in fewer ops
            rewards = self.rewards.index_select(0, starts)
            terminal = (self.flags.index_select(0, starts) & TERMINATED) > 0
            discounts = torch.where(terminal, 0.0, self.gamma).to(rewards.dtype)
            steps = 1
        else:
            window = self._ring_rows(ring[:, None] + self._window, env[:, None]).reshape(-1)
            flags = self.flags.index_select(0, window).view(len(starts), self.n_step)
            rewards, discounts, steps = n_step_window(
                self.rewards.index_select(0, window).view(len(starts), self.n_step),
                (flags & TERMINATED) > 0,
                (flags & TRUNCATED) > 0,
                self.gamma,
            )
        return Gathered(
            obs=self._stacks(ring, env),
            actions=self.actions.index_select(0, starts),
            rewards=rewards,
            next_obs=self._stacks(ring + steps, env),
            discounts=discounts,
            tasks=self.tasks.index_select(0, starts).long(),
        )

    # ------------------------------------------------------------------ bookkeeping
    PER_SLOT = ("frames", "actions", "rewards", "flags", "tasks", "start_valid")
    STREAM = ("next_slot", "episode_open", "episode_first", "_latest_start")

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor whose content is state (counted by ``nbytes``)."""
        return {name: getattr(self, name) for name in (*self.PER_SLOT, *self.STREAM)}

    def nbytes(self) -> int:
        """Bytes allocated now (grows with the written prefix up to the capacity)."""
        constants = [self._env_ids, self._stack_offsets, self._stack_back, self._overwrite_reach, self._window,
                     self._last_in_window]
        return sum(t.numel() * t.element_size() for t in [*self.tensors().values(), *constants])

    def written_slots(self) -> int:
        """Slots per env holding data: the rows ``0 .. written_slots * N - 1`` (one host read)."""
        return min(self.slots, int(self.next_slot.max()))

    def state_dict(self) -> dict[str, Any]:
        """The written rows only (a copy), the stream state and the shape they belong to."""
        rows = self.written_slots() * self.num_envs
        return {
            "num_envs": self.num_envs,
            "slots": self.slots,
            "frame_shape": tuple(self.frame_shape),
            **{name: getattr(self, name)[:rows].clone() for name in self.PER_SLOT},
            **{name.lstrip("_"): getattr(self, name).clone() for name in self.STREAM},
            "current_task": self.current_task,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = (state["num_envs"], state["slots"], tuple(state["frame_shape"]))
        if saved != (self.num_envs, self.slots, tuple(self.frame_shape)):
            raise ValueError(
                f"replay state is for (num_envs, slots per env, frame shape) = {saved}, "
                f"this buffer has {(self.num_envs, self.slots, tuple(self.frame_shape))}"
            )
        rows = len(state["start_valid"])
        written = rows // self.num_envs
        self.reserve(written + 2 * self._margin)
        for name in self.PER_SLOT:
            tensor = getattr(self, name)
            tensor[:rows] = state[name]
            if name != "frames":  # rows past the written prefix hold no transition
                tensor[rows:] = 0
        for name in self.STREAM:
            getattr(self, name).copy_(state[name.lstrip("_")])
        self.current_task = state["current_task"]
        self._next_slot_bound = int(self.next_slot.max())
