"""The continual record of a run, kept in memory and in `results.json` in the run directory.

    {"tasks":  ["CartPole-v1", "Acrobot-v1"],          # schedule order
     "random": [22.3, -498.1],                         # a random policy's mean return per task (null if not measured)
     "visits": [{"task": 0, "start": 0, "end": 30000}, ...],   # in order; "end" is null while running
     "matrix": [[r00, r01], [r10, r11], ...],          # matrix[v][t]: mean greedy return of task t at the end of visit v
     "evaluations": [{"step": s, "visit": v, "returns": [...]}, ...],   # every evaluation (visit ends and --eval.every)
     "train_curve": [[[step, return], ...], ...],      # per visit: the training episodes that ended in it
     "step": 60000, "finished": true,
     "seconds": {"run": 412.0, "evaluation": 9.1, "random": 0.4}}  # wall time of the loop (resumes added up),
                                                                   # of evaluate_all and of the random baselines

The file is rewritten atomically (temporary file, rename) after every evaluation and at the
end, so a reader never sees half a file. The continual scores (`runner/scores.py`) are
computed from it; studies read it to aggregate runs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS = "results.json"


@dataclass
class RunResults:
    """Visits, evaluation matrix, random baselines and training returns of one run."""

    tasks: list[str]
    random: list[float | None] = field(default_factory=list)
    visits: list[dict[str, Any]] = field(default_factory=list)
    matrix: list[list[float]] = field(default_factory=list)
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    train_curve: list[list[list[float]]] = field(default_factory=list)
    step: int = 0
    finished: bool = False
    seconds: dict[str, float] = field(default_factory=lambda: {"run": 0.0, "evaluation": 0.0, "random": 0.0})

    def __post_init__(self) -> None:
        if not self.random:
            self.random = [None] * len(self.tasks)

    # --- recording ---------------------------------------------------------------------------

    def start_visit(self, task: int, step: int) -> None:
        self.visits.append({"task": task, "start": step, "end": None})
        self.train_curve.append([])

    def end_visit(self, step: int, returns: list[float] | None) -> None:
        """Close the current visit; `returns[t]` is task t's evaluation (None: not evaluated)."""
        self.visits[-1]["end"] = step
        if returns is not None:
            self.matrix.append([float(r) for r in returns])

    def episode(self, ret: float, step: int) -> None:
        if self.train_curve:
            self.train_curve[-1].append([step, float(ret)])

    def evaluation(self, step: int, returns: list[float]) -> None:
        self.evaluations.append({"step": step, "visit": len(self.visits) - 1, "returns": [float(r) for r in returns]})

    # --- reading -------------------------------------------------------------------------------

    @property
    def current_visit(self) -> int:
        return len(self.visits) - 1

    def visit_eval(self, visit: int) -> float | None:
        """The evaluation return of visit `visit`'s own task at its end (None if not evaluated)."""
        if visit >= len(self.matrix):
            return None
        return self.matrix[visit][self.visits[visit]["task"]]

    # --- persistence ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"tasks": self.tasks, "random": self.random, "visits": self.visits, "matrix": self.matrix,
                "evaluations": self.evaluations, "train_curve": self.train_curve,
                "step": self.step, "finished": self.finished, "seconds": dict(self.seconds)}

    state_dict = to_dict

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, {**self.seconds, **value} if key == "seconds" else value)

    def write(self, run_dir: str | os.PathLike) -> Path:
        """Rewrite run_dir/results.json atomically."""
        final = Path(run_dir) / RESULTS
        tmp = final.with_name(f".{RESULTS}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        os.replace(tmp, final)
        return final


def read_results(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The parsed results.json of a run directory; one-line ValueError when it is missing."""
    path = Path(run_dir) / RESULTS
    if not path.is_file():
        raise ValueError(f"{run_dir}: no {RESULTS} there (is it a run directory of train.py?)")
    return json.loads(path.read_text())
