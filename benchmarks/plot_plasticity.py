"""Plot plasticity metrics of continual runs from their TensorBoard logs, task switches marked.

    python benchmarks/plot_plasticity.py runs/base runs/redo --labels baseline "ReDo τ=0.1" \
        --out benchmarks/plasticity_runs.png

Panels: dormant ratio, weight norm, and episodic return (smoothed), against environment
steps; dotted vertical lines at every task switch (`task/index` events) with the task names.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

PANELS = [
    ("plasticity/dormant_ratio", "dormant ratio (τ = 0.025)"),
    ("plasticity/weight_norm", "weight norm ‖θ‖"),
    ("charts/episodic_return", "episodic return (smoothed)"),
]


def load(run_dir: str) -> EventAccumulator:
    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def series(acc: EventAccumulator, tag: str) -> tuple[np.ndarray, np.ndarray]:
    events = acc.Scalars(tag) if tag in acc.Tags()["scalars"] else []
    return np.array([e.step for e in events]), np.array([e.value for e in events])


def smooth(x: np.ndarray, y: np.ndarray, cuts: list[int], k: int = 20) -> np.ndarray:
    """Trailing mean over the last `k` points, restarted at each task switch (no mixing of tasks)."""
    out = np.empty_like(y, dtype=float)
    segment = np.searchsorted(np.asarray(cuts), x, side="right")
    for s in np.unique(segment):
        idx = np.flatnonzero(segment == s)
        c = np.cumsum(y[idx], dtype=float)
        n = np.arange(1, len(idx) + 1)
        window = np.minimum(n, k)
        out[idx] = [(c[i] - (c[i - k] if i >= k else 0.0)) / window[i] for i in range(len(idx))]
    return out


def switches(acc: EventAccumulator) -> list[tuple[int, str]]:
    steps, _ = series(acc, "task/index")
    names = []
    if "task/name/text_summary" in acc.Tags()["tensors"]:
        names = [e.tensor_proto.string_val[0].decode() for e in acc.Tensors("task/name/text_summary")]
    return list(zip(steps.tolist(), names or [""] * len(steps)))


def plot(run_dirs: list[str], labels: list[str], out: str, title: str) -> None:
    accs = [load(d) for d in run_dirs]
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(10, 8.5), sharex=True)
    for ax, (tag, ylabel) in zip(axes, PANELS):
        for acc, label in zip(accs, labels):
            x, y = series(acc, tag)
            if tag.startswith("charts/") and len(y):
                y = smooth(x, y, [step for step, _ in switches(acc)])
            ax.plot(x, y, label=label, linewidth=1.4)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        for step, name in switches(accs[0]):
            ax.axvline(step, color="grey", linestyle=":", linewidth=1)
            if ax is axes[0]:
                ax.annotate(name, (step, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -12),
                            textcoords="offset points", fontsize=8, color="dimgrey")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(names), frameon=False)
    axes[-1].set_xlabel("environment steps")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", help="run directories (TensorBoard logs)")
    parser.add_argument("--labels", nargs="+", help="one label per run (default: directory names)")
    parser.add_argument("--out", default="benchmarks/plasticity_runs.png")
    parser.add_argument("--title", default="Continual DQN: plasticity metrics over task switches")
    args = parser.parse_args()
    labels = args.labels or [Path(d).name for d in args.run_dirs]
    if len(labels) != len(args.run_dirs):
        parser.error("give one label per run directory")
    plot(args.run_dirs, labels, args.out, args.title)


if __name__ == "__main__":
    sys.exit(main())
