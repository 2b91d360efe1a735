"""Frame storage: every observation frame is stored once, in one ring per environment.

Layout (``N`` envs, ``S`` slots per env, ``F`` = frame_stack). Every per-slot tensor has
``N * S + 1`` rows: row ``env * S + slot`` (the "flat index" samplers use), plus one
scratch row at the end that masked-out writes go to, so no write needs a host decision.

* ``frames`` (rows, *frame_shape): for stacked Atari observations (F > 1) a slot holds one
  84x84 frame, the newest of a stack; for anything else (F = 1) a slot holds a whole
  observation. A stacked observation "at slot s" is rebuilt from slots s-F+1 .. s.
* per-slot metadata of the transition that *starts* at a slot: ``actions``, ``rewards``
  (float32, already clipped if ``reward_clip``), ``flags`` (uint8: 1 terminated,
  2 truncated), ``tasks`` (uint8), and ``start_valid`` (the transition may be sampled now).

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
vectorised tensor ops with no host decision (no sync); on the CPU, where reading a value
costs nothing, it walks the envs in Python over NumPy views of the same tensors (a few
scalar writes per env instead of ~60 tensor ops). ``host_path`` picks one (default: by device).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from agents.replay.n_step import n_step_window

TERMINATED, TRUNCATED = 1, 2  # bits of ``flags``


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
        self.obs_shape = obs_shape
        self.frame_shape = obs_shape[1:] if frame_stack > 1 else obs_shape
        self.gamma = float(gamma)
        self.reward_clip = reward_clip
        self.scratch = rows = num_envs * slots  # index of the scratch row; there are rows + 1
        self.frames = torch.zeros(rows + 1, *self.frame_shape, dtype=obs_dtype, device=dev)
        self.actions = torch.zeros(rows + 1, *action_shape, dtype=action_dtype, device=dev)
        self.rewards = torch.zeros(rows + 1, dtype=torch.float32, device=dev)
        self.flags = torch.zeros(rows + 1, dtype=torch.uint8, device=dev)
        self.tasks = torch.zeros(rows + 1, dtype=torch.uint8, device=dev)
        self.start_valid = torch.zeros(rows + 1, dtype=torch.bool, device=dev)
        # Stream state per env, in absolute slot counts (ring slot = absolute % slots).
        self.next_slot = torch.zeros(num_envs, dtype=torch.long, device=dev)
        self.episode_open = torch.zeros(num_envs, dtype=torch.bool, device=dev)
        self.episode_first = torch.zeros(num_envs, dtype=torch.long, device=dev)
        # A start that is certainly sampleable (the newest made so), or -1 while none is.
        self.latest_start = torch.full((), -1, dtype=torch.long, device=dev)
        self.current_task: int | None = None
        # Constants of the hot paths, built once.
        self._env_base = torch.arange(num_envs, device=dev) * slots
        self._stack_offsets = torch.arange(frame_stack, device=dev)
        self._stack_back = self._stack_offsets - (frame_stack - 1)
        self._overwrite_reach = torch.arange(2 * frame_stack, device=dev)
        self._window = torch.arange(n_step, device=dev)
        self._last_in_window = self._window == n_step - 1
        default = self.host_path_default
        self.host_path = dev.type == "cpu" if default is None else default
        self._host_views: tuple | None = None

    # ------------------------------------------------------------------ writing
    def _rows(self, absolute: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Flat rows of the (N, ...) absolute slots of each env, the scratch row where not ``mask``."""
        base = self._env_base.view(-1, *([1] * (absolute.dim() - 1)))
        return torch.where(mask, base + absolute % self.slots, self.scratch)

    def _mark(self, rows: torch.Tensor, valid: bool) -> torch.Tensor:
        """Set ``start_valid`` of ``rows`` (scratch rows ignored); returns the rows touched."""
        rows = rows.reshape(-1)
        self.start_valid.index_fill_(0, rows, valid)
        if valid:
            self.start_valid[self.scratch] = False
            newest = rows.masked_fill(rows == self.scratch, -1).max()
            self.latest_start = torch.where(newest >= 0, newest, self.latest_start)
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
        """Store one vector step; returns the flat rows whose ``start_valid`` may have changed."""
        if not 0 <= int(task) <= 255:
            raise ValueError(f"task must be in [0, 255] (stored as uint8), got {task}")
        touched: list[torch.Tensor] = []
        if self.current_task is not None and int(task) != self.current_task:
            touched += self.end_open_episodes()
        self.current_task = int(task)

        if self.host_path and self.device.type == "cpu":
            touched.append(self._add_host(obs, actions, rewards, next_obs, terminated, truncated, valid, int(task)))
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

    def _add_host(self, obs, actions, rewards, next_obs, terminated, truncated, valid, task: int) -> torch.Tensor:
        """``add`` for CPU storage, env by env on NumPy views; the same writes as the vectorised path."""
        n_envs, stack, slots, n = self.num_envs, self.frame_stack, self.slots, self.n_step

        def host(x, shape, dtype=None):
            t = (x if isinstance(x, torch.Tensor) else torch.as_tensor(x)).detach().cpu().reshape(shape)
            return (t if dtype is None or t.dtype == dtype else t.to(dtype)).numpy()

        valid = host(valid, n_envs, torch.bool)
        terminated = host(terminated, n_envs, torch.bool)
        truncated = host(truncated, n_envs, torch.bool)
        rewards = host(rewards, n_envs, torch.float32)
        if self.reward_clip is not None:
            rewards = rewards.clip(-self.reward_clip, self.reward_clip)
        obs = torch.as_tensor(obs).detach().cpu().reshape(n_envs, stack, *self.frame_shape)
        newest = torch.as_tensor(next_obs).detach().cpu().reshape(n_envs, stack, *self.frame_shape)[:, -1]
        actions = host(actions, (n_envs, *self.actions.shape[1:]))
        state = (self.frames, self.actions, self.rewards, self.flags, self.tasks, self.start_valid, self.next_slot,
                 self.episode_open, self.episode_first)
        if self._host_views is None or any(a is not b for a, b in zip(state, self._host_views[0])):
            self._host_views = (state, tuple(t.numpy() for t in state))  # NumPy views, rebuilt if a tensor is replaced
        frames, acts, rews, flags, tasks, start_valid, next_slot, open_, first = self._host_views[1]
        touched: list[int] = []
        newest_valid = -1
        for e in np.flatnonzero(valid):
            base, pos = e * slots, int(next_slot[e])
            if open_[e]:
                current = pos - 1
            else:  # a new episode: its whole initial stack
                for k in range(stack):
                    frames[base + (pos + k) % slots] = obs[e, k].numpy()
                current = pos - 1 + stack
                first[e] = current
            frames[base + (current + 1) % slots] = newest[e].numpy()
            row = base + current % slots
            acts[row] = actions[e]
            rews[row] = rewards[e]
            flags[row] = TERMINATED * terminated[e] + TRUNCATED * truncated[e]
            tasks[row] = task
            new_pos = current + 2
            # the overwritten slots pos .. new_pos-1 break the starts that read them
            for k in range(min(new_pos - pos + stack - 1, 2 * stack)):
                r = base + (pos + k) % slots
                start_valid[r] = False
                touched.append(r)
            ends = bool(terminated[e] or truncated[e])
            for k in range(n):  # starts whose n-step window is now fixed
                start = current - k
                if (k == n - 1 or ends) and start >= first[e]:
                    r = base + start % slots
                    start_valid[r] = True
                    touched.append(r)
                    newest_valid = max(newest_valid, r)
            open_[e] = not ends
            next_slot[e] = new_pos
        if newest_valid >= 0:
            self.latest_start.fill_(newest_valid)
        return torch.tensor(touched, dtype=torch.long)

    # ------------------------------------------------------------------ reading
    def sampleable(self) -> torch.Tensor:
        """(N * S,) bool: which flat starts may be sampled now."""
        return self.start_valid[: self.scratch]

    def __len__(self) -> int:
        return int(self.sampleable().sum())

    def _stacks(self, flat: torch.Tensor) -> torch.Tensor:
        """Stacked observations ending at the flat slots ``flat`` (B,)."""
        if self.frame_stack == 1:  # a slot holds the whole observation
            return self.frames.index_select(0, flat)
        ring = flat % self.slots
        rows = (flat - ring)[:, None] + (ring[:, None] + self._stack_back) % self.slots
        return self.frames.index_select(0, rows.reshape(-1)).view(len(flat), *self.obs_shape)

    def gather(self, flat: torch.Tensor) -> Gathered:
        """Rebuild the n-step transitions starting at the flat slots ``flat`` (B,)."""
        ring = flat % self.slots
        if self.n_step == 1:  # n_step_window with one step, in fewer ops
            rewards = self.rewards.index_select(0, flat)
            terminal = (self.flags.index_select(0, flat) & TERMINATED) > 0
            discounts = torch.where(terminal, 0.0, self.gamma).to(rewards.dtype)
            steps = 1
        else:
            window = ((flat - ring)[:, None] + (ring[:, None] + self._window) % self.slots).reshape(-1)
            flags = self.flags.index_select(0, window).view(len(flat), self.n_step)
            rewards, discounts, steps = n_step_window(
                self.rewards.index_select(0, window).view(len(flat), self.n_step),
                (flags & TERMINATED) > 0,
                (flags & TRUNCATED) > 0,
                self.gamma,
            )
        return Gathered(
            obs=self._stacks(flat),
            actions=self.actions.index_select(0, flat),
            rewards=rewards,
            next_obs=self._stacks(flat - ring + (ring + steps) % self.slots),
            discounts=discounts,
            tasks=self.tasks.index_select(0, flat).long(),
        )

    # ------------------------------------------------------------------ bookkeeping
    def tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor whose content is state (saved, counted by ``nbytes``)."""
        names = ["frames", "actions", "rewards", "flags", "tasks", "start_valid",
                 "next_slot", "episode_open", "episode_first", "latest_start"]
        return {name: getattr(self, name) for name in names}

    def nbytes(self) -> int:
        constants = [self._env_base, self._stack_offsets, self._stack_back, self._overwrite_reach, self._window,
                     self._last_in_window]
        return sum(t.numel() * t.element_size() for t in [*self.tensors().values(), *constants])

    def state_dict(self) -> dict[str, Any]:
        return {**{k: v.clone() for k, v in self.tensors().items()}, "current_task": self.current_task}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, tensor in self.tensors().items():
            if state[name].shape != tensor.shape:
                raise ValueError(
                    f"replay state '{name}' has shape {tuple(state[name].shape)}, expected {tuple(tensor.shape)}"
                )
            tensor.copy_(state[name])
        self.current_task = state["current_task"]
