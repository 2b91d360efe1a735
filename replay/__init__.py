"""Replay: a frame storage (each frame once, on device, allocated as it fills) and a
sampler that is handed the storage it samples from (uniform, or prioritized on a sum tree).

    from replay import ReplayBuffer, Batch, make_replay
"""

from __future__ import annotations

from replay.buffer import REPLAY_KINDS, Batch, ReplayBuffer, make_replay
from replay.prioritized import PrioritizedSampler
from replay.sampler import Sampler, StartIndex
from replay.storage import FrameStorage
from replay.uniform import UniformSampler

__all__ = [
    "REPLAY_KINDS",
    "Batch",
    "FrameStorage",
    "PrioritizedSampler",
    "ReplayBuffer",
    "Sampler",
    "StartIndex",
    "UniformSampler",
    "make_replay",
]
