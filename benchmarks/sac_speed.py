"""End-to-end SAC training speed on HalfCheetah-v5: ours (``train.py``) versus Stable-Baselines3.

What is measured: environment steps per second (SPS) of the whole training loop (acting with
the policy, MuJoCo step, replay add, replay sample, one SAC gradient step per env step:
twin-Q critic step, actor step, temperature step, Polyak target step), batch 256, 256-256
MLPs, 1 env, ``--threads`` (2) torch threads, over the same window of every run: env steps
``(L + W, L + W + M]``, i.e. after learning starts at ``L`` and after a warm-up of ``W``
steps. The warm-up holds the first updates, hence torch.compile's compilation, for every
variant alike; start-up, the random-action phase, the warm-up and what follows the window
(ours writes its final checkpoint) are all excluded.

* ``ours``: ``python train.py --agent sac --env.tasks gym:HalfCheetah-v5 --env.cycles 1
  --env.steps-per-visit L+W+M --sac.learning-starts L --replay.capacity 1000000 --threads T
  --monitor.every 0 --checkpoint-every 0 --eval.episodes 0 --eval.random-episodes 0
  --no-progress --log-every 250 --seed 1 --run-dir TMP`` as a subprocess (all other SAC
  settings are SACConfig's defaults, which are SB3's: lr 3e-4, γ 0.99, τ 0.005, α auto
  from 1.0, target entropy −|A|). SPS = M / (sum over the window's ``charts/SPS`` events
  of 250 / SPS), i.e. the intervals weighted by their duration. ``--replay.capacity`` is
  set to SB3's 1M (the quickstart preset that ``--agent sac`` starts from has 50k).
* ``ours-compile``: the same with ``--sac.compile`` (each network's forward and backward is
  one graph compiled by Inductor, ``agents/compile/``; the Adam steps stay eager).
  Both graphs compile at the first update, at step L, inside the excluded warm-up; the
  warm-up's extra seconds over ``ours`` are the compile cost, reported separately (with
  Inductor's on-disk cache warm from an earlier run that cost is small; the
  ``ours-compile-cold`` variant disables the caches to show the first-time cost). The
  slowest 250-step interval of the window is reported beside the median: a compilation
  inside the window would show there as a stall of seconds.
* ``sb3``: Stable-Baselines3's ``SAC("MlpPolicy", gym.make("HalfCheetah-v5"),
  policy_kwargs=dict(net_arch=[256, 256]), batch_size=256, buffer_size=1_000_000,
  learning_rate=3e-4, learning_starts=L, train_freq=1, gradient_steps=1,
  ent_coef="auto", device="cpu", seed=1)`` after ``torch.set_num_threads(T)``, in a
  subprocess, timed by a callback at env steps L+W and L+W+M (its ``_on_step`` runs after
  each env step, before that step's gradient step, so the window holds M env steps and M
  gradient steps, as ours).

Runs are interleaved (repeat r runs every variant, the order rotated by r) so the shared
machine's load hits all variants alike; the table gives every repeat's ratio. On a host whose
speed drifts over tens of seconds (one run takes ~45 s) that is not enough: ``--time-sliced
S`` starts a repeat's variants together and lets them run in turn, S seconds each while the
others are stopped (SIGSTOP / SIGCONT), so both sides meet the same drift within seconds;
a variant's SPS is then M over the seconds it actually ran between its window's first and
last step (ours: the wall times of its ``charts/SPS`` events at L+W and L+W+M; SB3: the
callback's marks), each side still being the unmodified program.

``--omp-wait-policy PASSIVE`` (or ACTIVE) sets ``OMP_WAIT_POLICY`` for every subprocess
alike. On an oversubscribed machine (more runnable threads than cores) PyTorch's OpenMP
worker threads spin-wait at every parallel region and the 2-thread runs slow down ~10x;
PASSIVE makes the waiting threads sleep. ``--omp-wait-policy default`` leaves it unset.

    python benchmarks/sac_speed.py                                  # ours, ours-compile, sb3
    python benchmarks/sac_speed.py --time-sliced 2 --variants ours-compile,sb3
    python benchmarks/sac_speed.py --omp-wait-policy PASSIVE
    python benchmarks/sac_speed.py --profile                        # where ours spends its time (vs SB3)

``--profile`` runs ours under cProfile, then times each piece of both loops in one process,
interleaved rounds (act on batch 1, env step, replay add, replay sample, gradient step), and
inside ours' gradient step each piece (critic forward+loss, critic backward, critic Adam,
actor forward+loss, actor backward, actor Adam, α step, Polyak update, metrics), next to
the same pieces written the way SB3 does them where they differ.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from speed_common import (
    interleaved,
    learn_timed,
    machine_line,
    profile_train_py,
    run_sb3_child,
    running_seconds,
    sb3_child_cmd,
    sps_events,
    time_sliced,
    window,
)

ROOT = Path(__file__).resolve().parent.parent
LOG_EVERY = 250
ENV_ID = "HalfCheetah-v5"


def child_env(args, extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if args.omp_wait_policy != "default":
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy
    env.update(extra or {})
    return env


# ----------------------------------------------------------------------------- ours (train.py)
def ours_argv(args, run_dir: str, extra: list[str] = (), total: int | None = None) -> list[str]:
    _, end = window(args)
    return ["--agent", "sac", "--env.tasks", f"gym:{ENV_ID}", "--env.cycles", "1",
            "--env.steps-per-visit", str(total or end), "--sac.learning-starts", str(args.learning_starts),
            "--replay.capacity", str(args.capacity), "--threads", str(args.threads),
            "--monitor.every", "0", "--checkpoint-every", "0", "--eval.episodes", "0",
            "--eval.random-episodes", "0", "--no-progress", "--log-every", str(LOG_EVERY),
            "--seed", str(args.seed), "--run-dir", run_dir, *extra]


def run_ours(args, extra: list[str], env: dict | None = None) -> dict:
    start, end = window(args)
    tmp = tempfile.mkdtemp(prefix="sac_speed_")
    run_dir = os.path.join(tmp, "run")
    cmd = [sys.executable, "train.py", *ours_argv(args, run_dir, extra)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=child_env(args, env))
    wall = time.perf_counter() - t0
    try:
        if proc.returncode != 0:
            raise RuntimeError(f"train.py failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        events = sps_events(run_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    inside = [(s, v) for s, v in events if start < s <= end]
    steps = LOG_EVERY * len(inside)
    if steps != args.measure_steps:
        raise RuntimeError(f"expected {args.measure_steps} window steps from SPS events, got {steps}: {events}")
    seconds = sum(LOG_EVERY / v for _, v in inside)
    # the first update (and compilation) runs at step L, before the SPS flush of step L, so it is
    # in the interval (L - 250, L]: the warm-up column spans (L - 250, L + W] (250 random steps,
    # about 0.2 s, are included)
    warm = sum(LOG_EVERY / v for s, v in events if args.learning_starts - LOG_EVERY < s <= start)
    return {"sps": steps / seconds, "seconds": seconds, "warmup_s": warm, "wall_s": wall,
            "slowest": min(v for _, v in inside), "intervals": [round(v, 1) for _, v in inside]}


# ----------------------------------------------------------------------------- SB3
def make_sb3(args, learning_starts: int):
    import gymnasium as gym
    from stable_baselines3 import SAC

    env = gym.make(ENV_ID)
    model = SAC("MlpPolicy", env, policy_kwargs=dict(net_arch=[256, 256]), batch_size=256,
                buffer_size=args.capacity, learning_rate=3e-4, learning_starts=learning_starts,
                train_freq=1, gradient_steps=1, ent_coef="auto", device="cpu", seed=args.seed, verbose=0)
    return model


def child_sb3(args) -> None:
    """Runs inside the subprocess: SB3 SAC timed by a callback; prints one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    model = make_sb3(args, args.learning_starts)
    learn_timed(model, args)


