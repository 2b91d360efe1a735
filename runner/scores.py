"""Continual scores of a run, computed from its ``results.json``; ``train.py scores RUN_DIR``.

Input (``results.json``)::

    {"tasks":  ["CartPole-v1", "Acrobot-v1"],              # schedule order
     "random": [22.3, -498.1],                             # random-policy mean return per task
     "visits": [{"task": 0, "start": 0, "end": 30000}, ...],  # in order
     "matrix": [[r00, r01], [r10, r11], ...],              # matrix[v][t]
     "train_curve": [[[step, return], ...], ...]}          # optional, one list per visit

``matrix[v][t]`` = ``R[v][t]``, the mean greedy return of task ``t`` at the end of visit
``v`` (``null`` where not measured). ``train_curve[v]`` lists the training episodes that
finished during visit ``v`` as ``[env_step, return]`` pairs (a visit entry may instead
carry its own ``"train_curve"`` key). With ``rand_t`` the random return and ``v_k(t)`` the
visit index of task ``t``'s ``k``-th visit (k = 1, 2, ...), and ``V`` the number of rows of
the matrix (visits evaluated so far):

- ``final[t]   = (R[V-1][t] - rand_t) / (R[v_1(t)][t] - rand_t)``;
  ``average_final`` = mean of the non-null ``final[t]``.
- ``plasticity[t][k] = (R[v_k(t)][t] - rand_t) / (R[v_1(t)][t] - rand_t)`` for k >= 2.
- ``forgetting[t][k] = (R[v_k(t)][t] - R[v_{k+1}(t)-1][t]) / (R[v_k(t)][t] - rand_t)``
  for each k whose next visit has begun (row ``v_{k+1}(t)-1`` is the evaluation just
  before the task resumes).
- ``auc[v] = (A_v - rand_t) / (R[v_1(t)][t] - rand_t)`` with ``t`` the task of visit ``v``
  and ``A_v`` the time-average of the training-return curve over the visit: the trapezoid
  integral of return over env steps from the first to the last episode of the visit,
  divided by that span (the single return when one episode finished).

A denominator that is zero or negative, or a missing value, gives ``None`` (JSON
``null``). In a dict or JSON, ``plasticity[t]`` and ``forgetting[t]`` map ``k`` to the
score (JSON keys are strings: ``"2"``).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

Number = float | None


def _value(x: Any) -> Number:
    """A finite float, or None for null / NaN / non-numbers."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _ratio(num: Number, den: Number) -> Number:
    """``num / den``; None when either is missing or ``den <= 0``."""
    if num is None or den is None or den <= 0:
        return None
    return num / den


def _check(results: dict[str, Any]) -> tuple[list[str], list[Number], list[int], list[list[Number]]]:
    """Validated (tasks, random, visit tasks, matrix); one-line ValueError otherwise."""
    if not isinstance(results, dict):
        raise ValueError("results must be a JSON object with tasks, random, visits and matrix")
    for key in ("tasks", "random", "visits", "matrix"):
        if not isinstance(results.get(key), list):
            raise ValueError(f"results has no list {key!r} (needs tasks, random, visits, matrix)")
    tasks = [str(t) for t in results["tasks"]]
    n = len(tasks)
    if len(results["random"]) != n:
        raise ValueError(f"results has {len(results['random'])} random returns for {n} tasks")
    random = [_value(r) for r in results["random"]]
    visit_tasks = []
    for i, visit in enumerate(results["visits"]):
        task = visit.get("task") if isinstance(visit, dict) else None
        if isinstance(task, bool) or not isinstance(task, int) or not 0 <= task < n:
            raise ValueError(f"visit {i} has task {task!r}; expected an index in 0..{n - 1}")
        visit_tasks.append(task)
    matrix = []
    for v, row in enumerate(results["matrix"]):
        if not isinstance(row, list) or len(row) != n:
            raise ValueError(f"matrix row {v} must be a list of {n} returns")
        matrix.append([_value(x) for x in row])
    if len(matrix) > len(visit_tasks):
        raise ValueError(f"matrix has {len(matrix)} rows but only {len(visit_tasks)} visits")
    return tasks, random, visit_tasks, matrix


def visits_of(visit_tasks: list[int], task: int) -> list[int]:
    """``[v_1(t), v_2(t), ...]``: the indices of the visits of ``task``, in order."""
    return [v for v, t in enumerate(visit_tasks) if t == task]


def _curve_mean(curve: Any) -> Number:
    """Time-average of a ``[(step, return), ...]`` curve (trapezoid over steps)."""
    if not isinstance(curve, list) or not curve:
        return None
    try:
        points = sorted((float(s), float(r)) for s, r in curve)
    except (TypeError, ValueError):
        raise ValueError(f"train_curve must be a list of [step, return] pairs, got {curve[:2]!r}...") from None
    if len(points) == 1 or points[-1][0] == points[0][0]:
        return sum(r for _, r in points) / len(points)
    area = sum((s1 - s0) * (r0 + r1) / 2 for (s0, r0), (s1, r1) in zip(points, points[1:]))
    return area / (points[-1][0] - points[0][0])


