"""A plain-Python reference of what the replay buffer must hold, and a tiny fake vector env.

Shared by tests/test_replay.py and tests/test_replay_atari.py (no tests here). The reference
records every transition with its own observations and computes, from the storage layout
rules of the spec (an episode's first add takes frame_stack slots, every further add one
slot, a ring of ``slots`` per env), which transitions must be sampleable and what their
n-step targets are. ``check_buffer`` compares the real buffer against it, transition by
transition: the action stored in the buffer is a unique transition id, so every rebuilt
slot can be matched to what the environment really produced.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class Episode:
    ids: list[int] = field(default_factory=list)
    closed: bool = False
    terminated: bool = False  # the last transition terminated (else truncated / forced)


@dataclass
class Transition:
    env: int
    start: int  # absolute slot of the obs's newest frame in the env's ring
    episode: Episode
    obs: np.ndarray
    next_obs: np.ndarray
    reward: float
    task: int


class ReferenceReplay:
    """Mirror of the buffer's contents, computed the slow obvious way."""

    def __init__(self, num_envs: int, slots: int, frame_stack: int, n_step: int, gamma: float, clip: float | None):
        self.slots, self.stack, self.n, self.gamma, self.clip = slots, frame_stack, n_step, gamma, clip
        self.written = [0] * num_envs
        self.open: list[Episode | None] = [None] * num_envs
        self.transitions: dict[int, Transition] = {}
        self.task: int | None = None

    def add(self, ids, obs, rewards, next_obs, terminated, truncated, valid, task: int) -> None:
        if self.task is not None and task != self.task:
            for env, episode in enumerate(self.open):
                if episode is not None:
                    episode.closed = True
            self.open = [None] * len(self.open)
        self.task = task
        for env in range(len(self.written)):
            if not valid[env]:
                continue
            if self.open[env] is None:  # initial stack: F-1 padding slots, then the obs
                self.open[env] = Episode()
                start = self.written[env] + self.stack - 1
            else:  # obs is the previous next_obs, already in the last written slot
                start = self.written[env] - 1
            episode = self.open[env]
            self.written[env] = start + 2  # next_obs goes in the slot after obs
            self.transitions[int(ids[env])] = Transition(
                env, start, episode, np.array(obs[env]), np.array(next_obs[env]), float(rewards[env]), task
            )
            episode.ids.append(int(ids[env]))
            if terminated[env] or truncated[env]:
                episode.closed, episode.terminated = True, bool(terminated[env])
                self.open[env] = None

    def expected(self) -> dict[int, tuple[np.ndarray, np.ndarray, float, float]]:
        """id -> (obs, next_obs, n-step reward, discount) of every sampleable transition."""
        out = {}
        for tid, tr in self.transitions.items():
            ep, i = tr.episode, tr.episode.ids.index(tid)
            remaining = len(ep.ids) - i
            if not ep.closed and remaining < self.n:
                continue  # window not complete yet
            m = min(self.n, remaining)
            # Still in the ring? The env's ring holds absolute slots >= written - slots.
            if tr.start - self.stack + 1 < self.written[tr.env] - self.slots:
                continue
            window = [self.transitions[j] for j in ep.ids[i : i + m]]
            rewards = [w.reward if self.clip is None else float(np.clip(w.reward, -self.clip, self.clip))
                       for w in window]
            ret = sum(self.gamma**k * r for k, r in enumerate(rewards))
            ends_here = ep.closed and i + m == len(ep.ids)
            discount = 0.0 if ends_here and ep.terminated else self.gamma**m
            out[tid] = (tr.obs, window[-1].next_obs, ret, discount)
        return out


def check_buffer(buf, ref: ReferenceReplay) -> int:
    """Assert the buffer's sampleable transitions are exactly the reference's; return how many."""
    storage = buf.storage
    flat = storage.sampleable().nonzero().squeeze(1)
    got = storage.gather(flat)
    expected = ref.expected()
    ids = got.actions.tolist()
    assert sorted(ids) == sorted(expected), (
        f"sampleable ids differ: missing {sorted(set(expected) - set(ids))[:10]}, "
        f"extra {sorted(set(ids) - set(expected))[:10]}"
    )
    if not ids:
        return 0
    exp_obs = torch.as_tensor(np.stack([expected[i][0] for i in ids]))
    exp_next = torch.as_tensor(np.stack([expected[i][1] for i in ids]))
    exp_ret = torch.tensor([expected[i][2] for i in ids], dtype=torch.float32)
    exp_disc = torch.tensor([expected[i][3] for i in ids], dtype=torch.float32)
    exp_task = torch.tensor([ref.transitions[i].task for i in ids])
    assert torch.equal(got.obs, exp_obs.to(got.obs.dtype))
    assert torch.equal(got.next_obs, exp_next.to(got.next_obs.dtype))
    torch.testing.assert_close(got.rewards, exp_ret, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.discounts, exp_disc, rtol=1e-6, atol=1e-7)
    assert torch.equal(got.tasks, exp_task)
    return len(ids)


class FakeStackedVectorEnv:
    """N envs with next-step autoreset whose frames say who produced them.

    Frame of env e, episode k, step s = [e+1, k+1, s+1] (float32), stacked ``stack`` deep
    with zeros at reset like the ALE vector env. Episodes last 1..max_len steps and end
    terminated or truncated at random; rewards are random floats in [-3, 3].
    """

    def __init__(self, num_envs: int, stack: int, max_len: int, seed: int):
        self.n, self.stack, self.max_len = num_envs, stack, max_len
        self.rng = np.random.default_rng(seed)
        self.episode = np.zeros(num_envs, dtype=int)
        self.step_in_ep = np.zeros(num_envs, dtype=int)
        self.length = self.rng.integers(1, max_len + 1, num_envs)
        self.needs_reset = np.zeros(num_envs, dtype=bool)
        self.obs = np.zeros((num_envs, stack, 3), dtype=np.float32)
        for e in range(num_envs):
            self.obs[e, -1] = self._frame(e)

    def _frame(self, env: int) -> np.ndarray:
        return np.array([env + 1, self.episode[env] + 1, self.step_in_ep[env] + 1], dtype=np.float32)

    def step(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        rewards = self.rng.uniform(-3, 3, self.n).astype(np.float32)
        terminated, truncated = np.zeros(self.n, dtype=bool), np.zeros(self.n, dtype=bool)
        for e in range(self.n):
            if self.needs_reset[e]:  # next-step autoreset: the new episode's first obs
                self.needs_reset[e] = False
                self.episode[e] += 1
                self.step_in_ep[e] = 0
                self.length[e] = self.rng.integers(1, self.max_len + 1)
                self.obs[e] = 0
                self.obs[e, -1] = self._frame(e)
                rewards[e] = 0.0
                continue
            self.step_in_ep[e] += 1
            self.obs[e] = np.roll(self.obs[e], -1, axis=0)
            self.obs[e, -1] = self._frame(e)
            if self.step_in_ep[e] == self.length[e]:
                self.needs_reset[e] = True
                (terminated if self.rng.random() < 0.5 else truncated)[e] = True
        return self.obs.copy(), rewards, terminated, truncated
