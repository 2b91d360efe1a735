"""MinAtar's five games as batched PyTorch tensor programs (see ``base.py`` for the interface).

``GAMES`` maps the CamelCase name used in task ids (``minatar:Breakout``) to the reference
package's module name and to the class, imported on first use by :func:`game_class`.
"""

from __future__ import annotations

import importlib

from envs.minatar.base import ACTIONS, NUM_ACTIONS, BatchedGame
from envs.minatar.randomness import RecordedRandomness, Randomness, TorchRandomness

GAMES: dict[str, tuple[str, str]] = {
    # name: (reference module in minatar.environments, "module:Class" here)
    "Asterix": ("asterix", "envs.minatar.asterix:Asterix"),
    "Breakout": ("breakout", "envs.minatar.breakout:Breakout"),
    "Freeway": ("freeway", "envs.minatar.freeway:Freeway"),
    "Seaquest": ("seaquest", "envs.minatar.seaquest:Seaquest"),
    "SpaceInvaders": ("space_invaders", "envs.minatar.space_invaders:SpaceInvaders"),
}
MAX_CHANNELS = 10
"""The most channels of any game (Seaquest): cycled games are zero-padded to this many."""


def game_class(name: str) -> type[BatchedGame]:
    """The batched game class of ``name`` (a key of ``GAMES``)."""
    if name not in GAMES:
        raise ValueError(f"unknown MinAtar game {name!r}; valid: {', '.join(GAMES)}")
    module, cls = GAMES[name][1].split(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError):
        raise ValueError(f"MinAtar game {name!r} is not built yet ({module}.{cls} is missing)") from None


__all__ = ["ACTIONS", "GAMES", "MAX_CHANNELS", "NUM_ACTIONS", "BatchedGame", "RecordedRandomness",
           "Randomness", "TorchRandomness", "game_class"]