def run_sb3(args) -> dict:
    return run_sb3_child(__file__, args, child_env(args))


# ----------------------------------------------------------------------------- comparisons
def _one_thread(args):
    return argparse.Namespace(**{**vars(args), "threads": 1})


# ----------------------------------------------------------------------------- time-sliced
SLICED = {  # variant -> (extra train.py flags, extra env), or None for SB3
    "ours": ([], None), "ours-compile": (["--sac.compile"], None), "sb3": None,
}


def sliced_repeats(args, names: list[str]) -> dict[str, list[dict]]:
    """Every repeat runs all variants at once, time-sliced (``speed_common.time_sliced``): SPS
    is the window's env steps over the seconds the process actually ran inside its window."""
    start, end = window(args)
    unknown = [n for n in names if n not in SLICED]
    if unknown:
        raise SystemExit(f"--time-sliced runs {', '.join(SLICED)}; got {', '.join(unknown)}")
    results: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(args.repeats):
        tmp = tempfile.mkdtemp(prefix="sac_sliced_")
        try:
            commands, dirs = {}, {}
            for n in names[r % len(names):] + names[: r % len(names)]:  # who starts first rotates
                if SLICED[n] is None:
                    commands[n] = (sb3_child_cmd(__file__, args), str(ROOT), child_env(args))
                else:
                    extra, env = SLICED[n]
                    dirs[n] = os.path.join(tmp, n)
                    commands[n] = ([sys.executable, "train.py", *ours_argv(args, dirs[n], extra)], str(ROOT),
                                   child_env(args, env))
            runs = time_sliced(commands, args.time_sliced)
            for n, run in runs.items():
                if run["returncode"] != 0:
                    raise RuntimeError(f"{n} failed ({run['returncode']}):\n{run['stderr'][-3000:]}")
                if n in dirs:
                    events = sps_events(dirs[n], wall_time=True)
                    at = {step: wall for step, _, wall in events}
                    t0, t1 = at[start], at[end]
                else:
                    t0, t1 = json.loads(run["stdout"].strip().splitlines()[-1])["window_epoch"]
                seconds = running_seconds(run["running"], t0, t1)
                # (train.py's own SPS intervals count the stopped time too: not reported here)
                res = {"sps": args.measure_steps / seconds, "seconds": seconds, "warmup_s": float("nan"),
                       "wall_s": t1 - t0}
                results[n].append(res)
                print(f"repeat {r} {n:14s} SPS {res['sps']:7.1f}  ran {seconds:6.1f}s of its window's "
                      f"{t1 - t0:6.1f}s", flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return results


VARIANTS = {
    "ours": lambda a: run_ours(a, []),
    "ours-compile": lambda a: run_ours(a, ["--sac.compile"]),
    # compile with Inductor's on-disk caches disabled: the warm-up then holds the full compile cost
    "ours-compile-cold": lambda a: run_ours(a, ["--sac.compile"], env={"TORCHINDUCTOR_FORCE_DISABLE_CACHES": "1"}),
    "sb3": run_sb3,
    # the same with 1 torch thread (for the thread-count question; not part of the issue target)
    "ours-t1": lambda a: run_ours(_one_thread(a), []),
    "sb3-t1": lambda a: run_sb3(_one_thread(a)),
}


def ratio_rows(results: dict[str, list[dict]], pairs: list[tuple[str, str]]) -> list[str]:
    rows = []
    for a, b in pairs:
        ratios = [x["sps"] / y["sps"] for x, y in zip(results[a], results[b])]
        total = sum(r["seconds"] for r in results[b]) / sum(r["seconds"] for r in results[a])
        rows.append(f"| {a} / {b} (SPS) | {statistics.median(ratios):.3f} | {total:.3f} | "
                    f"{min(ratios):.3f}–{max(ratios):.3f} | " + ", ".join(f"{x:.3f}" for x in ratios) + " |")
    return rows


def print_header(args, title: str) -> None:
    print()
    print(f"## {title}")
    print()
    print(f"command: `python benchmarks/sac_speed.py {' '.join(sys.argv[1:])}`".replace("  ", " "))
    print(f"machine: {machine_line(args.threads)}; OMP_WAIT_POLICY="
          f"{args.omp_wait_policy if args.omp_wait_policy != 'default' else 'unset'}")
    print(f"date: {datetime.datetime.now().isoformat(timespec='seconds')}")
    start, end = window(args)
    print(f"window: env steps ({start}, {end}] (learning starts {args.learning_starts}, warm-up {args.warmup_steps}); "
          f"repeats {args.repeats}, "
          + (f"time-sliced ({args.time_sliced:g} s slices, all variants of a repeat at once)" if args.time_sliced
             else "interleaved") + f"; load average at start {os.getloadavg()[0]:.1f}")
    print()


def speed(args) -> None:
    names = args.variants.split(",")
    load0 = os.getloadavg()
    results = sliced_repeats(args, names) if args.time_sliced else interleaved(args, names, VARIANTS)
    print_header(args, f"SAC training speed, {ENV_ID}, env steps/s after learning starts")
    print(f"load average (1 min) before / after: {load0[0]:.1f} / {os.getloadavg()[0]:.1f}")
    print()
    print("| variant | SPS per repeat | median SPS | warm-up s (incl. compile) | slowest 250-step interval, SPS |")
    print("|---|---|---|---|---|")
    for n in names:
        sps = [r["sps"] for r in results[n]]
        print(f"| {n} | {', '.join(f'{x:.1f}' for x in sps)} | {statistics.median(sps):.1f} | "
              f"{', '.join(format(r['warmup_s'], '.1f') for r in results[n])} | "
              f"{', '.join(format(r['slowest'], '.0f') if 'slowest' in r else '-' for r in results[n])} |")
    print()
    print("| ratio | median of per-repeat ratios | ratio of summed window times | range | per repeat |")
    print("|---|---|---|---|---|")
    pairs = [(n, "sb3") for n in names if n.startswith("ours") and not n.endswith("-t1") and "sb3" in names]
    if "ours-t1" in names and "sb3-t1" in names:
        pairs.append(("ours-t1", "sb3-t1"))
    if "ours" in names:
        pairs += [(n, "ours") for n in names if n != "ours" and n.startswith("ours")]
    if "sb3" in names and "sb3-t1" in names:
        pairs.append(("sb3-t1", "sb3"))
    for row in ratio_rows(results, pairs):
        print(row)
    print()
    print("issue target: ours / sb3 >= 1.5")
    if args.json:
        Path(args.json).write_text(json.dumps({"argv": sys.argv[1:], "results": results}, indent=1))
        print(f"per-run results (incl. every SPS interval of ours) written to {args.json}")


# ----------------------------------------------------------------------------- profile
def profile(args) -> None:
    if not args.breakdown_only:
        profile_run(args)
    run_breakdown(args)


def profile_run(args) -> None:
    print_header(args, "cProfile of ours (whole run: start-up, random phase and window)")
    wanted = ("update", "act", "sample", "add", "step", "_critic_loss", "_actor_loss", "soft_update",
              "flush_scalars", "accumulate", "backward", "_single_tensor_adam", "squashed_sample",
              "_host_actions", "random_actions", "gather")
    profile_train_py(ROOT, lambda run_dir: ours_argv(args, run_dir), args.top, wanted, env=child_env(args))


def run_breakdown(args) -> None:
    if args.omp_wait_policy != "default":
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy  # too late for this process's OpenMP;
        # the breakdown runs in a child so the policy applies
    cmd = [sys.executable, __file__, "--child-breakdown", *sys.argv[1:]]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=child_env(args))
    if proc.returncode != 0:
        raise RuntimeError(f"breakdown failed:\n{proc.stderr[-3000:]}")
    print(proc.stdout)


