"""Replay buffers: frame storage (each frame once, on device) + swappable samplers.

    from agents.replay import ReplayBuffer, Batch, make_replay
"""

from __future__ import annotations

from agents.replay.buffer import REPLAY_KINDS, Batch, ReplayBuffer, make_replay
from agents.replay.samplers import PrioritizedSampler, Sampler, UniformSampler
from agents.replay.storage import FrameStorage

__all__ = [
    "REPLAY_KINDS",
    "Batch",
    "FrameStorage",
    "PrioritizedSampler",
    "ReplayBuffer",
    "Sampler",
    "UniformSampler",
    "make_replay",
]
