"""How close the DQN update on Atari runs to this CPU's arithmetic peak.

The end-to-end comparison with SB3 (`dqn_speed.py`) is bounded by the gradient step, which
both libraries spend in the same Nature-CNN convolutions and matrix products. This script
counts the floating-point work of one update of ours (Double DQN, batch 32, 18 actions:
target forward on s', online forward on s' for the argmax, online forward + backward on s)
and of SB3's (the same without the online forward on s'), times the update ops with
torch.profiler, and compares the achieved rate of the convolution and linear kernels with
the rate of a large square matrix product on the same threads (the practical peak).

    python benchmarks/dqn_update_roofline.py --threads 2 [--bf16]

``--bf16`` also times the update under ``torch.autocast("cpu", torch.bfloat16)`` (this CPU has
AVX512-BF16), interleaved with fp32 updates.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.dqn import DQN, DQNConfig  # noqa: E402
from speed_common import machine_line  # noqa: E402

B, A = 32, 18
# multiply-accumulates per sample of the Nature CNN on 4x84x84 (out_h*out_w*out_c*k*k*in_c)
LAYERS = {"conv1": 20 * 20 * 32 * 8 * 8 * 4, "conv2": 9 * 9 * 64 * 4 * 4 * 32,
          "conv3": 7 * 7 * 64 * 3 * 3 * 64, "fc1": 3136 * 512, "fc2": 512 * A}


def update_flops(double: bool) -> float:
    """FLOPs (2 per multiply-accumulate) of one update."""
    fwd = sum(LAYERS.values())
    # backward: weight gradients of every layer + input gradients of all but conv1
    bwd = 2 * fwd - LAYERS["conv1"]
    passes = fwd * (3 if double else 2) + bwd  # target fwd, (online fwd on s'), online fwd + bwd
    return 2.0 * B * passes


def matmul_peak(n: int = 2048, reps: int = 10) -> float:
    """GFLOP/s of an n x n float32 matrix product (median of reps)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--updates", type=int, default=30)
    parser.add_argument("--bf16", action="store_true", help="also time the update under bf16 autocast")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    agent = DQN(DQNConfig(), (4, 84, 84), A, torch.ones(1, A, dtype=torch.bool), seed=0)
    g = torch.Generator().manual_seed(0)
    batch = SimpleNamespace(
        obs=torch.randint(0, 256, (B, 4, 84, 84), dtype=torch.uint8, generator=g).float() / 255,
        next_obs=torch.randint(0, 256, (B, 4, 84, 84), dtype=torch.uint8, generator=g).float() / 255,
        actions=torch.randint(0, A, (B,), generator=g), rewards=torch.randn(B, generator=g),
        discounts=torch.full((B,), 0.99), weights=torch.ones(B), tasks=torch.zeros(B, dtype=torch.long),
        indices=torch.arange(B))
    for _ in range(5):
        agent.update(batch)
    times = []
    for _ in range(args.updates):
        t = time.perf_counter()
        agent.update(batch)
        times.append(time.perf_counter() - t)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(10):
            agent.update(batch)
    compute = {"aten::mkldnn_convolution", "aten::convolution_backward", "aten::mm", "aten::addmm"}
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 10 / 1e6
    kernels = sum(e.self_cpu_time_total for e in events if e.key in compute) / 10 / 1e6
    peak = matmul_peak()
    ours, sb3 = update_flops(True), update_flops(False)
    step = statistics.median(times)
    print(f"machine: {machine_line(args.threads)}")
    print()
    print("| quantity | value |")
    print("|---|---|")
    print(f"| update, ours (Double DQN), median of {args.updates} | {step * 1e3:.2f} ms |")
    print(f"| work per update: ours / SB3's (no Double) | {ours / 1e9:.2f} / {sb3 / 1e9:.2f} GFLOP |")
    print(f"| convolution + linear kernels (profiler, self time) | {kernels * 1e3:.2f} ms "
          f"({kernels / total:.0%} of the profiled update) |")
    print(f"| achieved rate in those kernels | {ours / kernels / 1e9:.0f} GFLOP/s |")
    print(f"| {2048}x{2048} matrix product on the same threads | {peak:.0f} GFLOP/s |")
    print(f"| kernels' rate / matrix-product rate | {ours / kernels / 1e9 / peak:.2f} |")
    print(f"| SB3's update at that same rate, kernels only (lower bound) | {sb3 / (ours / kernels) * 1e3:.2f} ms |")
    if args.bf16:
        fp32, bf16 = [], []
        for _ in range(args.updates):  # interleaved, one update each
            for out, on in ((fp32, False), (bf16, True)):
                t = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=on):
                    agent.update(batch)
                out.append(time.perf_counter() - t)
        print(f"| update with bf16 autocast / fp32, interleaved medians | {statistics.median(bf16) * 1e3:.2f} / "
              f"{statistics.median(fp32) * 1e3:.2f} ms |")


if __name__ == "__main__":
    main()
