"""The report's figures (matplotlib, Agg). Each function returns its `Figure`; one `Line2D` per
method on every axis (`ax.get_lines()`), bands as `fill_between` polygons, task switches as
`ax.vlines` (a collection, not a line), intervals as `ax.hlines`.

Curves over seeds: the mean, and a 95 % bootstrap band (percentiles 2.5 and 97.5 of the mean of
seeds resampled with replacement, 1000 resamples from `np.random.RandomState(seed)`).
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]
BOOTSTRAP_RESAMPLES = 1000


def mean_and_band(curves: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`curves` (seeds × points) → mean, lower, upper (95 % bootstrap band of the mean over seeds)."""
    mean = curves.mean(axis=0)
    if curves.shape[0] < 2:
        return mean, mean.copy(), mean.copy()
    idx = np.random.RandomState(seed).randint(0, curves.shape[0], size=(BOOTSTRAP_RESAMPLES, curves.shape[0]))
    means = curves[idx].mean(axis=1)  # resamples × points
    lo, hi = np.percentile(means, [2.5, 97.5], axis=0)
    return mean, lo, hi


def align(series: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Several (steps, values) series on one step axis: the steps all of them have, else the
    first series' steps with the others interpolated."""
    common = series[0][0]
    for steps, _ in series[1:]:
        common = np.intersect1d(common, steps)
    if len(common) < 2:
        common = series[0][0]
    rows = [values[np.searchsorted(steps, common)] if np.isin(common, steps).all() else np.interp(common, steps, values)
            for steps, values in series]
    return common, np.stack(rows)


def _curve(ax: Any, steps: np.ndarray, curves: np.ndarray, label: str, color: str, seed: int) -> None:
    mean, lo, hi = mean_and_band(curves, seed)
    ax.plot(steps, mean, label=f"{label} (n={curves.shape[0]})", color=color)
    ax.fill_between(steps, lo, hi, color=color, alpha=0.2, linewidth=0)


def _switches(ax: Any, switch_steps: list[int]) -> None:
    if switch_steps:
        ax.vlines(switch_steps, 0, 1, transform=ax.get_xaxis_transform(), colors="0.6", linestyles=":",
                  linewidth=0.8, label="task switch")


def eval_returns(task: str, by_method: dict[str, list[tuple[np.ndarray, np.ndarray]]], switch_steps: list[int],
                 visited: list[tuple[int, int]], seed: int = 0) -> plt.Figure:
    """Evaluation return of `task` over steps, one line per method; switches dotted, the visits
    of `task` shaded."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (method, series) in enumerate(by_method.items()):
        steps, curves = align(series)
        _curve(ax, steps, curves, method, COLORS[i % len(COLORS)], seed)
    for start, end in visited:
        ax.axvspan(start, end, color="0.9", zorder=0)
    _switches(ax, switch_steps)
    ax.set(title=f"{task}: evaluation return (shaded: its visits)", xlabel="environment steps", ylabel="return")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def visit_scores(tasks: list[str], by_method: dict[str, list[list[list[float]]]], seed: int = 0) -> plt.Figure:
    """Per task, the evaluation return at the end of its k-th visit (k = 1, 2, …), one line per
    method: the plasticity picture (a falling line: each visit learns the task less well)."""
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.6), squeeze=False)
    for t, (task, ax) in enumerate(zip(tasks, axes[0])):
        for i, (method, runs) in enumerate(by_method.items()):
            k = min(len(r[t]) for r in runs)
            if k == 0:
                continue
            curves = np.array([r[t][:k] for r in runs], dtype=float)
            _curve(ax, np.arange(1, k + 1), curves, method, COLORS[i % len(COLORS)], seed)
        ax.set(title=task, xlabel="visit of the task", ylabel="return at the visit's end")
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    return fig


def metrics_over_time(tags: list[str], by_method: dict[str, dict[str, list[tuple[np.ndarray, np.ndarray]]]],
                      switch_steps: list[int], seed: int = 0) -> plt.Figure:
    """One panel per TensorBoard tag (dormant ratio, effective rank, weight norm, …), one line
    per method that logged it."""
    fig, axes = plt.subplots(1, len(tags), figsize=(4.5 * len(tags), 3.6), squeeze=False)
    for tag, ax in zip(tags, axes[0]):
        for i, (method, series) in enumerate(by_method.items()):
            if series.get(tag):
                steps, curves = align(series[tag])
                _curve(ax, steps, curves, method, COLORS[i % len(COLORS)], seed)
        _switches(ax, switch_steps)
        ax.set(title=tag.removeprefix("plasticity/"), xlabel="environment steps")
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    return fig


def intervals(panels: dict[str, dict[str, tuple[float | None, list[float | None]]]], title: str) -> plt.Figure:
    """Point estimates (one marker `Line2D` per method) with 95 % intervals (`hlines`), one
    panel per estimate name; methods top to bottom in the order given."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 0.6 * max(
        len(v) for v in panels.values()) + 1.4), squeeze=False)
    for (name, values), ax in zip(panels.items(), axes[0]):
        methods = list(values)
        for i, method in enumerate(methods):
            point, (lo, hi) = values[method]
            y = len(methods) - 1 - i
            if point is None:
                continue
            ax.hlines([y], [lo], [hi], colors=COLORS[i % len(COLORS)], linewidth=6, alpha=0.5)
            ax.plot([point], [y], marker="|", markersize=14, color="k", linestyle="none", label=method)
        ax.set_yticks(range(len(methods)), labels=methods[::-1])
        ax.set(title=name, ylim=(-0.7, len(methods) - 0.3))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def performance_profiles(taus: np.ndarray, by_method: dict[str, tuple[np.ndarray, np.ndarray]]) -> plt.Figure:
    """Share of run × task scores above τ, one line per method, with its 95 % band."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (method, (values, ci)) in enumerate(by_method.items()):
        color = COLORS[i % len(COLORS)]
        ax.plot(taus, values, label=method, color=color)
        ax.fill_between(taus, ci[0], ci[1], color=color, alpha=0.2, linewidth=0)
    ax.set(xlabel="normalised final score τ", ylabel="fraction of run × task scores > τ", ylim=(0, 1.02),
           title="performance profiles")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig
