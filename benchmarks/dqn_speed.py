"""End-to-end DQN training speed on Atari Breakout: ours (``train.py``) versus Stable-Baselines3.

What is measured: environment steps per second (SPS) of the whole training loop (acting,
emulator, replay, one gradient step every 4 env steps) over the same window of every run:
env steps ``(L + W, L + W + M]``, i.e. after learning starts at ``L`` and after a warm-up of
``W`` steps (which holds the first update, hence ``--dqn.compile``'s compilation, for every
variant alike). Everything before the window (start-up, random-action phase, warm-up) and
after it (ours writes its final checkpoint) is excluded.

* ``ours``: ``python train.py --preset atari-cycle --env.games Breakout --env.cycles 1
  --env.num-envs 1 --replay.capacity 100000 --dqn.batch-size 32 --dqn.train-freq 4
  --dqn.learning-starts L --threads T --monitor.every 0 --checkpoint-every 0
  --eval.episodes 0 --no-progress --log-every 500 --env.steps-per-visit L+W+M --run-dir TMP``
  as a subprocess; SPS = M / (sum over the window's ``charts/SPS`` events of 500 / SPS),
  i.e. the intervals weighted by their duration.
* ``ours-compile``: the same with ``--dqn.compile`` (the loss' forward and backward is one
  graph compiled by Inductor, ``agents/compile/``, as ``--sac.compile``). Compilation happens
  at the first update, at step L, inside the excluded warm-up; its cost is reported
  separately (the warm-up interval's extra seconds), and the slowest 500-step interval of the
  window beside the median: a compilation inside the window would show there as a stall.
* ``sb3``: Stable-Baselines3's DQN (``CnnPolicy`` = Nature CNN, buffer 100k, batch 32,
  train_freq 4, gradient_steps 1, lr 1e-4, target_update_interval 1000, learning_starts L,
  exploration_final_eps 0.01 as ours, ``optimize_memory_usage=False``, device cpu,
  ``torch.set_num_threads(T)``) on ``make_atari_env("ALE/Breakout-v5", n_envs=1,
  env_kwargs=dict(frameskip=1, repeat_action_probability=0.25, full_action_space=True))``
  + ``VecFrameStack(4)``, in a subprocess, timed by a callback at env steps L+W and L+W+M.

Runs are interleaved (repeat r runs every variant, the order rotated by r) so that the
shared machine's load hits all variants alike; the table gives every repeat's ratio.

    python benchmarks/dqn_speed.py                       # ours, ours-compile, sb3
    python benchmarks/dqn_speed.py --monitor             # monitor on (default every) vs off
    python benchmarks/dqn_speed.py --profile             # where ours spends its time (vs SB3)

``--monitor`` compares ours with ``--monitor.every`` = MonitorConfig's default (2000 gradient
steps, batch 256) against ``--monitor.every 0``, and also measures the cost of one
measurement (``Monitoring.after_update`` at a measuring update: replay sample of 256,
``Monitor.measure``, Q metrics, TensorBoard writes, a histogram every 10th time) in
process, interleaved with the cost of the training it is amortised over.

``--profile`` runs ours under cProfile and times each piece of both loops in one process,
interleaved (act on batch 1, emulator step, replay add, replay sample, gradient step, and
inside ours' gradient step the three forward passes, backward, clipping and Adam).
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from speed_common import interleaved, learn_timed, machine_line, profile_train_py, run_sb3_child, sps_events, window

ROOT = Path(__file__).resolve().parent.parent
LOG_EVERY = 500


# ----------------------------------------------------------------------------- ours (train.py)
def ours_argv(args, run_dir: str, extra: list[str] = ()) -> list[str]:
    _, end = window(args)
    return ["--preset", "atari-cycle", "--env.games", "Breakout", "--env.cycles", "1", "--env.num-envs", "1",
            "--env.steps-per-visit", str(end), "--replay.capacity", str(args.capacity),
            "--dqn.batch-size", "32", "--dqn.train-freq", "4", "--dqn.learning-starts", str(args.learning_starts),
            "--threads", str(args.threads), "--monitor.every", "0", "--checkpoint-every", "0",
            "--eval.episodes", "0", "--no-progress", "--log-every", str(LOG_EVERY), "--seed", str(args.seed),
            "--run-dir", run_dir, *extra]


def run_ours(args, extra: list[str], env: dict | None = None) -> dict:
    start, end = window(args)
    tmp = tempfile.mkdtemp(prefix="dqn_speed_")
    run_dir = os.path.join(tmp, "run")
    cmd = [sys.executable, "train.py", *ours_argv(args, run_dir, extra)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - t0
    try:
        if proc.returncode != 0:
            raise RuntimeError(f"train.py failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        events = sps_events(run_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    inside = [(s, v) for s, v in events if start < s <= end]
    steps = sum(LOG_EVERY for _ in inside)
    if steps != args.measure_steps:
        raise RuntimeError(f"expected {args.measure_steps} window steps from SPS events, got {steps}: {events}")
    seconds = sum(LOG_EVERY / v for _, v in inside)
    # time of the warm-up window (holds the first update, and --dqn.compile's compilation)
    warm = sum(LOG_EVERY / v for s, v in events if args.learning_starts < s <= start)
    return {"sps": steps / seconds, "seconds": seconds, "warmup_s": warm, "wall_s": wall,
            "slowest": min(v for _, v in inside), "intervals": [round(v, 1) for _, v in inside]}


# ----------------------------------------------------------------------------- SB3
def make_sb3(args, learning_starts: int, total: int):
    import ale_py
    import gymnasium as gym
    from stable_baselines3 import DQN
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    env = make_atari_env("ALE/Breakout-v5", n_envs=1, seed=args.seed,
                         env_kwargs=dict(frameskip=1, repeat_action_probability=0.25, full_action_space=True))
    env = VecFrameStack(env, n_stack=4)
    model = DQN("CnnPolicy", env, learning_rate=1e-4, buffer_size=args.capacity, learning_starts=learning_starts,
                batch_size=32, train_freq=4, gradient_steps=1, target_update_interval=1000,
                exploration_fraction=0.1, exploration_final_eps=0.01, optimize_memory_usage=False,
                device="cpu", seed=args.seed, verbose=0)
    return model, env


def child_sb3(args) -> None:
    """Runs inside the subprocess: SB3 DQN timed by a callback; prints one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    _, end = window(args)
    model, _ = make_sb3(args, args.learning_starts, end)
    learn_timed(model, args)