# ----------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--learning-starts", type=int, default=1000, help="L: env steps before learning")
    parser.add_argument("--warmup-steps", type=int, default=500, help="W: steps after L excluded (compile, caches)")
    parser.add_argument("--measure-steps", type=int, default=3000, help="M: env steps in the timed window")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of every variant")
    parser.add_argument("--time-sliced", type=float, default=0.0, metavar="SECONDS",
                        help="run a repeat's variants at once, each in turn for SECONDS while the others are "
                             "stopped (ours, ours-compile, sb3); 0: one after the other")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of both sides (the -t1 variants use 1)")
    parser.add_argument("--capacity", type=int, default=1_000_000, help="replay capacity of both sides")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--variants", default="ours,ours-compile,sb3",
                        help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument("--omp-wait-policy", default="default", choices=["default", "PASSIVE", "ACTIVE"],
                        help="OMP_WAIT_POLICY of every subprocess (default: leave unset)")
    parser.add_argument("--json", default=None, help="also write every run's numbers (and ours' SPS intervals) here")
    parser.add_argument("--profile", action="store_true", help="profile ours and time each piece vs SB3")
    parser.add_argument("--top", type=int, default=25, help="rows of the cProfile table")
    parser.add_argument("--breakdown-steps", type=int, default=100, help="env steps per breakdown round")
    parser.add_argument("--breakdown-rounds", type=int, default=4)
    parser.add_argument("--breakdown-fill", type=int, default=1000, help="transitions stored before timing")
    parser.add_argument("--breakdown-compile", action=argparse.BooleanOptionalAction, default=False,
                        help="ours with --sac.compile in the breakdown (compiled in its first, untimed round)")
    parser.add_argument("--breakdown-only", action="store_true", help="--profile without the cProfile run")
    parser.add_argument("--child-sb3", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-breakdown", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in ("learning_starts", "warmup_steps", "measure_steps"):
        if getattr(args, name) % LOG_EVERY:
            parser.error(f"--{name.replace('_', '-')} must be a multiple of {LOG_EVERY}")
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    if args.child_sb3:
        child_sb3(args)
    elif args.child_breakdown:
        from sac_breakdown import breakdown

        breakdown(args)
    elif args.profile or args.breakdown_only:
        profile(args)
    else:
        speed(args)


if __name__ == "__main__":
    main()
