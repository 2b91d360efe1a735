"""TensorBoard scalars and the progress bar.

Tags (DESIGN.md): `charts/*` (returns, lengths, SPS, ε, per-task returns), `losses/*`,
`plasticity/*`, `eval/<task>/*`, `task/*`. The global step is the number of environment
steps. Losses arrive as device tensors and are averaged on the device; the host reads
them only when they are written (every `log_every` steps).
"""

from __future__ import annotations

import time
from collections import defaultdict, deque

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm


class RunLogger:
    """Writes scalars to TensorBoard (purging events past `purge_step` on resume) and draws the progress bar."""

    def __init__(self, run_dir: str, task_names: list[str], total_steps: int, start_step: int = 0,
                 progress: bool = True, purge_step: int | None = None):
        self.writer = SummaryWriter(log_dir=run_dir, purge_step=purge_step)
        self.task_names = task_names
        self.task: int | None = None
        self.recent = deque(maxlen=20)
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = defaultdict(int)
        self._t0, self._s0 = time.perf_counter(), start_step
        self.bar = tqdm(total=total_steps, initial=start_step, disable=not progress, unit="step",
                        dynamic_ncols=True, mininterval=1.0)

    # --- tasks ----------------------------------------------------------------------------

    def start_visit(self, visit: int, task: int, step: int) -> None:
        name = self.task_names[task]
        self.task = task
        self.writer.add_scalar("task/index", task, step)
        self.writer.add_scalar("task/visit", visit, step)
        self.writer.add_text("task/name", name, step)
        self.recent.clear()

    # --- episodes -------------------------------------------------------------------------

    def episode(self, task: int, ret: float, length: int, step: int) -> None:
        name = self.task_names[task]
        self.writer.add_scalar("charts/episodic_return", ret, step)
        self.writer.add_scalar("charts/episodic_length", length, step)
        self.writer.add_scalar(f"charts/{name}/episodic_return", ret, step)
        self.recent.append(ret)

    def evaluation(self, returns: list[float], step: int) -> None:
        """`returns[t]`: task t's mean greedy evaluation return."""
        for name, ret in zip(self.task_names, returns):
            self.writer.add_scalar(f"eval/{name}/return", ret, step)

    # --- losses and other scalars -----------------------------------------------------------

    def accumulate(self, metrics: dict[str, torch.Tensor]) -> None:
        """Add one update's scalars (device tensors); no host synchronisation."""
        for key, value in metrics.items():
            if value.ndim:
                continue
            self._sums[key] = value if key not in self._sums else self._sums[key] + value
            self._counts[key] += 1

    def nonfinite_losses(self) -> dict[str, float]:
        """The accumulated losses whose running sum is NaN or ±Inf (one host sync)."""
        if not self._sums:
            return {}
        keys = list(self._sums)
        sums = torch.stack([self._sums[k] for k in keys])
        finite = torch.isfinite(sums).tolist()
        return {k: v for k, v, ok in zip(keys, sums.tolist(), finite) if not ok}

    def flush_scalars(self, step: int, extra: dict[str, float]) -> None:
        """Write the averaged losses and `extra` scalars; SPS since the last flush."""
        if self._sums:
            keys = list(self._sums)
            means = torch.stack([self._sums[k] / self._counts[k] for k in keys]).tolist()
            for key, value in zip(keys, means):
                self.writer.add_scalar(f"losses/{key}", value, step)
        self._sums.clear()
        self._counts.clear()
        now = time.perf_counter()
        sps = (step - self._s0) / max(now - self._t0, 1e-9)
        self._t0, self._s0 = now, step
        self.writer.add_scalar("charts/SPS", sps, step)
        for key, value in extra.items():
            self.writer.add_scalar(key, value, step)
        self.bar.set_postfix(task=self.task_names[self.task] if self.task is not None else "-",
                             sps=f"{sps:.0f}",
                             ret=f"{sum(self.recent) / len(self.recent):.1f}" if self.recent else "-",
                             refresh=False)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def advance(self, steps: int) -> None:
        self.bar.update(steps)

    def close(self) -> None:
        self.bar.close()
        self.writer.flush()
        self.writer.close()