def run_sb3(args) -> dict:
    return run_sb3_child(__file__, args, None)


# ----------------------------------------------------------------------------- comparisons
VARIANTS = {
    "ours": lambda a: run_ours(a, []),
    "ours-compile": lambda a: run_ours(a, ["--dqn.compile"]),
    "ours-nodouble": lambda a: run_ours(a, ["--dqn.no-double"]),
    "sb3": run_sb3,
    "ours-monitor": lambda a: run_ours(a, ["--monitor.every", str(a.monitor_every)]),
}


def ratio_rows(results: dict[str, list[dict]], pairs: list[tuple[str, str]]) -> list[str]:
    rows = []
    for a, b in pairs:
        ratios = [x["sps"] / y["sps"] for x, y in zip(results[a], results[b])]
        total = sum(r["seconds"] for r in results[b]) / sum(r["seconds"] for r in results[a])
        rows.append(f"| {a} / {b} (SPS) | {statistics.median(ratios):.3f} | {total:.3f} | "
                    + ", ".join(f"{x:.3f}" for x in ratios) + " |")
    return rows


def print_header(args, title: str) -> None:
    print()
    print(f"## {title}")
    print()
    print(f"command: `python benchmarks/dqn_speed.py {' '.join(sys.argv[1:])}`".replace("  ", " "))
    print(f"machine: {machine_line(args.threads)}")
    print(f"date: {datetime.datetime.now().isoformat(timespec='seconds')}")
    start, end = window(args)
    print(f"window: env steps ({start}, {end}] (learning starts {args.learning_starts}, warm-up {args.warmup_steps}); "
          f"repeats {args.repeats}, interleaved")
    print()


