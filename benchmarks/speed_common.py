"""Shared pieces of the end-to-end speed benchmarks (`dqn_speed.py`, `sac_speed.py`):
the machine line, the timed window, our SPS events, and the interleaved repeat loop."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable


def machine_line(threads: int) -> str:
    import torch

    return (f"{platform.platform()}, {platform.processor() or platform.machine()}, os.cpu_count()={os.cpu_count()}, "
            f"torch {torch.__version__}, torch threads {threads}, python {platform.python_version()}")


def window(args) -> tuple[int, int]:
    """The timed env steps (start, end]: after learning starts and the excluded warm-up."""
    start = args.learning_starts + args.warmup_steps
    return start, start + args.measure_steps


def sps_events(run_dir: str) -> list[tuple[int, float]]:
    """(step, SPS) of every `charts/SPS` event a train.py run wrote."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars("charts/SPS")]


def interleaved(args, names: list[str], variants: dict[str, Callable]) -> dict[str, list[dict]]:
    """Run every variant once per repeat, rotating the order each repeat; print each result."""
    results: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(args.repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            res = variants[name](args)
            results[name].append(res)
            print(f"repeat {r} {name:14s} SPS {res['sps']:7.1f}  window {res['seconds']:6.1f}s  "
                  f"warm-up {res['warmup_s']:5.1f}s  wall {res['wall_s']:6.1f}s"
                  + (f"  recompiles {res['recompiles']}" if res.get("recompiles") is not None else ""), flush=True)
    return results
