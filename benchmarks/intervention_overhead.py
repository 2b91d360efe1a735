"""Cost of plasticity interventions on a Nature-CNN DQN update step (CPU).

The update is our real one: ``agents.dqn.DQN.update`` (Double DQN, Huber, grad clipping,
Adam, the interventions' ``after_step`` hooks) on a fake replay ``Batch`` of 32 transitions,
obs 4x84x84 uint8, 18 actions (the same batch every step, for every variant). Variants, all
built from the same seed:

* ``base``: ReLU network, no intervention.
* ``swr``: base + SWR (``swr`` with its defaults: lam=1e-3, every update), attached as
  ``runner.components._attach_interventions`` does (``registry.build`` on the learnable's
  module, optimizer and targets, appended to ``learnable.interventions``).
* ``adalin``: ``DQNConfig(activation="adalin")`` (a PReLU-like AdaLin on every hidden layer).
* ``redo``: base + ReDo ``tau=0.1, every=1000``; its check scores the batch it is given
  (the 32 observations of the update).

How: each comparison alternates small blocks of ``--block`` updates of the base and of
the variant (which one goes first alternates too) for ``--rounds`` rounds, so that the
shared machine's load hits both alike; a round's ratio is variant time / base time, and the
table shows the median, the spread and the ratio of the summed times. Because SWR's and
ReDo's own work can be timed alone, they are also measured directly: SWR's ``rescale()``
(interleaved with update blocks) as a fraction of one update, and ReDo's ``check()``
divided by ``every`` updates. ``--redo-direct-updates`` (>= 1000) adds a direct interleaved
ratio over that many updates of each, so at least one real check falls inside.

    python benchmarks/intervention_overhead.py --threads 2,1
    python benchmarks/intervention_overhead.py --threads 2 --rounds 30 --block 4 --redo-direct-updates 1000

Issue targets: SWR <= 5% added; AdaLin <= 1.25x; ReDo (amortised) <= 2%.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.dqn import DQN, DQNConfig  # noqa: E402
from replay import Batch  # noqa: E402
from plasticity import registry  # noqa: E402

NUM_ACTIONS, OBS = 18, (4, 84, 84)


def machine_line(threads: str) -> str:
    return (f"{platform.platform()}, {platform.processor() or platform.machine()}, os.cpu_count()={os.cpu_count()}, "
            f"torch {torch.__version__}, torch threads {threads}, python {platform.python_version()}")


def fake_batch(batch_size: int, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        obs=torch.randint(0, 256, (batch_size, *OBS), dtype=torch.uint8, generator=g),
        actions=torch.randint(0, NUM_ACTIONS, (batch_size,), generator=g),
        rewards=torch.randn(batch_size, generator=g).clamp(-1, 1),
        next_obs=torch.randint(0, 256, (batch_size, *OBS), dtype=torch.uint8, generator=g),
        discounts=torch.full((batch_size,), 0.99),
        weights=torch.ones(batch_size),
        indices=torch.arange(batch_size),
        tasks=torch.zeros(batch_size, dtype=torch.long),
    )


def make_agent(activation: str = "relu", plasticity: str | None = None, seed: int = 0) -> DQN:
    torch.manual_seed(seed)
    masks = torch.ones(1, NUM_ACTIONS, dtype=torch.bool)
    agent = DQN(DQNConfig(activation=activation), OBS, NUM_ACTIONS, masks, "cpu", seed)
    if plasticity:  # as runner.components._attach_interventions
        spec = registry.parse(plasticity)
        for learnable in agent.learnables.values():
            learnable.interventions.append(
                registry.build(spec, learnable.module, learnable.optimizer, learnable.targets))
    return agent


def time_updates(agent: DQN, batch: Batch, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        agent.update(batch)
    return time.perf_counter() - t


def interleave(fa, fb, rounds: int) -> tuple[list[float], list[float]]:
    """Alternate fa and fb (order swapped every round); returns their times per round."""
    ta, tb = [], []
    for r in range(rounds):
        if r % 2 == 0:
            ta.append(fa())
            tb.append(fb())
        else:
            tb.append(fb())
            ta.append(fa())
    return ta, tb


def ratio_row(label: str, variant: list[float], base: list[float], target: str) -> str:
    ratios = [v / b for v, b in zip(variant, base)]
    qs = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
    return (f"| {label} | {statistics.median(ratios):.3f} | {qs[0]:.3f} – {qs[2]:.3f} | "
            f"{min(ratios):.3f} – {max(ratios):.3f} | {sum(variant) / sum(base):.3f} | "
            f"{statistics.median(base) * 1e3 / len_block[0]:.1f} | {target} |")


len_block = [1]


def run(threads: int, args) -> list[str]:
    torch.set_num_threads(threads)
    batch = fake_batch(32)
    base = make_agent()
    swr = make_agent(plasticity="swr")
    adalin = make_agent(activation="adalin")
    redo = make_agent(plasticity=f"redo:tau={args.redo_tau},every={args.redo_every}")
    agents = {"base": base, "swr": swr, "adalin": adalin, "redo": redo}
    for a in agents.values():  # warm-up (allocator, oneDNN primitive caches)
        time_updates(a, batch, 3)
    len_block[0] = args.block
    block = lambda a: (lambda: time_updates(a, batch, args.block))  # noqa: E731

    rows = []
    b, v = interleave(block(base), block(swr), args.rounds)
    rows.append(ratio_row("SWR / base (update time)", v, b, "<= 1.05"))
    b, v = interleave(block(base), block(adalin), args.rounds)
    rows.append(ratio_row("AdaLin-ReLU / ReLU (update time)", v, b, "<= 1.25"))
    print(f"[threads {threads}] interleaved ratios done", flush=True)

    # direct costs: SWR's rescale and ReDo's check, each interleaved with blocks of base updates
    sw = swr.learnables["q"].interventions[0]
    rd = redo.learnables["q"].interventions[0]
    upd, resc, chk = [], [], []
    for r in range(args.direct_rounds):
        upd.append(time_updates(base, batch, args.block) / args.block)
        t = time.perf_counter()
        for _ in range(args.block):
            sw.rescale()
        resc.append((time.perf_counter() - t) / args.block)
        t = time.perf_counter()
        rd.check(batch.obs)  # the inputs the agent hands it: the update's observations
        chk.append(time.perf_counter() - t)
    swr_frac = [s / u for s, u in zip(resc, upd)]
    redo_frac = [c / (args.redo_every * u) for c, u in zip(chk, upd)]
    u_med = statistics.median(upd)
    rows.append(f"| SWR rescale() alone / one update | {statistics.median(swr_frac):.4f} | | "
                f"{min(swr_frac):.4f} – {max(swr_frac):.4f} | | {u_med * 1e3:.1f} | <= 0.05 |")
    rows.append(f"| ReDo check() / ({args.redo_every} updates) | {statistics.median(redo_frac):.5f} | | "
                f"{min(redo_frac):.5f} – {max(redo_frac):.5f} | | {u_med * 1e3:.1f} | <= 0.02 "
                f"(one check = {statistics.median(chk) * 1e3:.1f} ms = {statistics.median(chk) / u_med:.2f} updates) |")

    if args.redo_direct_updates:
        n_blocks = -(-args.redo_direct_updates // args.redo_block)
        rd.updates = args.redo_every - args.redo_block * (n_blocks // 2)  # a check lands mid-run
        before = rd.recycled_total
        checks = [0]

        def redo_block() -> float:
            u = rd.updates
            t = time_updates(redo, batch, args.redo_block)
            checks[0] += (u + args.redo_block) // args.redo_every - u // args.redo_every
            return t

        b, v = interleave(lambda: time_updates(base, batch, args.redo_block), redo_block, n_blocks)
        ratio = sum(v) / sum(b)
        per = [x / y for x, y in zip(v, b)]
        rows.append(f"| ReDo / base, direct, {n_blocks * args.redo_block} updates each, {checks[0]} check(s) "
                    f"(recycled {rd.recycled_total - before}) | {statistics.median(per):.3f} | | "
                    f"{min(per):.3f} – {max(per):.3f} | {ratio:.3f} | {statistics.median(b) * 1e3 / args.redo_block:.1f}"
                    f" | <= 1.02 |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default="2,1", help="comma-separated torch thread counts")
    parser.add_argument("--rounds", type=int, default=20, help="interleaved rounds per comparison")
    parser.add_argument("--block", type=int, default=4, help="updates per timed block")
    parser.add_argument("--direct-rounds", type=int, default=8, help="rounds of the direct SWR/ReDo costs")
    parser.add_argument("--redo-tau", type=float, default=0.1)
    parser.add_argument("--redo-every", type=int, default=1000)
    parser.add_argument("--redo-direct-updates", type=int, default=0,
                        help="updates of each side in the direct ReDo ratio (0: skip; >= 1000 to hold a check)")
    parser.add_argument("--redo-block", type=int, default=50, help="updates per block of the direct ReDo ratio")
    args = parser.parse_args()

    results = {}
    for th in (int(t) for t in args.threads.split(",")):
        results[th] = run(th, args)
    print()
    print(f"command: `python benchmarks/intervention_overhead.py {' '.join(sys.argv[1:])}`".replace("  ", " "))
    print(f"machine: {machine_line(args.threads)}")
    print(f"date: {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"update: agents.dqn.DQN.update, Nature CNN, batch 32, obs 4x84x84 uint8, 18 actions, CPU; "
          f"{args.rounds} interleaved rounds of {args.block} updates per comparison")
    for th, rows in results.items():
        print()
        print(f"### torch threads = {th}")
        print()
        print("| comparison | median ratio | interquartile | min – max | ratio of sums | base ms/update | target |")
        print("|---|---|---|---|---|---|---|")
        for row in rows:
            print(row)


if __name__ == "__main__":
    main()