def speed(args) -> None:
    names = args.variants.split(",")
    results = interleaved(args, names, VARIANTS)
    print_header(args, "DQN training speed, Breakout, env steps/s after learning starts")
    print("| variant | SPS per repeat | median SPS | warm-up (compile) s | slowest 500-step interval, SPS |")
    print("|---|---|---|---|---|")
    for n in names:
        sps = [r["sps"] for r in results[n]]
        slowest = ", ".join(f"{r['slowest']:.1f}" for r in results[n]) if "slowest" in results[n][0] else "-"
        print(f"| {n} | {', '.join(f'{x:.1f}' for x in sps)} | {statistics.median(sps):.1f} | "
              f"{statistics.median(r['warmup_s'] for r in results[n]):.1f} | {slowest} |")
    print()
    print("| ratio | median of per-repeat ratios | ratio of summed window times | per repeat |")
    print("|---|---|---|---|")
    pairs = [(n, "sb3") for n in names if n != "sb3" and "sb3" in names]
    if "ours" in names:
        pairs += [(n, "ours") for n in names if n not in ("ours", "sb3")]
    for row in ratio_rows(results, pairs):
        print(row)
    print()
    print("issue target: ours / sb3 >= 2.0")


# ----------------------------------------------------------------------------- monitor
def monitor_cost_in_process(args) -> dict:
    """Seconds of one monitoring step (Monitoring.after_update at a measuring update), and
    seconds of the training it is amortised over (`every` updates, each with 4 loop steps),
    measured interleaved in one process on a replay filled with real Breakout frames."""

    from runner.cli import parse_args
    from runner.build import build
    from runner.logger import RunLogger

    tmp = tempfile.mkdtemp(prefix="dqn_monitor_")
    try:
        cfg, _ = parse_args(ours_argv(args, os.path.join(tmp, "run"), ["--monitor.every", str(args.monitor_every)]))
        comp = build(cfg)
        sched, agent, replay = comp.schedule, comp.agent, comp.replay
        log = RunLogger(os.path.join(tmp, "log"), ["Breakout"], sched.total_steps, progress=False)
        obs = sched.reset()

        def env_step(explore: bool) -> None:
            nonlocal obs
            actions = agent.act(obs, 0, 0) if explore else agent.epsilon_greedy(obs, 0, 0.01)
            res = sched.step(actions)
            replay.add(obs, actions, res.rewards, res.next_obs, res.terminated, res.truncated, res.valid, res.task)
            obs = res.obs

        for _ in range(args.learning_starts):
            env_step(True)

        def train_unit() -> None:  # what the loop does per gradient step: 4 env steps + 1 update
            for _ in range(cfg.dqn.train_freq):
                env_step(False)
            batch = replay.sample(32)
            log.accumulate(agent.update(batch))

        def measurement() -> None:
            agent.updates = cfg.monitor.every * (comp.monitoring.measurements + 1)  # a measuring update
            comp.monitoring.after_update(replay, log.writer, 0)

        for _ in range(5):
            train_unit()
        measurement()
        unit_times, meas_times = [], []
        for _ in range(args.monitor_rounds):
            t = time.perf_counter()
            for _ in range(args.monitor_block):
                train_unit()
            unit_times.append((time.perf_counter() - t) / args.monitor_block)
            t = time.perf_counter()
            for _ in range(2):
                measurement()
            meas_times.append((time.perf_counter() - t) / 2)
        log.close()
        sched.close()
        return {"unit_s": statistics.median(unit_times), "measure_s": statistics.median(meas_times),
                "measure_all": meas_times, "unit_all": unit_times, "histograms": comp.monitoring.measurements // 10,
                "measurements": comp.monitoring.measurements}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def monitor(args) -> None:
    from runner.config import MonitorConfig

    default = MonitorConfig()
    if args.monitor_every is None:
        args.monitor_every = default.every
    cost = monitor_cost_in_process(args)
    results = interleaved(args, ["ours-monitor", "ours"], VARIANTS) if args.repeats else None
    print_header(args, "Monitoring overhead (ours)")
    print(f"MonitorConfig default: every={default.every} gradient steps, batch_size={default.batch_size}, "
          f"histogram_every={default.histogram_every}; measured with every={args.monitor_every}")
    print()
    every = args.monitor_every
    frac = cost["measure_s"] / (every * cost["unit_s"])
    print("| quantity | value |")
    print("|---|---|")
    print(f"| one measurement (after_update: sample 256, Monitor.measure, Q metrics, TB writes; "
          f"histograms every 10th) | {cost['measure_s'] * 1e3:.1f} ms (median of {len(cost['measure_all'])} pairs; "
          f"min {min(cost['measure_all']) * 1e3:.1f}, max {max(cost['measure_all']) * 1e3:.1f}) |")
    print(f"| one training unit (4 env steps + act + add + sample + update) | {cost['unit_s'] * 1e3:.1f} ms "
          f"(min {min(cost['unit_all']) * 1e3:.1f}, max {max(cost['unit_all']) * 1e3:.1f}) |")
    print(f"| measured cost / ({every} units of training) | {frac:.4%} |")
    per_round = [m / (every * u) for m, u in zip(cost["measure_all"], cost["unit_all"])]
    print(f"| same, per interleaved round | {', '.join(f'{x:.4%}' for x in per_round)} |")
    if results:
        print()
        on, off = results["ours-monitor"], results["ours"]
        ratios = [o["seconds"] / f["seconds"] for o, f in zip(on, off)]
        start, end = window(args)
        updates = args.measure_steps // 4
        n_meas = sum(1 for u in range(1, (end - args.learning_starts) // 4 + 1) if u % every == 0
                     and args.learning_starts + 4 * u > start)
        print(f"direct: window time with monitor / without, {args.repeats} interleaved subprocess pairs; "
              f"{n_meas} measurement(s) fall in the window of {updates} updates")
        print()
        print("| ratio | median | per repeat |")
        print("|---|---|---|")
        print(f"| time(monitor every {every}) / time(monitor off) | {statistics.median(ratios):.3f} | "
              + ", ".join(f"{x:.3f}" for x in ratios) + " |")
        print(f"| expected from the in-process cost | {1 + n_meas * cost['measure_s'] / (updates * cost['unit_s']):.4f} | |")
    print()
    print("issue target: <= 2% added time")


# ----------------------------------------------------------------------------- profile
def profile(args) -> None:
    print_header(args, "cProfile of ours (whole run, random phase included)")
    wanted = ("update", "act", "sample", "add", "step", "_loss", "gather", "flush_scalars", "backward",
              "clip_grad_norm_", "_host_actions", "random_actions", "accumulate")
    profile_train_py(ROOT, lambda run_dir: ours_argv(args, run_dir), args.top, wanted, min_share=0.01,
                     library_fns=("backward", "step"))
    if not args.profile_only:
        from dqn_breakdown import breakdown

        breakdown(args)


# ----------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--learning-starts", type=int, default=2000, help="L: env steps before learning")
    parser.add_argument("--warmup-steps", type=int, default=500, help="W: steps after L excluded (compile, caches)")
    parser.add_argument("--measure-steps", type=int, default=6000, help="M: env steps in the timed window")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats of every variant")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of both sides")
    parser.add_argument("--capacity", type=int, default=100_000, help="replay capacity of both sides")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--variants", default="ours,ours-compile,sb3",
                        help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument("--monitor", action="store_true", help="measure the monitoring overhead instead")
    parser.add_argument("--monitor-every", type=int, default=None,
                        help="--monitor.every of the monitored run (default: MonitorConfig's default)")
    parser.add_argument("--monitor-rounds", type=int, default=8, help="in-process rounds of the monitor cost")
    parser.add_argument("--monitor-block", type=int, default=25, help="training units timed per round")
    parser.add_argument("--profile", action="store_true", help="profile ours and time each piece vs SB3")
    parser.add_argument("--top", type=int, default=25, help="rows of the cProfile table")
    parser.add_argument("--breakdown-steps", type=int, default=200, help="env steps per breakdown round")
    parser.add_argument("--breakdown-rounds", type=int, default=4)
    parser.add_argument("--breakdown-fill", type=int, default=2000, help="transitions stored before timing")
    parser.add_argument("--breakdown-compile", action=argparse.BooleanOptionalAction, default=True,
                        help="include ours with --dqn.compile in the breakdown")
    parser.add_argument("--breakdown-only", action="store_true", help="--profile without the cProfile run")
    parser.add_argument("--profile-only", action="store_true", help="--profile without the breakdown")
    parser.add_argument("--child-sb3", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in ("learning_starts", "warmup_steps", "measure_steps"):
        if getattr(args, name) % LOG_EVERY:
            parser.error(f"--{name.replace('_', '-')} must be a multiple of {LOG_EVERY}")
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    if args.child_sb3:
        child_sb3(args)
    elif args.monitor:
        monitor(args)
    elif args.breakdown_only:
        from dqn_breakdown import breakdown

        breakdown(args)
    elif args.profile:
        profile(args)
    else:
        speed(args)


if __name__ == "__main__":
    main()
