"""The two interfaces between storage and sampling.

As in TorchRL, a sampler owns no data: every call is given the storage it samples from, and
it reads that storage only through ``StartIndex``. A transition is named by its *start*, a
flat index in ``0 .. num_starts - 1``; ``num_starts`` itself names "no transition" (it is never
sampleable). Swapping uniform for prioritized replay is swapping the sampler; the storage is
the same.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch


class StartIndex(Protocol):
    """What a storage offers its sampler."""

    #: the device of every tensor handed over
    device: torch.device
    #: size of the start index space; starts are 0 .. num_starts - 1
    num_starts: int

    def written_starts(self) -> torch.Tensor:
        """0-d long tensor ``w >= 1``: starts ``>= w`` were never written (a prefix bound)."""
        ...

    def is_sampleable(self, starts: torch.Tensor) -> torch.Tensor:
        """Bool tensor shaped like ``starts`` (any long tensor of values in ``0 .. num_starts``)."""
        ...

    def latest_start(self) -> torch.Tensor:
        """0-d long tensor: a start that is sampleable now (-1 while none is)."""
        ...


class Sampler(Protocol):
    """What ``ReplayBuffer`` needs from a sampler."""

    def starts_changed(self, storage: StartIndex, starts: torch.Tensor) -> None:
        """After an add: ``starts`` (long, may repeat, may hold ``num_starts``) may have
        become sampleable or stopped being so."""
        ...

    def sample(self, storage: StartIndex, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (starts (B,) long, importance weights (B,) float32)."""
        ...

    def update_priorities(self, storage: StartIndex, starts: torch.Tensor, td_errors_abs: torch.Tensor) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def nbytes(self) -> int: ...


def seeded_generator(device: torch.device, seed: int) -> torch.Generator:
    """A sampler's own random generator on ``device`` (saved in its ``state_dict``)."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator
