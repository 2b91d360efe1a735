"""Where one vector step of a batched MinAtar game goes, at one N: the game's step, the reset
of the envs that ended and the observation, timed apart, then the costliest operations.

The loop is ``minatar_throughput.py``'s torch side (random actions from a torch generator,
step, reset of the ended envs, observation), one thread. After ``--warmup`` vector steps,
``--rounds`` rounds of ``--steps`` vector steps each time the three parts with
``time.perf_counter`` (µs per vector step, every round printed, then the medians). Last, the
torch profiler over one more round: the ``--top`` operations by self time (eager), or, with
``--compile``, the compiled step's generated kernels (Inductor's kernel profile) beside the
operations that run outside them.

    python benchmarks/minatar_profile.py --game Seaquest --num-envs 4096
    python benchmarks/minatar_profile.py --game Seaquest --num-envs 4096 --compile

Prints markdown for ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("step", "reset", "observation")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--game", default="Seaquest")
    p.add_argument("--num-envs", type=int, default=4096)
    p.add_argument("--compile", action="store_true", help="compile the game's step (compile=True)")
    p.add_argument("--warmup", type=int, default=200, help="vector steps before timing")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=100, help="vector steps per round")
    p.add_argument("--top", type=int, default=15, help="rows of the profiler table")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch

    torch.set_num_threads(1)
    if args.compile:
        import torch._inductor.config as inductor_config

        inductor_config.cpp.enable_kernel_profile = True  # name each generated kernel in the profile
    from envs.minatar import game_class

    try:
        cls = game_class(args.game)
    except ValueError as err:  # names the bad game and the valid ones
        sys.exit(f"--game: {err}")
    n = args.num_envs
    game = cls(n, seed=0, compile=args.compile)
    gen = torch.Generator().manual_seed(1)

    def run(steps: int, spent: dict[str, float] | None = None) -> None:
        for _ in range(steps):
            t0 = time.perf_counter()
            _, done = game.step(torch.randint(0, 6, (n,), generator=gen))
            t1 = time.perf_counter()
            game.reset(done)
            t2 = time.perf_counter()
            game.observation()
            t3 = time.perf_counter()
            if spent is not None:
                for part, dt in zip(PARTS, (t1 - t0, t2 - t1, t3 - t2)):
                    spent[part] += dt

    run(args.warmup)
    rounds = []
    for _ in range(args.rounds):
        spent = dict.fromkeys(PARTS, 0.0)
        run(args.steps, spent)
        rounds.append({part: spent[part] / args.steps * 1e6 for part in PARTS})

    side = "compiled" if args.compile else "eager"
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, load average "
          f"{os.getloadavg()[0]:.1f}, cpus {os.cpu_count()}, torch {torch.__version__}, one thread")
    print()
    print(f"### {args.game}, N = {n}, {side}: µs per vector step ({args.rounds} rounds of {args.steps})")
    print()
    print("| part | " + " | ".join(f"round {r}" for r in range(args.rounds)) + " | median | share |")
    print("|---" * (args.rounds + 3) + "|")
    medians = {part: statistics.median(r[part] for r in rounds) for part in PARTS}
    total = sum(medians.values())
    for part in PARTS:
        print(f"| {part} | " + " | ".join(f"{r[part]:.0f}" for r in rounds)
              + f" | {medians[part]:.0f} | {medians[part] / total:.0%} |")
    print("| total | " + " | ".join(f"{sum(r.values()):.0f}" for r in rounds) + f" | {total:.0f} | |")
    print()
    print(f"env steps/s from the medians: {n / total * 1e6:,.0f}")
    print()

    from torch.profiler import profile

    with profile() as prof:
        run(args.steps)
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    if args.compile:  # the generated kernels and what runs outside the graph; not the graph's call itself
        rows = [e for e in rows if not e.key.startswith(("## Call CompiledFxGraph", "Torch-Compiled Region"))]
    print(f"Profiler, one more round of {args.steps} vector steps: the {args.top} costliest operations by self time")
    print()
    print("| operation | calls per vector step | µs per call | µs per vector step |")
    print("|---|---:|---:|---:|")
    for e in rows[: args.top]:
        name = e.key if len(e.key) <= 70 else e.key[:67] + "..."
        print(f"| `{name}` | {e.count / args.steps:.1f} | {e.self_cpu_time_total / e.count:.1f} | "
              f"{e.self_cpu_time_total / args.steps:.0f} |")


if __name__ == "__main__":
    main()
