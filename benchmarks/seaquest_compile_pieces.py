"""Seaquest's rules, piece by piece, eager against ``torch.compile``: where compiling loses.

After ``--warmup`` random vector steps of ``Seaquest(N)`` (one thread), each rule function of
``envs/minatar/seaquest_rules.py`` (and the enemies' compaction) runs on that state, as the
step calls it, three ways:

- ``eager, window``: eagerly on the enemy slots an eager step works on (the most enemies any
  env has, plus one);
- ``eager, 32``: eagerly on all 32 enemy slots, the work a compiled step does;
- ``compiled, 32``: through ``torch.compile(fn, dynamic=False)`` on all 32 slots.

Every round times every piece each way (``--calls`` calls each, in rotated order); the table
gives every round's µs per call, then the medians and the ratio compiled / eager on the same
32 slots.

    python benchmarks/seaquest_compile_pieces.py --num-envs 4096

Prints markdown for ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WAYS = ("eager, window", "eager, 32", "compiled, 32")


def pieces(game, slots_used: int) -> dict:
    """Each piece as (function, arguments) on the first ``slots_used`` enemy slots."""
    from envs.minatar import slots
    from envs.minatar.seaquest_rules import (
        ALIVE, IS_SUB, move_enemies, move_enemy_bullets, resolve_divers, resolve_player_bullets,
    )

    i8 = slots.DTYPE
    enemies = game._enemies[:, :slots_used].contiguous()
    bullets, divers = game._f_bullets, game._divers
    px, py = game.sub_x.to(i8), game.sub_y.to(i8)
    alive = enemies[ALIVE] == 1
    shots = alive & (enemies[IS_SUB] == 1)
    return {
        "player bullets": (resolve_player_bullets, (bullets, enemies)),
        "divers": (resolve_divers, (divers, px, py, game.diver_count.to(i8))),
        "enemies move": (move_enemies, (enemies, alive, bullets, px, py, game.move_speed)),
        "enemy bullets": (move_enemy_bullets, (game._e_bullets, enemies, shots, px, py)),
        "enemy compaction": (lambda e: slots.compact(e, ALIVE, count=True), (enemies,)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-envs", type=int, default=4096)
    p.add_argument("--warmup", type=int, default=300, help="random vector steps before timing")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--calls", type=int, default=30, help="calls per piece, way and round")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch

    torch.set_num_threads(1)
    from envs.minatar.seaquest import ENEMY_SLOTS, Seaquest

    n = args.num_envs
    game = Seaquest(n, seed=0)
    gen = torch.Generator().manual_seed(1)
    for _ in range(args.warmup):
        _, done = game.step(torch.randint(0, 6, (n,), generator=gen))
        game.reset(done)
    window = game._enemy_slots(spare=1)
    runs = {
        "eager, window": pieces(game, window),
        "eager, 32": pieces(game, ENEMY_SLOTS),
        "compiled, 32": {name: (torch.compile(fn, dynamic=False), a)
                         for name, (fn, a) in pieces(game, ENEMY_SLOTS).items()},
    }
    t0 = time.perf_counter()
    for way in WAYS:  # warm up; compiles the compiled pieces
        for fn, a in runs[way].values():
            for _ in range(3):
                fn(*a)
    compile_s = time.perf_counter() - t0
    names = list(runs["eager, 32"])
    times: dict[tuple[str, str], list[float]] = {(name, way): [] for name in names for way in WAYS}
    for r in range(args.rounds):
        order = WAYS[r % 3:] + WAYS[:r % 3]
        for name in names:
            for way in order:
                fn, a = runs[way][name]
                t = time.perf_counter()
                for _ in range(args.calls):
                    fn(*a)
                times[name, way].append((time.perf_counter() - t) / args.calls * 1e6)

    print(f"Seaquest, N = {n}, after {args.warmup} random vector steps: {window} enemy slots in the eager "
          f"window; {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; warm-up and "
          f"compilation {compile_s:.0f} s. µs per call, every round, then the medians.\n")
    print("| piece | " + " | ".join(WAYS) + " | compiled / eager, 32 slots |")
    print("|---|" + "---|" * (len(WAYS) + 1))
    totals = {way: 0.0 for way in WAYS}
    for name in names:
        cells, med = [], {}
        for way in WAYS:
            values = times[name, way]
            med[way] = statistics.median(values)
            totals[way] += med[way]
            cells.append(", ".join(f"{v:,.0f}" for v in values) + f" (**{med[way]:,.0f}**)")
        print(f"| {name} | " + " | ".join(cells) + f" | {med['compiled, 32'] / med['eager, 32']:.1f}× |")
    print("| sum of medians | " + " | ".join(f"{totals[w]:,.0f}" for w in WAYS)
          + f" | {totals['compiled, 32'] / totals['eager, 32']:.1f}× |")


if __name__ == "__main__":
    main()