def _train_curve(results: dict[str, Any], v: int) -> Any:
    curves = results.get("train_curve")
    if isinstance(curves, list) and v < len(curves):
        return curves[v]
    visit = results["visits"][v]
    return visit.get("train_curve") if isinstance(visit, dict) else None


def compute_scores(results: dict[str, Any]) -> dict[str, Any]:
    """The continual scores of a results dict (see the module docstring for the formulas).

    Returns ``{"tasks", "final", "average_final", "plasticity", "forgetting", "auc"}`` with
    ``final[t]`` a float or None, ``plasticity[t]`` / ``forgetting[t]`` dicts ``{k: score}``
    and ``auc[v]`` one entry per visit (None when the visit has no training curve yet).
    """
    tasks, random, visit_tasks, R = _check(results)
    V = len(R)
    final: list[Number] = []
    plasticity: list[dict[int, Number]] = []
    forgetting: list[dict[int, Number]] = []
    first_gap: list[Number] = []  # R[v_1(t)][t] - rand_t
    for t in range(len(tasks)):
        vs = visits_of(visit_tasks, t)
        done = [v for v in vs if v < V]  # visits with an evaluation row
        rand = random[t]

        def gap(v: int) -> Number:
            r = R[v][t]
            return None if r is None or rand is None else r - rand

        first = gap(done[0]) if done else None
        first_gap.append(first)
        final.append(_ratio(gap(V - 1), first) if done else None)
        plasticity.append({k: _ratio(gap(v), first) for k, v in enumerate(done, 1) if k >= 2})
        forg: dict[int, Number] = {}
        for k, (v, nxt) in enumerate(zip(vs, vs[1:]), 1):
            if nxt - 1 >= V:
                break
            learned, before = R[v][t], R[nxt - 1][t]
            lost = None if learned is None or before is None else learned - before
            forg[k] = _ratio(lost, gap(v))
        forgetting.append(forg)
    finite = [f for f in final if f is not None]
    auc: list[Number] = []
    for v, t in enumerate(visit_tasks):
        mean = _curve_mean(_train_curve(results, v))
        num = None if mean is None or random[t] is None else mean - random[t]
        auc.append(_ratio(num, first_gap[t]))
    return {
        "tasks": tasks,
        "final": final,
        "average_final": sum(finite) / len(finite) if finite else None,
        "plasticity": plasticity,
        "forgetting": forgetting,
        "auc": auc,
    }


def load_results(run_dir: str | Path) -> dict[str, Any]:
    """``RUN_DIR/results.json`` as a dict; one-line ValueError when it cannot be read."""
    path = Path(run_dir)
    if not path.is_dir():
        raise ValueError(f"run directory {str(run_dir)!r} does not exist")
    file = path / "results.json"
    if not file.is_file():
        raise ValueError(f"{file} not found: the run has not finished an evaluation yet")
    try:
        return json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{file} is not valid JSON ({err})") from None


def _fmt(x: Number) -> str:
    return "-" if x is None else f"{x:.3f}"


def format_scores(scores: dict[str, Any], results: dict[str, Any]) -> str:
    """A readable table: one row per task, then the per-visit AUC."""
    tasks = scores["tasks"]
    width = max([4] + [len(t) for t in tasks])
    kmax = max([1] + [max(p, default=1) for p in scores["plasticity"]])
    fmax = max([0] + [max(f, default=0) for f in scores["forgetting"]])
    head = [f"{'task':<{width}}", f"{'random':>9}", f"{'final':>7}"]
    head += [f"{'plast k=' + str(k):>11}" for k in range(2, kmax + 1)]
    head += [f"{'forget k=' + str(k):>11}" for k in range(1, fmax + 1)]
    lines = ["  ".join(head)]
    for t, name in enumerate(tasks):
        rand = _value(results["random"][t])
        row = [f"{name:<{width}}", f"{'-' if rand is None else f'{rand:.1f}':>9}", f"{_fmt(scores['final'][t]):>7}"]
        row += [f"{_fmt(scores['plasticity'][t].get(k)):>11}" for k in range(2, kmax + 1)]
        row += [f"{_fmt(scores['forgetting'][t].get(k)):>11}" for k in range(1, fmax + 1)]
        lines.append("  ".join(row))
    lines.append(f"average final: {_fmt(scores['average_final'])}")
    visits = results["visits"]
    lines.append("normalised training AUC per visit: " + "  ".join(
        f"{v}:{tasks[visits[v]['task']]}={_fmt(a)}" for v, a in enumerate(scores["auc"])))
    return "\n".join(lines)


def to_json(scores: dict[str, Any]) -> str:
    """The scores as JSON (``k`` keys become strings, None becomes null)."""
    return json.dumps(scores, indent=2)


def main(argv: list[str]) -> int:
    """``train.py scores RUN_DIR [--json]``: print the scores; exit 2 with one line on bad input."""
    args = list(argv)
    if args and args[0] == "scores":
        args = args[1:]
    as_json = "--json" in args
    rest = [a for a in args if a != "--json"]
    if len(rest) != 1 or rest[0].startswith("-"):
        print("error: usage: python train.py scores RUN_DIR [--json]", file=sys.stderr)
        return 2
    try:
        results = load_results(rest[0])
        scores = compute_scores(results)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(to_json(scores) if as_json else format_scores(scores, results))
    return 0
