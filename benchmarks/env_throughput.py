"""Env collection speed: TaskSchedule versus raw ale-py ``AtariVectorEnv``, same settings.

Both step ``--num-envs`` copies of one Atari game with random actions: the raw env gets
numpy actions, the schedule gets torch tensors (as an agent would hand them) and returns
device tensors, episode bookkeeping and flags. Timed blocks alternate between the two
(and which one goes first alternates too) so that a noisy shared machine hurts both
alike; the median over repeats is reported. Target: schedule / raw >= 0.85.

On a busy machine the emulator's speed swings by more than the schedule's cost, so the
benchmark also measures that cost directly: the schedule's per-step time with the
emulator replaced by a stub that returns copies of one recorded step, minus the stub's
own time.

    python benchmarks/env_throughput.py --steps 2000

Prints a markdown row to paste into ``benchmarks/RESULTS.md``.
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

import numpy as np
import torch
from ale_py.vector_env import AtariVectorEnv

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from envs import AtariOptions, TaskSchedule, parse_task  # noqa: E402


def make_raw_env(game: str, num_envs: int, options: AtariOptions) -> AtariVectorEnv:
    """ale-py's vector env built directly, with the settings the schedule uses."""
    return AtariVectorEnv(
        parse_task(f"atari:{game}").target,
        num_envs,
        num_threads=options.num_threads,
        max_num_frames_per_episode=options.max_num_frames_per_episode,
        repeat_action_probability=options.repeat_action_probability,
        full_action_space=options.full_action_space,
        img_height=options.img_height,
        img_width=options.img_width,
        grayscale=options.grayscale,
        stack_num=options.stack_num,
        frameskip=options.frameskip,
        noop_max=options.noop_max,
        episodic_life=options.episodic_life,
        reward_clipping=options.reward_clipping,
        use_fire_reset=options.use_fire_reset,
    )


def time_raw(env: AtariVectorEnv, steps: int, rng: np.random.Generator) -> float:
    """Env steps per second of ``steps`` vector steps with random numpy actions."""
    n = env.num_envs
    start = time.perf_counter()
    for _ in range(steps):
        env.step(rng.integers(0, 18, size=n))
    return steps * n / (time.perf_counter() - start)


def time_schedule(schedule: TaskSchedule, steps: int, gen: torch.Generator) -> float:
    """Env steps per second of ``steps`` schedule steps with random torch actions."""
    n, device = schedule.num_envs, schedule.device
    start = time.perf_counter()
    for _ in range(steps):
        actions = torch.randint(0, schedule.num_actions, (n,), generator=gen).to(device)
        schedule.step(actions)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * n / (time.perf_counter() - start)


class RecordedStep:
    """Stands in for the emulator: returns fresh copies of one recorded vector step."""

    def __init__(self, env, actions: np.ndarray) -> None:
        self.outputs = env.step(actions)[:4]

    def step(self, actions: np.ndarray):
        """Copies of the recorded arrays (the real env also returns fresh arrays)."""
        return (*(a.copy() for a in self.outputs), {})


def schedule_overhead_us(schedule: TaskSchedule, steps: int, gen: torch.Generator) -> float:
    """Microseconds the schedule adds per vector step, the emulator's own time excluded."""
    n, task = schedule.num_envs, schedule.task_index
    real_env = schedule._envs[task]  # benchmark-only peek at the schedule's env list
    stub = RecordedStep(real_env, np.zeros(n, dtype=np.int64))
    schedule._envs[task] = stub
    try:
        actions = [torch.randint(0, schedule.num_actions, (n,), generator=gen) for _ in range(steps)]
        start = time.perf_counter()
        for a in actions:
            schedule.step(a)
        with_schedule = time.perf_counter() - start
        host = [a.numpy() for a in actions]
        start = time.perf_counter()
        for a in host:
            stub.step(a)
        stub_only = time.perf_counter() - start
    finally:
        schedule._envs[task] = real_env
    return (with_schedule - stub_only) / steps * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="vector steps per timed block")
    parser.add_argument("--repeats", type=int, default=5, help="timed blocks of each kind")
    parser.add_argument("--num-envs", type=int, default=8, help="parallel emulators")
    parser.add_argument("--game", default="Breakout", help="ALE v5 game name")
    parser.add_argument("--num-threads", type=int, default=0, help="ale-py worker threads (0 = default)")
    parser.add_argument("--device", default="cpu", help="where the schedule puts tensors")
    args = parser.parse_args()
    torch.set_num_threads(1)

    options = AtariOptions(num_threads=args.num_threads)
    raw = make_raw_env(args.game, args.num_envs, options)
    budget = args.steps * args.num_envs * (args.repeats + 5)  # warm-up, repeats, overhead runs
    schedule = TaskSchedule([f"atari:{args.game}"], steps_per_visit=budget, cycles=1,
                            num_envs=args.num_envs, device=args.device, seed=0, atari=options)
    rng, gen = np.random.default_rng(0), torch.Generator().manual_seed(0)
    raw.reset(seed=0)
    schedule.reset()
    warmup = max(1, args.steps // 4)
    time_raw(raw, warmup, rng)
    time_schedule(schedule, warmup, gen)

    raw_sps: list[float] = []
    sched_sps: list[float] = []
    for r in range(args.repeats):
        if r % 2 == 0:
            raw_sps.append(time_raw(raw, args.steps, rng))
            sched_sps.append(time_schedule(schedule, args.steps, gen))
        else:
            sched_sps.append(time_schedule(schedule, args.steps, gen))
            raw_sps.append(time_raw(raw, args.steps, rng))
        print(f"repeat {r}: raw {raw_sps[-1]:,.0f} steps/s, schedule {sched_sps[-1]:,.0f} steps/s")
    overhead = min(schedule_overhead_us(schedule, args.steps, gen) for _ in range(3))
    raw.close()
    schedule.close()

    raw_med, sched_med = statistics.median(raw_sps), statistics.median(sched_sps)
    ratios = [s / r for s, r in zip(sched_sps, raw_sps)]
    ratio = sched_med / raw_med
    print(f"raw AtariVectorEnv: {raw_med:,.0f} env steps/s (median of {args.repeats})")
    print(f"TaskSchedule:       {sched_med:,.0f} env steps/s (median of {args.repeats})")
    print(f"ratio schedule/raw: {ratio:.3f} (per-repeat min {min(ratios):.3f}, max {max(ratios):.3f}; target >= 0.85)")
    raw_step_us = args.num_envs / raw_med * 1e6
    print(f"schedule overhead:  {overhead:.1f} us per vector step, emulator excluded "
          f"({overhead / raw_step_us:.1%} of a raw vector step of {raw_step_us:.0f} us)")

    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}"
    command = "python benchmarks/env_throughput.py " + " ".join(sys.argv[1:])
    date = datetime.date.today().isoformat()
    print()
    print("| date | machine | command | raw env steps/s | schedule env steps/s | ratio | overhead/step |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {date} | {machine} | `{command.strip()}` | {raw_med:,.0f} | {sched_med:,.0f} "
          f"| {ratio:.2f} | {overhead:.0f} us |")


if __name__ == "__main__":
    main()
