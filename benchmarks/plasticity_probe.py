"""Continual supervised plasticity probe: random-label memorisation on scikit-learn's digits.

The setting of the loss-of-plasticity literature (random-label memorisation as in Kumar et
al. 2023 and Lyle et al. 2023), on data that ships with scikit-learn (``load_digits``,
1797 8x8 images, no download):

- a fixed subset of ``--images`` images (default 1000), pixels standardised per feature;
- ``--tasks`` consecutive tasks (default 30); task t gives every image a fresh random
  label in 0..9, and the same network keeps training (never re-initialised, except by the
  Reset method), ``--epochs`` epochs of minibatch Adam per task;
- the score of a task is the accuracy on all its training images with the weights at the
  end of the task (memorisation = training accuracy; chance is about 10%).

Every intervention of `plasticity` is driven the way a user drives it in their own loop:

    loss = cross_entropy + sum(iv.loss() for iv in interventions if not None)
    optimizer.zero_grad(); loss.backward(); optimizer.step()
    for iv in interventions: iv.after_step(x_batch)
    ... at the start of every task t > 0: for iv in interventions: iv.on_task_switch(t)

At the end of each task we also record the norm of all parameters
(``plasticity.metrics.weight_norm``) and, through ``plasticity.Monitor`` on all training
images, the dormant ratio (tau = 0.025), the dead ratio (tau = 0) and the effective rank of
the last hidden layer.

Labels and minibatch order come from a generator seeded by the seed alone, so every method
sees exactly the same data stream for a given seed; network initialisation and the
interventions' own randomness use torch's global generator, seeded identically.

    python benchmarks/plasticity_probe.py                    # default: 30 tasks, 3 seeds
    python benchmarks/plasticity_probe.py --quick            # smoke test, seconds
    python benchmarks/plasticity_probe.py --methods baseline,swr --swr-lam 1e-2 --seeds 1

Writes ``benchmarks/plasticity_probe/results.json`` and ``accuracy.png`` (``--quick``
writes to a temporary directory unless ``--out`` is given) and prints a markdown table.

Budget and hyper-parameters. Adam lr 2e-3, batch 100, 25 epochs (250 updates) per task:
a fresh network memorises ~97-98% of the random labels, and the baseline falls to chance
within ~12 tasks, when the whole second hidden layer has died (lr 1e-3 with 25 epochs only
reaches ~80% on task 1; lr 1e-3 with 50 epochs memorises 99.8% and also falls to chance by
task ~15; lr 3e-3 collapses by task 5). Each intervention's defaults below were picked on a
separate tuning seed (10, 20 tasks, 1 run per value) by the mean accuracy over all tasks,
see TUNING; the evaluation seeds (0, 1, 2) were not used for tuning.

Reading the dormant panel: ReDo checks every 50 updates and a task has 250, so its last
check falls on the task's last update and the end-of-task dormant ratio is ~0 by
construction; between checks about 100 of the 256 second-layer units die again.

Cost: ~9 minutes for the default run on a shared 2-core machine at load ~3 (one process,
one thread), ~16 minutes at load ~6; results are identical on CPU for the same seeds.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import plasticity as pl  # noqa: E402
from plasticity import adalin, metrics  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "plasticity_probe"

#: how the default hyper-parameters were chosen: value tried -> mean accuracy over all 20
#: tasks (tuning seed 10, one run each); the chosen value is the best of its row
TUNING = {
    "swr --swr-lam (paper grid), head = same": {"1": 0.543, "1e-1": 0.577, "1e-2": 0.717,
                                                "1e-3": 0.711, "1e-4": 0.410},
    "swr --swr-lam/--swr-head-lam": {"1e-2/1e-3": 0.809, "1e-2/1e-4": 0.653,
                                     "1e-1/1e-3": 0.777, "1e-3/1e-3": 0.711},
    "l2 --l2-coef": {"1e-2": 0.683, "1e-3": 0.812, "1e-4": 0.447, "1e-5": 0.399},
    "l2init --l2init-coef": {"1e-2": 0.876, "3e-3": 0.975, "1e-3": 0.918, "1e-4": 0.539},
    "cbp --cbp-rate/--cbp-maturity": {"1e-4/100": 0.536, "1e-3/100": 0.854,
                                      "3e-3/100": 0.939, "1e-2/100": 0.953,
                                      "1e-2/250": 0.938},
    "redo --redo-every (tau 0.1)": {"50": 0.991, "250": 0.953},
    "snp --snp-alpha/--snp-sigma": {"0.4/0.1": 0.962, "0.8/0.1": 0.978, "0.8/0.01": 0.972},
    "wclip --wclip-kappa": {"1": 0.585, "1.5": 0.720, "2": 0.758, "3": 0.592, "5": 0.424},
    "baseline (reference)": {"-": 0.386},
}

#: method name -> one-line description (also the order of the table and the plot)
METHODS: dict[str, str] = {
    "baseline": "ReLU MLP, Adam, no intervention",
    "reset": "full Reset at every task switch (fresh network per task; upper reference)",
    "swr": "Soft Weight Rescaling after every step (hidden layers and head own lambdas)",
    "adalin": "AdaLin: adalin.convert on the MLP (ReLU -> per-neuron learnable PReLU slope)",
    "crelu": "CReLU activations (256 pre-activations -> 512 outputs per hidden layer)",
    "redo": "ReDo: recycle dormant neurons periodically",
    "cbp": "Continual Backprop",
    "snp": "Shrink & Perturb at every task switch",
    "l2": "L2 towards zero (loss term)",
    "l2init": "L2-Init towards the initial parameters (loss term)",
    "wclip": "Weight clipping after every step",
}


# ------------------------------------------------------------------------------ data
def load_data(n_images: int) -> torch.Tensor:
    """A fixed subset (seed 0) of the digits images, standardised per pixel."""
    from sklearn.datasets import load_digits

    x, _ = load_digits(return_X_y=True)
    if not 1 <= n_images <= len(x):
        raise SystemExit(f"--images must be in [1, {len(x)}], got {n_images}")
    idx = np.random.default_rng(0).permutation(len(x))[:n_images]
    x = torch.tensor(x[idx], dtype=torch.float32)
    # constant pixels (always 0 on the border) have std 0: the epsilon keeps them at 0
    return (x - x.mean(0)) / (x.std(0) + 1e-3)


# ------------------------------------------------------------------------------ model
def make_mlp(hidden: int, activation: str = "relu") -> nn.Sequential:
    """64-hidden-hidden-10. CReLU keeps `hidden` pre-activations and doubles what the next
    layer reads (as in Abbas et al. 2023), so it has more parameters than the baseline."""
    if activation == "crelu":
        return nn.Sequential(
            nn.Linear(64, hidden), pl.CReLU(), nn.Linear(2 * hidden, hidden), pl.CReLU(),
            nn.Linear(2 * hidden, 10))
    return nn.Sequential(
        nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, 10))


def build(method: str, args: argparse.Namespace):
    """(model, optimizer, interventions) for one method, as a user would write them."""
    model = make_mlp(args.hidden, "crelu" if method == "crelu" else "relu")
    if method == "adalin":
        model = adalin.convert(model)  # before the optimizer, so it trains the slopes
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    ivs: list = []
    if method == "reset":
        ivs.append(pl.Reset(model, opt, layers="all", at_task_switch=True))
    elif method == "swr":
        ivs.append(pl.SWR(model, opt, lam=args.swr_lam, head_lam=args.swr_head_lam))
    elif method == "redo":
        ivs.append(pl.ReDo(model, opt, tau=args.redo_tau, every=args.redo_every))
    elif method == "cbp":
        ivs.append(pl.ContinualBackprop(model, opt, replacement_rate=args.cbp_rate,
                                        maturity=args.cbp_maturity))
    elif method == "snp":
        ivs.append(pl.ShrinkPerturb(model, opt, alpha=args.snp_alpha, sigma=args.snp_sigma,
                                    at_task_switch=True))
    elif method == "l2":
        ivs.append(pl.L2(model, opt, coef=args.l2_coef))
    elif method == "l2init":
        ivs.append(pl.L2Init(model, opt, coef=args.l2init_coef))
    elif method == "wclip":
        ivs.append(pl.WeightClipping(model, opt, kappa=args.wclip_kappa))
    return model, opt, ivs


# ------------------------------------------------------------------------------ one run
def run(method: str, seed: int, x: torch.Tensor, args: argparse.Namespace) -> dict:
    """Train one method on `args.tasks` tasks with one seed; per-task records."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    data_gen = torch.Generator().manual_seed(10_000 + seed)  # labels and batch order only
    model, opt, ivs = build(method, args)
    monitor = pl.Monitor(model, tau=0.025)
    n = len(x)
    rec: dict[str, list[float]] = {k: [] for k in (
        "accuracy", "last_epoch_accuracy", "param_norm", "dormant_ratio", "dead_ratio",
        "effective_rank")}
    start = time.perf_counter()
    for task in range(args.tasks):
        y = torch.randint(0, 10, (n,), generator=data_gen)
        if task > 0:
            for iv in ivs:
                iv.on_task_switch(task)
        model.train()
        for epoch in range(args.epochs):
            perm = torch.randperm(n, generator=data_gen)
            correct = 0
            for i in range(0, n, args.batch_size):
                b = perm[i:i + args.batch_size]
                xb, yb = x[b], y[b]
                logits = model(xb)
                loss = F.cross_entropy(logits, yb)
                for iv in ivs:
                    extra = iv.loss()
                    if extra is not None:
                        loss = loss + extra
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                for iv in ivs:
                    iv.after_step(xb)
                if epoch == args.epochs - 1:
                    correct += int((logits.detach().argmax(1) == yb).sum())
        with torch.no_grad():
            model.eval()
            acc = float((model(x).argmax(1) == y).float().mean())
        stats = monitor.measure(x)
        rec["accuracy"].append(acc)
        rec["last_epoch_accuracy"].append(correct / n)
        rec["param_norm"].append(float(metrics.weight_norm(model)[0]))
        rec["dormant_ratio"].append(stats["plasticity/dormant_ratio"])
        rec["dead_ratio"].append(stats["plasticity/dead_ratio"])
        rec["effective_rank"].append(stats["plasticity/effective_rank"])
        if args.verbose:
            print(f"  {method} seed {seed} task {task:2d}: acc {acc:.3f} "
                  f"norm {rec['param_norm'][-1]:.1f} dormant {rec['dormant_ratio'][-1]:.2f}",
                  flush=True)
    rec_out: dict = dict(rec)
    rec_out["seconds"] = time.perf_counter() - start
    rec_out["n_params"] = sum(p.numel() for p in model.parameters())
    rec_out["intervention_metrics"] = {k: v for iv in ivs for k, v in iv.metrics().items()}
    return rec_out


