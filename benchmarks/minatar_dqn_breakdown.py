"""Where one env step of DQN on MinAtar Breakout goes, ours against Stable-Baselines3's, in one
process: ``dqn_breakdown.py``'s interleaved per-piece timing (ours eager, ours with
``--dqn.compile``, SB3; act at ε = 0.01, env step, replay add, and once every 4 env steps
replay sample and update) with ``minatar_dqn.py``'s settings on both sides (1 env, the MinAtar
network, batch 32, one thread), both replays first filled with ``--fill`` random steps. Its
last lines bound the speed-up by the update alone (act, env step and replay add counted free).

    python benchmarks/minatar_dqn_breakdown.py --rounds 6 --steps 400

Prints markdown for ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys

from minatar_dqn import ROOT, make_sb3, ours_cmd


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, default=400, help="env steps per block")
    p.add_argument("--fill", type=int, default=5000, help="random steps stored before timing")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    from dqn_breakdown import breakdown

    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, load average "
          f"{os.getloadavg()[0]:.1f}, cpus {os.cpu_count()}")
    ns = argparse.Namespace(breakdown_steps=args.steps, breakdown_rounds=args.rounds, breakdown_fill=args.fill,
                            breakdown_compile=True)
    breakdown(ns, ours_argv=lambda _, run_dir: ours_cmd(run_dir, 100_000, args.seed)[2:],
              make_sb3=lambda _, learning_starts, total: make_sb3(args.seed, learning_starts))


if __name__ == "__main__":
    main()
