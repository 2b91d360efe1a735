"""Uniform sampling over the sampleable starts of a storage, by rejection."""

from __future__ import annotations

from typing import Any

import torch

from replay.sampler import StartIndex, seeded_generator


class UniformSampler:
    """Every sampleable start equally likely; candidates are drawn from the written prefix
    ``0 .. storage.written_starts() - 1`` and rejected when not sampleable.

    Two ways to draw, the same distribution:

    * ``sync_free`` (the default off the CPU): each batch row draws ``proposals`` candidates
      at once and keeps the first sampleable one, with no host round trip. A row whose
      candidates all miss (probability ``(1 - f)^proposals`` with ``f`` the sampleable
      fraction of the written prefix: below 1e-19 once f >= 3/4) takes
      ``storage.latest_start()`` instead.
    * host loop (the default on the CPU, where reading a tensor costs nothing): one candidate
      per row, redrawn for the rows that missed until every row holds a sampleable start.
    """

    def __init__(self, device: torch.device | str = "cpu", seed: int = 0, proposals: int = 32,
                 sync_free: bool | None = None):
        device = torch.device(device)
        self.proposals = proposals
        self.sync_free = device.type != "cpu" if sync_free is None else sync_free
        self.generator = seeded_generator(device, seed)

    def starts_changed(self, storage: StartIndex, starts: torch.Tensor) -> None:
        """The storage's ``is_sampleable`` is all this sampler needs."""

    def sample(self, storage: StartIndex, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        device = storage.device
        weights = torch.ones(batch_size, dtype=torch.float32, device=device)
        if not self.sync_free:
            return self._sample_host_loop(storage, batch_size), weights
        written = storage.written_starts()
        shape = (batch_size, self.proposals)
        candidates = torch.randint(0, 2**62, shape, generator=self.generator, device=device) % written
        ok = storage.is_sampleable(candidates)
        first_ok = ok.to(torch.uint8).argmax(dim=1, keepdim=True)  # argmax returns the first maximum
        chosen = candidates.gather(1, first_ok).squeeze(1)
        return torch.where(ok.any(dim=1), chosen, storage.latest_start()), weights

    def _sample_host_loop(self, storage: StartIndex, batch_size: int) -> torch.Tensor:
        written = int(storage.written_starts())
        draw = lambda n: torch.randint(0, written, (n,), generator=self.generator, device=storage.device)  # noqa: E731
        starts = draw(batch_size)
        missed = (~storage.is_sampleable(starts)).nonzero().squeeze(1)
        for _ in range(10_000):  # each round keeps a fraction f of the misses; f > 0 once sampling is allowed
            if len(missed) == 0:
                return starts
            redrawn = draw(len(missed))
            starts[missed] = redrawn
            missed = missed[~storage.is_sampleable(redrawn)]
        return torch.where(storage.is_sampleable(starts), starts, storage.latest_start())

    def update_priorities(self, storage: StartIndex, starts: torch.Tensor, td_errors_abs: torch.Tensor) -> None:
        """Uniform replay has no priorities."""

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])

    def nbytes(self) -> int:
        return 0
