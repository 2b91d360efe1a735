"""Learning curve of our SAC on HalfCheetah-v5: evaluation return every 5000 env steps.

What is measured: the mean undiscounted return of ``--eval.episodes`` (10) deterministic
evaluation episodes (tanh of the policy mean, separate evaluation env, 1000-step episodes)
every ``--eval.every`` (5000) env steps of one training run of ``--steps`` (100 000) env
steps, seed 1, with SAC's default hyper-parameters (``SACConfig``: lr 3e-4 for actor,
critics and α, batch 256, γ 0.99, τ 0.005, one gradient step per env step,
``learning_starts`` 5000 uniform-random steps, automatic temperature starting at α = 1,
target entropy −|A| = −6, 256-256 ReLU MLPs), 1 env, a replay of 1 000 000 transitions (the
``quickstart`` preset that ``--agent sac`` starts from has 50 000; SB3's default buffer is
1M, so it is set explicitly), ``--threads 2``, ``--monitor.every 0``.

The run goes through ``train.py`` as a subprocess:

    python train.py --agent sac --env.tasks gym:HalfCheetah-v5 --env.cycles 1
      --env.steps-per-visit 100000 --replay.capacity 1000000 --seed 1 --threads 2
      --monitor.every 0 --eval.episodes 10 --eval.every 5000 --eval.random-episodes 10
      --checkpoint-every 0 --log-every 1000 --no-progress --run-dir RUN

Then the ``eval/HalfCheetah-v5/return`` events (steps 5000, 10000, ..., 100000; the one at
5000 is taken right after the first gradient step, i.e. an untrained policy) and the
training episodes' ``charts/episodic_return`` are read from the TensorBoard files and
written to ``benchmarks/sac_halfcheetah/curve.json`` and ``curve.png``, beside the published
reference value (see ``REFERENCE`` below). The TensorBoard event file is copied next to
them; the run directory (with its large final checkpoint) stays in a temporary directory.

    python benchmarks/sac_halfcheetah_curve.py                      # run + report (~30-60 min)
    python benchmarks/sac_halfcheetah_curve.py --keep DIR           # train into DIR/run and keep it
    python benchmarks/sac_halfcheetah_curve.py --run-dir DIR/run    # report an existing run only

The recorded run used ``OMP_WAIT_POLICY=PASSIVE`` in the environment (see
``benchmarks/sac_speed.py``: on this oversubscribed 2-core machine the default spin-waiting
made 2-thread PyTorch ~10x slower); it changes speed only, not the numbers computed.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "sac_halfcheetah"
TASK = "HalfCheetah-v5"

# Published SAC reference: Tianshou's MuJoCo benchmark, SAC on HalfCheetah-v3 (gym 0.17.3,
# mujoco 2.0), 10 seeds, each point the mean of 10 deterministic test episodes; columns
# env_step, rew (mean over seeds), rew:shaded (std over seeds) of
# https://github.com/thu-ml/tianshou/blob/39acf2094d96268d92ebb54dcbfc3de76d702567/examples/mujoco/benchmark/HalfCheetah-v3/sac/test_rew_10seeds.csv
# Their settings (examples/mujoco/mujoco_sac.py defaults and README footnote 8): 256-256 MLPs,
# batch 256, buffer 1M, actor and critic lr 1e-3 (ours 3e-4), fixed alpha 0.2 (ours: learned
# from 1.0), 10 000 uniform-random start steps collected before the trainer (Tianshou's
# env_step axis starts after them: its step-0 point is an untrained policy), one update per
# env step, gamma 0.99, tau 0.005.
TIANSHOU_SAC_V3 = [  # (env_step, mean, std over 10 seeds)
    (0, -2.027, 0.7352), (5000, 10.1839, 23.2072), (10000, 865.359, 486.562), (15000, 1814.2922, 570.1082),
    (20000, 2641.1068, 503.2532), (25000, 3365.0157, 417.5691), (30000, 3525.4369, 501.063),
    (35000, 3983.1205, 279.2621), (40000, 4326.9325, 213.1473), (45000, 4605.0875, 269.9916),
    (50000, 4747.2399, 345.0121), (55000, 5083.2292, 380.5083), (60000, 5316.2064, 330.2907),
    (65000, 5496.9468, 418.5496), (70000, 5586.9485, 540.2148), (75000, 5851.4753, 371.89),
    (80000, 5929.2037, 454.7962), (85000, 6106.3958, 438.9816), (90000, 6212.7888, 437.2369),
    (95000, 6187.6082, 511.4287), (100000, 6514.6227, 514.2304),
]
REFERENCE: list[dict] = [{
    "label": "Tianshou SAC, HalfCheetah-v3, 10 seeds, mean ± std (lr 1e-3, fixed α 0.2; x after its 10k random steps)",
    "step": 100_000, "return": 6514.6, "plus": 514.2, "minus": 514.2,
    "source": "github.com/thu-ml/tianshou@39acf209 examples/mujoco/benchmark/HalfCheetah-v3/sac/"
              "test_rew_10seeds.csv, row env_step=100000 (mean ± std over 10 seeds)",
    "curve": TIANSHOU_SAC_V3,
}]


def machine_line(threads: int) -> str:
    import torch

    return (f"{platform.platform()}, {platform.processor() or platform.machine()}, os.cpu_count()={os.cpu_count()}, "
            f"torch {torch.__version__}, torch threads {threads}, python {platform.python_version()}")


def train_argv(args, run_dir: str) -> list[str]:
    return ["--agent", "sac", "--env.tasks", f"gym:{TASK}", "--env.cycles", "1",
            "--env.steps-per-visit", str(args.steps), "--replay.capacity", str(args.capacity),
            "--seed", str(args.seed), "--threads", str(args.threads), "--monitor.every", "0",
            "--eval.episodes", str(args.eval_episodes), "--eval.every", str(args.eval_every),
            "--eval.random-episodes", "10", "--checkpoint-every", "0", "--log-every", "1000",
            "--no-progress", "--run-dir", run_dir,
            *(["--sac.learning-starts", str(args.learning_starts)] if args.learning_starts is not None else [])]


def read_events(run_dir: str) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]

    def series(tag: str) -> list[tuple[int, float]]:
        return [(e.step, e.value) for e in acc.Scalars(tag)] if tag in tags else []

    sps = series("charts/SPS")
    return {"eval": series(f"eval/{TASK}/return"), "train": series("charts/episodic_return"), "sps": sps}


def plot(curve: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    tr = curve["train_episodes"]
    if tr:
        ax.plot([s for s, _ in tr], [r for _, r in tr], ".", color="0.65", ms=4, label="training episodes (stochastic)")
    ev = curve["eval"]
    ax.plot([e["step"] for e in ev], [e["return"] for e in ev], "o-", color="C0",
            label=f"ours, eval mean of {curve['eval_episodes']} episodes (deterministic)")
    for i, ref in enumerate(REFERENCE):
        if ref.get("curve"):
            xs = [c[0] for c in ref["curve"]]
            m = [c[1] for c in ref["curve"]]
            sd = [c[2] for c in ref["curve"]]
            ax.plot(xs, m, "--", color=f"C{i + 1}", lw=1)
            ax.fill_between(xs, [a - b for a, b in zip(m, sd)], [a + b for a, b in zip(m, sd)],
                            color=f"C{i + 1}", alpha=0.12)
        ax.errorbar([ref["step"]], [ref["return"]], yerr=[[ref.get("minus", 0)], [ref.get("plus", 0)]],
                    fmt="s", color=f"C{i + 1}", capsize=4, label=ref["label"])
    ax.axvline(curve["learning_starts"], color="0.8", ls="--", lw=1)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("return")
    ax.set_title(f"SAC on {TASK}, seed {curve['seed']}, learning_starts {curve['learning_starts']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def report(args, run_dir: str, command: str, wall: float | None, date: str | None = None) -> None:
    cfg = json.loads(Path(run_dir, "config.json").read_text())
    ev = read_events(run_dir)
    sps = ev["sps"]
    learn = cfg["sac"]["learning_starts"]
    curve = {
        "task": TASK, "seed": cfg["seed"], "steps": cfg["env"]["steps_per_visit"],
        "learning_starts": learn, "eval_episodes": cfg["eval"]["episodes"], "eval_every": cfg["eval"]["every"],
        "replay_capacity": cfg["replay"]["capacity"], "threads": cfg["threads"], "sac": cfg["sac"],
        "command": command, "machine": machine_line(cfg["threads"]),
        "omp_wait_policy": (command.split()[0].split("=", 1)[1] if command.startswith("OMP_WAIT_POLICY=")
                            else os.environ.get("OMP_WAIT_POLICY")),
        "date": date or datetime.datetime.now().isoformat(timespec="seconds"), "wall_s": wall,
        "eval": [{"step": s, "return": round(v, 2)} for s, v in ev["eval"]],
        "train_episodes": [(s, round(v, 2)) for s, v in ev["train"]],
        "mean_sps_after_learning_starts": (
            sum(1000 for s, _ in sps if s > learn) / sum(1000 / v for s, v in sps if s > learn)
            if any(s > learn for s, _ in sps) else None),
        "reference": REFERENCE,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "curve.json").write_text(json.dumps(curve, indent=1))
    plot(curve, OUT / "curve.png")
    for f in glob.glob(os.path.join(run_dir, "events.out.tfevents.*")):
        shutil.copy(f, OUT / Path(f).name)

    print()
    print(f"## SAC learning curve, {TASK}, seed {curve['seed']}")
    print()
    print(f"command: `python benchmarks/sac_halfcheetah_curve.py {' '.join(sys.argv[1:])}`".replace("  ", " "))
    print(f"train.py command: `{command}`")
    print(f"machine: {curve['machine']}; OMP_WAIT_POLICY={curve['omp_wait_policy']}")
    print(f"date: {curve['date']}" + (f"; wall {wall / 60:.1f} min" if wall else ""))
    print(f"learning_starts {learn}, replay {curve['replay_capacity']}, eval {curve['eval_episodes']} episodes "
          f"every {curve['eval_every']} steps; mean SPS after learning starts "
          f"{curve['mean_sps_after_learning_starts']:.1f}" if curve["mean_sps_after_learning_starts"] else "")
    print()
    print("| env steps | eval return (mean of episodes) |")
    print("|---|---|")
    for e in curve["eval"]:
        print(f"| {e['step']} | {e['return']:.1f} |")
    print()
    for ref in REFERENCE:
        print(f"reference: {ref['label']}: {ref['return']} at {ref['step']} steps ({ref['source']})")
    print(f"wrote {OUT / 'curve.json'} and {OUT / 'curve.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--capacity", type=int, default=1_000_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--eval-every", type=int, default=5000)
    parser.add_argument("--learning-starts", type=int, default=None, help="default: SACConfig's (5000)")
    parser.add_argument("--run-dir", default=None, help="report this finished run instead of training")
    parser.add_argument("--keep", default=None, help="train into this directory (kept) instead of a temporary one")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    if args.run_dir:
        # report an existing run; reuse the train.py command and wall time recorded when it ran
        command, wall, date = f"(existing run {args.run_dir})", None, None
        old = OUT / "curve.json"
        if old.exists():
            prev = json.loads(old.read_text())
            if args.run_dir.rstrip("/") in prev.get("command", ""):
                command, wall, date = prev["command"], prev.get("wall_s"), prev.get("date")
        report(args, args.run_dir, command, wall, date)
        return
    tmp = args.keep or tempfile.mkdtemp(prefix="sac_curve_")
    run_dir = os.path.join(tmp, "run")
    cmd = [sys.executable, "train.py", *train_argv(args, run_dir)]
    omp = os.environ.get("OMP_WAIT_POLICY")
    command = (f"OMP_WAIT_POLICY={omp} " if omp else "") + "python train.py " + " ".join(cmd[2:])
    print(command, flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    print(proc.stdout[-4000:], flush=True)
    if proc.returncode != 0:
        raise SystemExit(f"train.py failed ({proc.returncode})")
    report(args, run_dir, command, wall)
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
