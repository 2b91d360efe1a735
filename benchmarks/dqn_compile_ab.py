"""DQN's update with ``--dqn.compile`` (the loss' forward + backward through ``CompiledGrad``)
against the eager update, in one process.

Two agents with the same initial weights take turns: blocks of ``--block`` updates each, the
order alternating every round, on the same pre-drawn batches (uint8 frames for the CNN
encoders); the median of the per-round ratios is robust to the host's drift. Compilation
happens in an untimed first call and is reported on its own. After the rounds the two agents'
parameters are compared (they took the same updates).

    python benchmarks/dqn_compile_ab.py                            # Nature CNN, Breakout's shapes
    python benchmarks/dqn_compile_ab.py --encoder mlp --obs-shape 4 --actions 2 --hidden 256,256
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoder", default="nature_cnn", help="mlp, nature_cnn, impala_cnn")
    parser.add_argument("--obs-shape", default="4,84,84", help="comma-separated observation shape")
    parser.add_argument("--actions", type=int, default=4)
    parser.add_argument("--hidden", default="256,256", help="MLP widths")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--block", type=int, default=50, help="updates per timed block")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of one block per agent")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import torch

    from agents.dqn import DQN, DQNConfig
    from speed_common import machine_line

    torch.set_num_threads(args.threads)
    shape = tuple(int(x) for x in args.obs_shape.split(","))
    image = len(shape) == 3
    cfg = DQNConfig(encoder=args.encoder, hidden=tuple(int(x) for x in args.hidden.split(",")),
                    batch_size=args.batch_size, target_update_interval=10**9)
    masks = torch.ones(1, args.actions, dtype=torch.bool)
    agents = {}
    for name, compile in (("eager", False), ("compiled", True)):
        torch.manual_seed(0)
        agents[name] = DQN(dataclasses.replace(cfg, compile=compile), shape, args.actions, masks, seed=0)

    g = torch.Generator().manual_seed(0)

    def frames(n: int) -> torch.Tensor:
        if image:
            return torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g)
        return torch.randn(n, *shape, generator=g)

    b = args.batch_size
    batches = [SimpleNamespace(obs=frames(b), next_obs=frames(b), actions=torch.randint(0, args.actions, (b,), generator=g),
                               rewards=torch.randn(b, generator=g), discounts=torch.full((b,), 0.99),
                               weights=torch.ones(b), tasks=torch.zeros(b, dtype=torch.long))
               for _ in range(8)]

    print(machine_line(args.threads))
    print(f"encoder {args.encoder}, obs {shape}, batch {b}, blocks of {args.block} updates, {args.rounds} rounds")
    for name, agent in agents.items():  # first call: compilation for the compiled agent; caches for both
        t = time.perf_counter()
        agent.update(batches[0])
        print(f"{name}: first update {time.perf_counter() - t:.2f} s", flush=True)

    ms = {name: [] for name in agents}
    for r in range(args.rounds):
        order = list(agents) if r % 2 == 0 else list(agents)[::-1]
        for name in order:
            agent = agents[name]
            t = time.perf_counter()
            for i in range(args.block):
                agent.update(batches[(i + 1) % len(batches)])
            ms[name].append(1e3 * (time.perf_counter() - t) / args.block)
        print(f"round {r}: eager {ms['eager'][-1]:.3f} ms, compiled {ms['compiled'][-1]:.3f} ms per update, "
              f"eager/compiled {ms['eager'][-1] / ms['compiled'][-1]:.3f}", flush=True)
    ratios = [e / c for e, c in zip(ms["eager"], ms["compiled"])]
    print(f"ms per update, median: eager {statistics.median(ms['eager']):.3f}, "
          f"compiled {statistics.median(ms['compiled']):.3f}; eager/compiled per round "
          f"{', '.join(f'{x:.3f}' for x in ratios)}; median {statistics.median(ratios):.3f} "
          f"({min(ratios):.3f}-{max(ratios):.3f})")
    diff = max(float((p - q).detach().abs().max()) for p, q in zip(agents["eager"].q.parameters(),
                                                          agents["compiled"].q.parameters()))
    print(f"largest parameter difference after {1 + args.rounds * args.block} updates: {diff:.2e}")


if __name__ == "__main__":
    main()
