"""The table printed at the end of a run: each visit's returns beside a random policy's."""

from __future__ import annotations

from runner.results import RunResults


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:9.1f}"


def format_summary(results: RunResults, last: int = 10) -> str:
    """One row per visit: episodes finished, mean of the last `last` training returns, the
    greedy evaluation return of the visit's task at its end, and a random policy's return."""
    head = f"{'visit':>5}  {'task':<22} {'episodes':>8} {'train (last ' + str(last) + ')':>16} {'eval':>9} {'random':>9}"
    rows = [head, "-" * len(head)]
    for v, visit in enumerate(results.visits):
        task = visit["task"]
        returns = [r for _, r in results.train_curve[v]]
        tail = returns[-last:]
        train = sum(tail) / len(tail) if tail else None
        rows.append(f"{v:>5}  {results.tasks[task]:<22} {len(returns):>8} {_fmt(train):>16} "
                    f"{_fmt(results.visit_eval(v))} {_fmt(results.random[task])}")
    return "\n".join(rows)
