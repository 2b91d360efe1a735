"""The table printed at the end of a run: each visit's returns beside a random policy's."""

from __future__ import annotations

from runner.logger import VisitRecord


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:9.1f}"


def format_summary(visits: list[VisitRecord], random_baselines: dict[int, float], last: int = 10) -> str:
    """One row per visit: episodes finished, mean of the last `last` training returns,
    the greedy evaluation return at the end of the visit, and a random policy's return."""
    head = f"{'visit':>5}  {'task':<22} {'episodes':>8} {'train (last ' + str(last) + ')':>16} {'eval':>9} {'random':>9}"
    rows = [head, "-" * len(head)]
    for v in visits:
        tail = v.returns[-last:]
        train = sum(tail) / len(tail) if tail else None
        rows.append(f"{v.visit:>5}  {v.name:<22} {len(v.returns):>8} {_fmt(train):>16} {_fmt(v.eval_return)} "
                    f"{_fmt(random_baselines.get(v.task))}")
    return "\n".join(rows)
