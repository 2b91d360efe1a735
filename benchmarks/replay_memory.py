"""Bytes per stored Atari transition: our replay (uniform, prioritized) versus SB3's ReplayBuffer.

Shapes: observation (4, 84, 84) uint8, 18 discrete actions, one env.

* Allocated size at capacity ``--capacity`` (default 1,000,000): ours is
  ``ReplayBuffer.nbytes()`` (every tensor of the frame storage and of the sampler), SB3's is
  the sum of ``nbytes`` of its numpy arrays (observations, next_observations unless
  ``optimize_memory_usage``, actions, rewards, dones, timeouts). Both allocate with
  ``zeros``, but only numpy's ``zeros`` is lazy (calloc'd pages): ``torch.zeros`` fills
  its memory, so our buffer is resident as soon as it is built. The process RSS growth
  right after construction (imports loaded before the baseline) shows which is which.
* Confirmation with real memory: a fresh process per buffer records ``--frames`` real
  Breakout steps (random actions, through ``TaskSchedule``), then builds a buffer of
  ``--fill-capacity`` (default 100,000), adds ``capacity + 1000`` steps cycling through the
  recording so that every slot is written, and reports the RSS growth from just before the
  buffer was built, divided by the capacity. Ours also reports the bytes per *sampleable*
  transition (each episode spends 4 slots that start no transition: 3 padding frames and
  the final observation).

    python benchmarks/replay_memory.py
    python benchmarks/replay_memory.py --capacity 1000000 --fill-capacity 100000 --frames 3000

Issue target: <= 7.2 KB per transition (7,200 bytes), a 1M buffer under 7.5 GB.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OBS_SHAPE = (4, 84, 84)
KINDS = ("ours-uniform", "ours-prioritized", "sb3", "sb3-optimize_memory_usage")


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def machine_line() -> str:
    import torch

    return (f"{platform.platform()}, {platform.processor() or platform.machine()}, os.cpu_count()={os.cpu_count()}, "
            f"torch {torch.__version__}, torch threads {torch.get_num_threads()}, python {platform.python_version()}")


def make(kind: str, capacity: int):
    """The buffer, and a dict name -> bytes of each of its arrays."""
    if kind.startswith("ours"):
        import torch

        from replay import make_replay

        buf = make_replay(kind.split("-")[1], capacity, 1, OBS_SHAPE, torch.uint8, 4, reward_clip=1.0,
                          device="cpu", seed=0)
        parts = {f"storage.{k}": v.numel() * v.element_size() for k, v in buf.storage.tensors().items()}
        parts["storage constants"] = buf.storage.nbytes() - sum(parts.values())
        if kind.endswith("prioritized"):
            parts["sampler (sum tree + max)"] = buf.sampler.nbytes()
        assert sum(parts.values()) == buf.nbytes()
        return buf, parts
    import numpy as np
    from gymnasium import spaces
    from stable_baselines3.common.buffers import ReplayBuffer

    optimize = kind.endswith("optimize_memory_usage")
    buf = ReplayBuffer(capacity, spaces.Box(0, 255, OBS_SHAPE, np.uint8), spaces.Discrete(18), device="cpu",
                       n_envs=1, optimize_memory_usage=optimize, handle_timeout_termination=not optimize)
    parts = {k: v.nbytes for k, v in vars(buf).items() if isinstance(v, np.ndarray)}
    return buf, parts


def record(frames: int) -> list[tuple]:
    """`frames` real Breakout steps with random actions, as (obs, action, reward, next_obs,
    terminated, truncated, valid) CPU tensors of one env."""
    import torch

    from envs import TaskSchedule

    sched = TaskSchedule(["atari:Breakout"], steps_per_visit=frames + 1, cycles=1, num_envs=1, seed=0)
    gen = torch.Generator().manual_seed(0)
    obs = sched.reset()
    out = []
    for _ in range(frames):
        a = torch.randint(0, 18, (1,), generator=gen)
        res = sched.step(a)
        out.append((obs, a, res.rewards, res.next_obs, res.terminated, res.truncated, res.valid))
        obs = res.obs
    sched.close()
    return out


def child(kind: str, capacity: int, fill: bool, frames: int) -> dict:
    steps = record(frames) if fill else []
    import torch  # noqa: F401  (imports are not the buffer's memory: load them before the baseline)

    import replay  # noqa: F401
    if kind.startswith("sb3"):
        import stable_baselines3.common.buffers  # noqa: F401
    before = rss_bytes()
    t0 = time.perf_counter()
    note = ""
    try:
        buf, parts = make(kind, capacity)
    except MemoryError as err:  # numpy refuses what the kernel's overcommit heuristic refuses
        if fill:
            raise
        small = 10_000
        buf, parts = make(kind, small)
        parts = {k: v * capacity // small for k, v in parts.items()}
        note = f"could not allocate ({type(err).__name__}: {err}); sizes scaled from capacity {small:,}"
    built = rss_bytes()
    out = {"kind": kind, "capacity": capacity, "nbytes": sum(parts.values()), "parts": parts,
           "rss_after_build": built - before, "build_s": time.perf_counter() - t0, "note": note}
    if fill:
        t0 = time.perf_counter()
        n = capacity + 1000
        if kind.startswith("ours"):
            for i in range(n):
                obs, a, r, nxt, term, trunc, valid = steps[i % len(steps)]
                buf.add(obs, a, r, nxt, term, trunc, valid, 0)
            out["sampleable"] = len(buf)
        else:
            import numpy as np

            for i in range(n):
                obs, a, r, nxt, term, trunc, valid = steps[i % len(steps)]
                buf.add(obs.numpy(), nxt.numpy(), a.numpy(), r.numpy(), term.numpy(),
                        [{"TimeLimit.truncated": bool(trunc[0])}])
            out["sampleable"] = buf.size() - (1 if buf.optimize_memory_usage else 0)
            _ = np
        out["fill_s"] = time.perf_counter() - t0
        out["rss_after_fill"] = rss_bytes() - before
    return out


def run_child(kind: str, capacity: int, fill: bool, frames: int) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--child-capacity", str(capacity), "--frames", str(frames)]
    if fill:
        cmd.append("--child-fill")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child {kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capacity", type=int, default=1_000_000, help="capacity of the allocated-size table")
    parser.add_argument("--fill-capacity", type=int, default=100_000, help="capacity of the RSS check (0: skip)")
    parser.add_argument("--frames", type=int, default=3000, help="real Breakout steps recorded for the fill")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, from: {', '.join(KINDS)}")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-capacity", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--child-fill", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.child:
        print(json.dumps(child(args.child, args.child_capacity, args.child_fill, args.frames)))
        return

    kinds = args.kinds.split(",")
    alloc = {k: run_child(k, args.capacity, False, args.frames) for k in kinds}
    filled = {k: run_child(k, args.fill_capacity, True, args.frames) for k in kinds} if args.fill_capacity else {}

    print()
    print(f"command: `python benchmarks/replay_memory.py {' '.join(sys.argv[1:])}`".replace("  ", " "))
    print(f"machine: {machine_line()}")
    print(f"date: {datetime.datetime.now().isoformat(timespec='seconds')}")
    print()
    print(f"### Allocated size, capacity {args.capacity:,}, obs {OBS_SHAPE} uint8")
    print()
    print("| buffer | bytes / transition | total GB (1e9) | total GiB | RSS right after construction |")
    print("|---|---|---|---|---|")
    for k, r in alloc.items():
        per = r["nbytes"] / r["capacity"]
        rss = "not allocated (see note)" if r["note"] else f"{r['rss_after_build'] / 1e6:.1f} MB"
        print(f"| {k} | {per:,.1f} | {r['nbytes'] / 1e9:.3f} | {r['nbytes'] / 2**30:.3f} | {rss} |")
    for k, r in alloc.items():
        if r["note"]:
            print(f"\nnote, {k}: {r['note']}")
    print()
    print("Breakdown (bytes per transition):")
    print()
    print("| buffer | arrays |")
    print("|---|---|")
    for k, r in alloc.items():
        parts = ", ".join(f"{n} {v / r['capacity']:.2f}" for n, v in r["parts"].items())
        print(f"| {k} | {parts} |")
    if filled:
        print()
        print(f"### RSS check: capacity {args.fill_capacity:,} filled with real Breakout frames "
              f"({args.fill_capacity + 1000:,} adds cycling {args.frames:,} recorded steps)")
        print()
        print("| buffer | nbytes / capacity | RSS growth / capacity | RSS growth / nbytes | sampleable transitions "
              "| nbytes / sampleable | fill time s |")
        print("|---|---|---|---|---|---|---|")
        for k, r in filled.items():
            cap = r["capacity"]
            print(f"| {k} | {r['nbytes'] / cap:,.1f} | {r['rss_after_fill'] / cap:,.1f} | "
                  f"{r['rss_after_fill'] / r['nbytes']:.3f} | {r['sampleable']:,} | "
                  f"{r['nbytes'] / max(r['sampleable'], 1):,.1f} | {r['fill_s']:.1f} |")
    print()
    print("issue target: <= 7,200 bytes per transition; 1M buffer < 7.5 GB")


if __name__ == "__main__":
    main()