def _job(job: tuple) -> tuple[str, int, dict]:
    method, seed, x, args = job
    return method, seed, run(method, seed, x, args)


# ------------------------------------------------------------------------------ summary
def summarise(runs: dict[str, list[dict]], last: int) -> dict[str, dict]:
    out = {}
    for method, recs in runs.items():
        s: dict = {}
        for key in ("accuracy", "last_epoch_accuracy", "param_norm", "dormant_ratio",
                    "dead_ratio", "effective_rank"):
            arr = np.array([r[key] for r in recs], dtype=float)  # (seeds, tasks)
            s[key] = {"mean": arr.mean(0).tolist(), "std": arr.std(0).tolist(),
                      "per_seed": arr.tolist()}
        acc = np.array([r["accuracy"] for r in recs])
        k = min(last, acc.shape[1])
        lastk = acc[:, -k:].mean(1)  # one number per seed
        norms = np.array([r["param_norm"] for r in recs])
        s["summary"] = {
            "task1_accuracy_mean": float(acc[:, 0].mean()),
            "task1_accuracy_std": float(acc[:, 0].std()),
            f"last{k}_accuracy_mean": float(lastk.mean()),
            f"last{k}_accuracy_std_over_seeds": float(lastk.std()),
            "final_param_norm_mean": float(norms[:, -1].mean()),
            "final_param_norm_std": float(norms[:, -1].std()),
            "max_param_norm": float(norms.max()),
            "seconds_total": float(sum(r["seconds"] for r in recs)),
            "seconds_per_run": float(np.mean([r["seconds"] for r in recs])),
        }
        s["n_params"] = recs[0]["n_params"]
        s["intervention_metrics"] = [r["intervention_metrics"] for r in recs]
        out[method] = s
    return out


