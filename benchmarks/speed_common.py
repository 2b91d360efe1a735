"""Shared pieces of the end-to-end speed benchmarks (`dqn_speed.py`, `sac_speed.py`):
the machine line, the timed window, our SPS events, the interleaved and the time-sliced ways
of running the variants, the SB3 child's timed `learn`, and the cProfile tables of a
train.py run."""

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


def sps_events(run_dir: str, wall_time: bool = False) -> list[tuple]:
    """(step, SPS) of every `charts/SPS` event a train.py run wrote; (step, SPS, epoch seconds)
    with `wall_time`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value, e.wall_time) if wall_time else (e.step, e.value) for e in acc.Scalars("charts/SPS")]


def time_sliced(commands: dict[str, tuple[list[str], str, dict | None]], slice_s: float) -> dict[str, dict]:
    """Run the commands (name -> (argv, cwd, env)) at once but never together: round-robin,
    each continued for `slice_s` seconds while the others are stopped (SIGSTOP / SIGCONT), so
    the host's drift over tens of seconds hits every side alike. Returns, per name, its
    return code, stdout, stderr, and `running`: the (start, end) epoch intervals it ran in."""
    import signal
    import subprocess
    import tempfile
    import time

    procs, files = {}, {}
    for name, (cmd, cwd, env) in commands.items():
        out, err = tempfile.TemporaryFile(mode="w+"), tempfile.TemporaryFile(mode="w+")
        procs[name] = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err)
        procs[name].send_signal(signal.SIGSTOP)
        files[name] = (out, err)
    running: dict[str, list[tuple[float, float]]] = {n: [] for n in procs}
    try:
        while any(p.poll() is None for p in procs.values()):
            for name, p in procs.items():
                if p.poll() is not None:
                    continue
                t0 = time.time()
                p.send_signal(signal.SIGCONT)
                while p.poll() is None and time.time() - t0 < slice_s:
                    time.sleep(0.005)
                if p.poll() is None:
                    p.send_signal(signal.SIGSTOP)
                running[name].append((t0, time.time()))
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    results = {}
    for name, p in procs.items():
        out, err = files[name]
        out.seek(0)
        err.seek(0)
        results[name] = {"returncode": p.returncode, "stdout": out.read(), "stderr": err.read(),
                         "running": running[name]}
        out.close()
        err.close()
    return results


def running_seconds(running: list[tuple[float, float]], start: float, end: float) -> float:
    """Seconds of (start, end) during which a time-sliced process was running."""
    return sum(max(0.0, min(b, end) - max(a, start)) for a, b in running)


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

    epoch: dict[int, float] = {}

    class Timer(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps in (learn_at, start, end):
                marks[self.num_timesteps] = time.perf_counter()
                epoch[self.num_timesteps] = time.time()
            return True

    model.learn(total_timesteps=end, callback=Timer(), progress_bar=False)
    seconds = marks[end] - marks[start]
    print(json.dumps({"sps": args.measure_steps / seconds, "seconds": seconds,
                      "warmup_s": marks[start] - marks[learn_at], "threads": torch.get_num_threads(),
                      "window_epoch": [epoch[start], epoch[end]]}))


def sb3_child_cmd(script: str, args) -> list[str]:
    """`script --child-sb3` with the window's settings."""
    import sys

    return [sys.executable, script, "--child-sb3", "--learning-starts", str(args.learning_starts),
            "--warmup-steps", str(args.warmup_steps), "--measure-steps", str(args.measure_steps),
            "--threads", str(args.threads), "--capacity", str(args.capacity), "--seed", str(args.seed)]


def run_sb3_child(script: str, args, env: dict | None = None) -> dict:
    """Run `script --child-sb3` with the window's settings; its JSON line plus the wall time."""
    import json
    import subprocess
    import time
    from pathlib import Path

    cmd = sb3_child_cmd(script, args)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=Path(script).resolve().parent.parent, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"sb3 child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall_s"] = wall
    return out


def profile_train_py(root, argv_for: Callable[[str], list[str]], top: int, wanted: tuple[str, ...],
                     min_share: float = 0.005, library_fns: tuple[str, ...] | None = None,
                     env: dict | None = None) -> None:
    """Run `train.py argv_for(run_dir)` under cProfile; print the `top` functions by own time,
    then the `wanted` functions (by name, over `min_share` of the total) by cumulative time.
    With `library_fns`, a site-packages function is listed only if its name is one of them."""
    import os
    import pstats
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    tmp = tempfile.mkdtemp(prefix="train_profile_")
    try:
        prof = os.path.join(tmp, "ours.prof")
        cmd = [sys.executable, "-m", "cProfile", "-o", prof, "train.py", *argv_for(os.path.join(tmp, "run"))]
        subprocess.run(cmd, cwd=root, check=True, capture_output=True, env=env)
        stats = pstats.Stats(prof)
        total = stats.total_tt
        rows = [(tt, ct, nc, f"{Path(file).name}:{line}({fn})")
                for (file, line, fn), (cc, nc, tt, ct, callers) in stats.stats.items()]
        print(f"total profiled time {total:.1f} s")
        print()
        print("| tottime s | share | cumtime s | calls | function |")
        print("|---|---|---|---|---|")
        for tt, ct, nc, name in sorted(rows, reverse=True)[:top]:
            print(f"| {tt:.2f} | {tt / total:.1%} | {ct:.2f} | {nc} | `{name}` |")
        print()
        print("| cumtime s | calls | per call ms | function |")
        print("|---|---|---|---|")
        for tt, ct, nc, name in sorted(rows, key=lambda r: -r[1]):
            fn = name.split("(")[-1].rstrip(")")
            library_ok = library_fns is None or "site-packages" not in name or fn in library_fns
            if fn in wanted and ct > min_share * total and library_ok:
                print(f"| {ct:.2f} | {nc} | {ct / max(nc, 1) * 1e3:.2f} | `{name}` |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
