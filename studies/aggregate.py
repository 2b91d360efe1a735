"""Aggregate scores over runs and tasks with `rliable` (Agarwal et al. 2021), NaN-aware.

A method's scores are a (runs × tasks) array of normalised final scores; `NaN` marks a score
that does not exist (see `studies.normalise`). Every estimate below is rliable's on the finite
entries, so on a table without NaN it is exactly rliable's:

- IQM: the mean of the middle 50 % of all run × task scores (`metrics.aggregate_iqm`);
- mean: the mean over tasks of each task's mean over runs (`metrics.aggregate_mean`);
- performance profile at τ: the share of run × task scores above τ;
- probability of improvement P(X > Y): per task the Mann–Whitney U statistic / (n_X n_Y),
  averaged over tasks (`metrics.probability_of_improvement`);

each with a 95 % stratified-bootstrap percentile interval (rliable's bootstrap classes, runs
resampled within each task), drawn afresh from `seed` for every method and estimate, so one
method's interval does not depend on which others are reported.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np


def _rliable():
    warnings.filterwarnings("ignore", message="random_state is deprecated", category=FutureWarning)
    from rliable import library, metrics

    return library, metrics


def iqm(scores: np.ndarray) -> float:
    _, metrics = _rliable()
    finite = scores[np.isfinite(scores)]
    return float(metrics.aggregate_iqm(finite)) if finite.size else float("nan")


def mean(scores: np.ndarray) -> float:
    scores = scores[:, np.isfinite(scores).any(axis=0)]
    if not scores.size:
        return float("nan")
    return float(np.mean(np.nanmean(scores, axis=0)))


def profile(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
    finite = scores[np.isfinite(scores)]
    if not finite.size:
        return np.full(len(taus), np.nan)
    return (finite[:, None] > taus[None, :]).mean(axis=0)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    _, metrics = _rliable()
    per_task = []
    for t in range(x.shape[1]):
        a, b = x[:, t][np.isfinite(x[:, t])], y[:, t][np.isfinite(y[:, t])]
        if a.size and b.size:
            per_task.append(metrics.probability_of_improvement(a[:, None], b[:, None]))
    return float(np.mean(per_task)) if per_task else float("nan")


def interval(scores: np.ndarray | list[np.ndarray], func: Callable[..., float | np.ndarray], reps: int,
             seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(point estimate, 95 % interval as a (2, …) array) of `func` by rliable's stratified
    bootstrap (`StratifiedBootstrap`, or `StratifiedIndependentBootstrap` for a list of tables),
    percentile method. Equal to `np.random.seed(seed)` then `library.get_interval_estimates(…)`
    on tables without NaN; with NaN, the resamples whose estimate is NaN (no finite entry drawn)
    are left out of the percentiles."""
    library, _ = _rliable()

    def vector(*args: np.ndarray) -> np.ndarray:
        return np.atleast_1d(np.asarray(func(*args), dtype=float))

    # rliable's stratified resampling draws from NumPy's global generator (its `random_state`
    # goes to arch, which the overridden index sampling never asks): seed that, then restore it
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        state = np.random.RandomState(seed)
        if isinstance(scores, list):
            bootstrap = library.StratifiedIndependentBootstrap(*scores, random_state=state)
            point = vector(*scores)
        else:
            bootstrap = library.StratifiedBootstrap(scores, random_state=state)
            point = vector(scores)
        draws = np.asarray(bootstrap.apply(vector, reps), dtype=float).reshape(reps, -1)
    finally:
        np.random.set_state(saved)
    if np.isnan(draws).all(axis=0).any():
        return point, np.full((2, draws.shape[1]), np.nan)
    return point, np.nanpercentile(draws, [2.5, 97.5], axis=0)


def _pair(point: np.ndarray, ci: np.ndarray) -> tuple[float | None, list[float | None]]:
    def num(v: float) -> float | None:
        return float(v) if np.isfinite(v) else None

    return num(point[0]), [num(ci[0][0]), num(ci[1][0])]


def aggregates(score_table: dict[str, np.ndarray], baseline: str | None, reps: int, seed: int) -> dict[str, dict]:
    """Per method: `iqm`, `iqm_ci`, `mean`, `mean_ci`, and `p_improvement`, `p_improvement_ci`
    over `baseline` (None for the baseline itself, or without one)."""
    out: dict[str, dict] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # bootstrap samples whose entries are all NaN
        for name, scores in score_table.items():
            entry: dict = {}
            for key, func in (("iqm", iqm), ("mean", mean)):
                if np.isfinite(scores).any():
                    entry[key], entry[f"{key}_ci"] = _pair(*interval(scores, func, reps, seed))
                else:
                    entry[key], entry[f"{key}_ci"] = None, [None, None]
            entry["p_improvement"], entry["p_improvement_ci"] = None, [None, None]
            if baseline is not None and name != baseline:
                pair = [scores, score_table[baseline]]
                if np.isfinite(scores).any() and np.isfinite(score_table[baseline]).any():
                    entry["p_improvement"], entry["p_improvement_ci"] = _pair(
                        *interval(pair, probability_of_improvement, reps, seed))
            out[name] = entry
    return out


def profiles(score_table: dict[str, np.ndarray], taus: np.ndarray, reps: int, seed: int
             ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per method: the performance profile at `taus` and its 95 % band (2 × len(taus))."""
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for name, scores in score_table.items():
            if np.isfinite(scores).any():
                out[name] = interval(scores, lambda s: profile(s, taus), reps, seed)
    return out
