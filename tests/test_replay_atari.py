"""Replay against a real ALE vector env: stacks rebuilt from single frames, and memory.

The buffer stores one 84x84 frame per step; these tests check that the stacked
observations it rebuilds are byte-identical to the ones ``ale_py.vector_env`` produced,
across terminations, truncations, next-step auto-resets and ring wrap-around, and that a
stored Atari transition costs at most 7.2 KB.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_replay_reference import ReferenceReplay, check_buffer

from replay import make_replay
from replay.storage import FrameStorage

ale_vector_env = pytest.importorskip("ale_py.vector_env")


def test_rebuilt_stacks_equal_ale_vector_env_observations(monkeypatch):
    monkeypatch.setattr(FrameStorage, "initial_slots", 1)  # the roomy buffer grows 24 -> 1000 slots per env
    env = ale_vector_env.AtariVectorEnv(
        "breakout", num_envs=2, repeat_action_probability=0.25, full_action_space=True,
        reward_clipping=False, max_num_frames_per_episode=600, num_threads=1,
    )
    kw = dict(num_envs=2, obs_shape=(4, 84, 84), obs_dtype=torch.uint8, frame_stack=4, n_step=3, gamma=0.9)
    roomy = make_replay("uniform", 2 * 1000, **kw)  # never wraps in this run
    ring = make_replay("prioritized", 2 * 150, **kw)  # wraps several times
    refs = [ReferenceReplay(2, b.storage.slots, 4, 3, 0.9, None) for b in (roomy, ring)]
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=123)
    prev_done = np.zeros(2, dtype=bool)
    ends = {"terminated": 0, "truncated": 0, "autoreset": 0}
    try:
        for t in range(600):
            next_obs, rewards, terminated, truncated, _ = env.step(rng.integers(0, 18, 2))
            valid = ~prev_done  # next-step autoreset: this step only returned a reset obs
            ids = np.array([2 * t, 2 * t + 1])  # stored as the "action": a transition id
            for buf, ref in zip((roomy, ring), refs):
                buf.add(torch.as_tensor(obs), torch.as_tensor(ids), torch.as_tensor(rewards).float(),
                        torch.as_tensor(next_obs), torch.as_tensor(terminated), torch.as_tensor(truncated),
                        torch.as_tensor(valid), 0)
                ref.add(ids, obs, rewards, next_obs, terminated, truncated, valid, 0)
            ends["terminated"] += int((terminated & valid).sum())
            ends["truncated"] += int((truncated & valid).sum())
            ends["autoreset"] += int((~valid).sum())
            prev_done = (terminated | truncated) & valid
            obs = next_obs
            if t % 150 == 149:
                counts = [check_buffer(buf, ref) for buf, ref in zip((roomy, ring), refs)]
    finally:
        env.close()
    assert ends["terminated"] >= 2 and ends["truncated"] >= 2 and ends["autoreset"] >= 4, ends
    stored = 2 * 600 - ends["autoreset"]
    # the roomy buffer holds every stored transition (all windows closed or complete but the
    # last n-1 of each open episode); the ring holds what fits in its 150 slots per env
    assert stored - 2 * 2 <= counts[0] <= stored
    assert 2 * 150 * 0.8 < counts[1] < 2 * 150
    # the rebuilt first observation of an episode has the env's zero padding
    batch = roomy.sample(512)
    first_steps = (batch.obs[:, :3].flatten(1).amax(1) == 0) & (batch.obs[:, 3].flatten(1).amax(1) > 0)
    assert first_steps.any()


@pytest.mark.parametrize("kind", ["uniform", "prioritized"])
@pytest.mark.parametrize("num_envs", [1, 4])
def test_atari_bytes_per_transition_within_budget(kind, num_envs):
    buf = make_replay(kind, 10_000, num_envs, (4, 84, 84), torch.uint8, 4, n_step=3)
    assert buf.storage.allocated_slots == 1024  # per env, until the fullest env comes near it
    buf.storage.reserve(buf.storage.slots)  # the full capacity, as once the ring is full
    per_transition = buf.nbytes() / 10_000
    assert 84 * 84 <= per_transition <= 7200
    frames = buf.storage.frames  # one row per slot plus one scratch row
    assert frames.shape == (10_000 + 1, 84, 84) and frames.dtype == torch.uint8
