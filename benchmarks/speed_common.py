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


def learn_timed(model, args) -> None:
    """Inside the SB3 child: learn to the window's end, timing env steps L, L+W and L+W+M with
    a callback (its `_on_step` runs after each env step, before that step's gradient step);
    prints one JSON line for `run_sb3_child`."""
    import json
    import time

    import torch
    from stable_baselines3.common.callbacks import BaseCallback

    start, end = window(args)
    marks: dict[int, float] = {}
    learn_at = args.learning_starts

    class Timer(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps in (learn_at, start, end):
                marks[self.num_timesteps] = time.perf_counter()
            return True

    model.learn(total_timesteps=end, callback=Timer(), progress_bar=False)
    seconds = marks[end] - marks[start]
    print(json.dumps({"sps": args.measure_steps / seconds, "seconds": seconds,
                      "warmup_s": marks[start] - marks[learn_at], "threads": torch.get_num_threads()}))


def run_sb3_child(script: str, args, env: dict | None = None) -> dict:
    """Run `script --child-sb3` with the window's settings; its JSON line plus the wall time."""
    import json
    import subprocess
    import sys
    import time
    from pathlib import Path

    cmd = [sys.executable, script, "--child-sb3", "--learning-starts", str(args.learning_starts),
           "--warmup-steps", str(args.warmup_steps), "--measure-steps", str(args.measure_steps),
           "--threads", str(args.threads), "--capacity", str(args.capacity), "--seed", str(args.seed)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=Path(script).resolve().parent.parent, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"sb3 child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall_s"] = wall
    return out
