"""``FrameStorage.add`` for CPU storage: env by env over NumPy views of the same tensors.

On the CPU reading a value costs nothing, so a few scalar writes per env replace the ~60
tensor ops of the vectorised path; the writes are the same (``tests/test_replay.py`` runs
every test both ways).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from replay.n_step import TERMINATED, TRUNCATED

if TYPE_CHECKING:
    from replay.storage import FrameStorage


def _host(x, shape, dtype=None) -> np.ndarray:
    t = (x if isinstance(x, torch.Tensor) else torch.as_tensor(x)).detach().cpu().reshape(shape)
    return (t if dtype is None or t.dtype == dtype else t.to(dtype)).numpy()


def add_on_host(storage: FrameStorage, obs, actions, rewards, next_obs, terminated, truncated, valid,
                task: int) -> torch.Tensor:
    """Store one vector step; returns the starts whose ``start_valid`` may have changed."""
    s = storage
    n_envs, stack, slots, n = s.num_envs, s.frame_stack, s.slots, s.n_step
    valid = _host(valid, n_envs, torch.bool)
    terminated = _host(terminated, n_envs, torch.bool)
    truncated = _host(truncated, n_envs, torch.bool)
    rewards = _host(rewards, n_envs, torch.float32)
    if s.reward_clip is not None:
        rewards = rewards.clip(-s.reward_clip, s.reward_clip)
    obs = torch.as_tensor(obs).detach().cpu().reshape(n_envs, stack, *s.frame_shape)
    newest = torch.as_tensor(next_obs).detach().cpu().reshape(n_envs, stack, *s.frame_shape)[:, -1]
    actions = _host(actions, (n_envs, *s.actions.shape[1:]))
    state = (s.frames, s.actions, s.rewards, s.flags, s.tasks, s.start_valid, s.next_slot, s.episode_open,
             s.episode_first)
    if s.host_views is None or any(a is not b for a, b in zip(state, s.host_views[0])):
        s.host_views = (state, tuple(t.numpy() for t in state))
    frames, acts, rews, flags, tasks, start_valid, next_slot, open_, first = s.host_views[1]
    touched: list[int] = []
    newest_valid = -1
    for e in np.flatnonzero(valid):
        pos = int(next_slot[e])
        if open_[e]:
            current = pos - 1
        else:  # a new episode: its whole initial stack
            for k in range(stack):
                frames[(pos + k) % slots * n_envs + e] = obs[e, k].numpy()
            current = pos - 1 + stack
            first[e] = current
        frames[(current + 1) % slots * n_envs + e] = newest[e].numpy()
        row = current % slots * n_envs + e
        acts[row] = actions[e]
        rews[row] = rewards[e]
        flags[row] = TERMINATED * terminated[e] + TRUNCATED * truncated[e]
        tasks[row] = task
        new_pos = current + 2
        # the overwritten slots pos .. new_pos-1 break the starts that read them (at most 2F rows:
        # F + 1 slots written by a new episode, F - 1 later starts reading them)
        for k in range(new_pos - pos + stack - 1):
            r = (pos + k) % slots * n_envs + e
            start_valid[r] = False
            touched.append(r)
        ends = bool(terminated[e] or truncated[e])
        for k in range(n):  # starts whose n-step window is now fixed
            start = current - k
            if (k == n - 1 or ends) and start >= first[e]:
                r = start % slots * n_envs + e
                start_valid[r] = True
                touched.append(r)
                newest_valid = max(newest_valid, r)
        open_[e] = not ends
        next_slot[e] = new_pos
    if newest_valid >= 0:
        s.latest_start().fill_(newest_valid)
    return torch.tensor(touched, dtype=torch.long)