def table(summary: dict[str, dict], last: int, seeds: int) -> str:
    lines = [
        f"| method | task-1 acc | last-{last}-tasks mean acc ± std | final param norm "
        f"| wall time ({seeds} seed{'s' if seeds > 1 else ''}) |",
        "|---|---|---|---|---|",
    ]
    for method, s in summary.items():
        m = s["summary"]
        k = next(key for key in m if key.startswith("last") and key.endswith("_mean"))
        sd = k.replace("_mean", "_std_over_seeds")
        lines.append(
            f"| {method} | {m['task1_accuracy_mean']:.3f} | {m[k]:.3f} ± {m[sd]:.3f} "
            f"| {m['final_param_norm_mean']:.1f} | {m['seconds_total']:.0f} s |")
    return "\n".join(lines)


def plot(summary: dict[str, dict], path: Path, title: str) -> None:
    """2x2 figure: accuracy per task (full range and zoomed on the top), parameter norm
    and dormant ratio per task; mean over seeds with a ±std band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(15, 10))
    (ax_acc, ax_zoom), (ax_norm, ax_dorm) = axes
    colors = iter(plt.get_cmap("tab10").colors)
    markers = iter("osD^v<>ph*X")
    for method, s in summary.items():
        base = method == "baseline"
        style = dict(color="black" if base else next(colors), lw=2.8 if base else 1.5,
                     marker="o" if base else next(markers), ms=3.5, label=method,
                     ls="-" if base else ("--" if method == "reset" else "-"))
        for ax, key in ((ax_acc, "accuracy"), (ax_zoom, "accuracy"),
                        (ax_norm, "param_norm"), (ax_dorm, "dormant_ratio")):
            mean = np.array(s[key]["mean"])
            std = np.array(s[key]["std"])
            t = np.arange(1, len(mean) + 1)
            ax.plot(t, mean, **style)
            ax.fill_between(t, mean - std, mean + std, color=style["color"], alpha=0.15, lw=0)
    ax_acc.axhline(0.1, color="grey", lw=0.8, ls=":")
    ax_acc.text(1, 0.115, "chance (10 classes)", color="grey", fontsize=8)
    ax_acc.set_ylim(0, 1.02)
    ax_acc.set_ylabel("training accuracy at end of task")
    ax_acc.set_title("Memorisation accuracy per task")
    ax_zoom.set_ylim(0.9, 1.002)
    ax_zoom.set_ylabel("training accuracy at end of task")
    ax_zoom.set_title("Same, zoomed on 0.9-1.0")
    ax_norm.set_ylabel("||theta||, all parameters, end of task")
    ax_norm.set_title("Parameter norm per task")
    ax_dorm.set_ylim(-0.02, 1.02)
    ax_dorm.set_ylabel("dormant ratio (tau = 0.025), all hidden units")
    ax_dorm.set_title("Dormant units per task (plasticity.Monitor, all training images)")
    for ax in axes.flat:
        ax.set_xlabel("task")
        ax.grid(alpha=0.3)
    handles, labels = ax_acc.get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=10, frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 0.9, 0.97))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def title_of(args) -> str:
    return (f"Random-label memorisation on sklearn digits: {args.images} images, {args.tasks} "
            f"tasks x {args.epochs} epochs, MLP 64-{args.hidden}-{args.hidden}-10, Adam "
            f"lr={args.lr:g}, batch {args.batch_size}; mean ± std over {args.seeds} seed(s)")


# ------------------------------------------------------------------------------ CLI
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--tasks", type=int, default=30, help="consecutive random-label tasks")
    p.add_argument("--seeds", type=int, default=3, help="seeds per method")
    p.add_argument("--first-seed", type=int, default=0,
                   help="seeds are first_seed .. first_seed+seeds-1 (tune on other seeds)")
    p.add_argument("--methods", default=",".join(METHODS),
                   help=f"comma-separated subset of: {', '.join(METHODS)}")
    p.add_argument("--epochs", type=int, default=25, help="epochs per task")
    p.add_argument("--images", type=int, default=1000, help="images memorised per task")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate")
    p.add_argument("--hidden", type=int, default=256, help="width of both hidden layers")
    p.add_argument("--last", type=int, default=5, help="the table averages the last N tasks")
    p.add_argument("--workers", type=int, default=1,
                   help="parallel processes (each uses one thread)")
    p.add_argument("--quick", action="store_true",
                   help="tiny smoke test: 3 tasks, 1 seed, 2 epochs, 200 images")
    p.add_argument("--out", type=Path, default=None,
                   help=f"output directory (default {DEFAULT_OUT}; a temp dir with --quick)")
    p.add_argument("--verbose", action="store_true", help="print every task")
    p.add_argument("--replot", action="store_true",
                   help="redraw the PNG and reprint the table from OUT/results.json; no training")
    g = p.add_argument_group("intervention hyper-parameters")
    g.add_argument("--swr-lam", type=float, default=1e-2, help="SWR lambda")
    g.add_argument("--swr-head-lam", type=float, default=1e-3,
                   help="SWR lambda of the output layer")
    g.add_argument("--redo-tau", type=float, default=0.1)
    g.add_argument("--redo-every", type=int, default=50, help="ReDo check period (updates)")
    g.add_argument("--cbp-rate", type=float, default=1e-2, help="CBP replacement rate rho")
    g.add_argument("--cbp-maturity", type=int, default=100, help="CBP maturity (updates)")
    g.add_argument("--snp-alpha", type=float, default=0.8, help="Shrink & Perturb shrink")
    g.add_argument("--snp-sigma", type=float, default=0.1, help="Shrink & Perturb noise")
    g.add_argument("--l2-coef", type=float, default=1e-3)
    g.add_argument("--l2init-coef", type=float, default=3e-3)
    g.add_argument("--wclip-kappa", type=float, default=2.0)
    args = p.parse_args(argv)
    if args.quick:
        args.tasks, args.seeds, args.epochs, args.images = 3, 1, 2, 200
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in args.methods if m not in METHODS]
    if bad:
        p.error(f"unknown method(s) {', '.join(bad)}; valid: {', '.join(METHODS)}")
    for name in ("tasks", "seeds", "epochs", "batch_size", "hidden", "last", "workers"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix="plasticity_probe_")) if args.quick else DEFAULT_OUT
    return args


def replot(out: Path) -> None:
    """Redraw accuracy.png and reprint the table from an existing results.json."""
    result = json.loads((out / "results.json").read_text())
    cfg = argparse.Namespace(**result["config"])
    plot(result["methods"], out / "accuracy.png", title_of(cfg))
    print(table(result["methods"], min(cfg.last, cfg.tasks), cfg.seeds))
    print(f"\nwall time of that run {result['wall_time_seconds']:.0f} s; "
          f"redrew {out / 'accuracy.png'}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.replot:
        replot(args.out)
        return
    torch.set_num_threads(1)
    x = load_data(args.images)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    jobs = [(m, s, x, args) for m in args.methods for s in seeds]
    runs: dict[str, list[dict]] = {m: [None] * args.seeds for m in args.methods}  # type: ignore
    t0 = time.perf_counter()
    if args.workers == 1:
        results = map(_job, jobs)
    else:
        import multiprocessing as mp

        pool = mp.get_context("spawn").Pool(args.workers)
        results = pool.imap_unordered(_job, jobs)
    for method, seed, rec in results:
        runs[method][seed - args.first_seed] = rec
        acc = rec["accuracy"]
        print(f"{method:9s} seed {seed}: task1 {acc[0]:.3f}  last {acc[-1]:.3f}  "
              f"norm {rec['param_norm'][-1]:.1f}  {rec['seconds']:.1f} s", flush=True)
    if args.workers > 1:
        pool.close()
        pool.join()
    wall = time.perf_counter() - t0

    last = min(args.last, args.tasks)
    summary = summarise(runs, last)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    result = {
        "description": __doc__.split("\n\n")[0],
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "cpus": os.cpu_count(), "torch_threads": 1},
        "config": config,
        "methods_description": {m: METHODS[m] for m in args.methods},
        "accuracy_definition": "accuracy on all training images of the task, with the weights "
                               "at the end of the task (eval mode); last_epoch_accuracy is the "
                               "running minibatch accuracy during the task's last epoch",
        "tuning": TUNING,
        "wall_time_seconds": wall,
        "methods": summary,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    plot(summary, args.out / "accuracy.png", title_of(args))
    print()
    print(table(summary, last, args.seeds))
    print(f"\ntotal wall time {wall:.0f} s ({args.workers} worker(s)); "
          f"wrote {args.out / 'results.json'} and {args.out / 'accuracy.png'}")


if __name__ == "__main__":
    main()
