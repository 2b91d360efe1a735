"""A sweep directory's state: `sweep.json` (the runs and their state, rewritten atomically),
which runs are finished (their `results.json` says so), the arguments of a run's next attempt
(`--resume` from its checkpoint when it has one), and the retry rule after an attempt ends.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

from studies.grid import Run

SWEEP_FILE = "sweep.json"
#: train.py exit codes that another attempt cannot change
NOT_RETRIED = {2: "bad input", 3: "a NaN or Inf stopped it"}


def _results(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError):
        return None


def is_finished(run_dir: Path) -> bool:
    results = _results(run_dir)
    return bool(results and results.get("finished"))


class SweepFile:
    """`sweep.json`: the runs of a sweep directory and their state, rewritten atomically."""

    def __init__(self, sweep_dir: Path):
        self.dir = sweep_dir
        self.path = sweep_dir / SWEEP_FILE

    def load(self) -> list[Run]:
        if not self.path.is_file():
            return []
        data = json.loads(self.path.read_text())
        fields = {f.name for f in dataclasses.fields(Run)}
        return [Run(**{k: v for k, v in r.items() if k in fields}) for r in data["runs"]]

    def save(self, runs: list[Run], extra: dict[str, dict] | None = None) -> None:
        extra = extra or {}
        rows = [{**dataclasses.asdict(r), "dir": r.name, "log": f"logs/{r.name}.log", **extra.get(r.name, {})}
                for r in runs]
        counts = {s: sum(r.state == s for r in runs) for s in ("finished", "running", "failed", "queued")}
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{SWEEP_FILE}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps({"updated": time.strftime("%Y-%m-%dT%H:%M:%S"), "counts": counts, "runs": rows},
                                  indent=1))
        os.replace(tmp, self.path)


def merge(stored: list[Run], wanted: list[Run], sweep_dir: Path) -> list[Run]:
    """This launch's runs: the stored ones (kept, in order) and the new ones; a run's state is
    `finished` if its results.json says so, else `queued`. A name that comes back with other
    options is refused."""
    by_name = {r.name: r for r in stored}
    for run in wanted:
        old = by_name.get(run.name)
        if old is not None and (old.argv, old.seed) != (run.argv, run.seed):
            raise ValueError(f"{sweep_dir}: run {run.name} exists with other options ({' '.join(old.argv)}); "
                             "re-launch with the same options or choose another --out")
    runs = list(stored) + [r for r in wanted if r.name not in by_name]
    for run in runs:
        run.state = "finished" if is_finished(sweep_dir / run.name) else "queued"
        run.attempts, run.returncode, run.error = 0, None, None
    return runs


def attempt_argv(run: Run, sweep_dir: Path) -> list[str]:
    """train.py arguments for the next attempt: resume from the checkpoint if there is one,
    else start afresh (clearing what a run that died before its first checkpoint left)."""
    run_dir = sweep_dir / run.name
    if (run_dir / "checkpoint.pt").is_file():
        return ["--resume", str(run_dir), "--no-progress"]
    if run_dir.exists():
        shutil.rmtree(run_dir)
    return [*run.argv, "--seed", str(run.seed), "--run-dir", str(run_dir), "--no-progress"]


def last_line(log: Path) -> str | None:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return None
    return lines[-1][:300] if lines else None


def after_exit(run: Run, returncode: int | None, retries: int, finished: bool, log_line: str | None) -> str:
    """The run's next state after an attempt ended with `returncode` (None: its Ray worker died).

    finished → `finished`; exit 2 or 3 → `failed` (another attempt cannot help); any other end
    → `queued` again while attempts ≤ retries, else `failed`."""
    run.returncode = returncode
    if returncode == 0 and finished:
        run.error = None
        return "finished"
    if returncode is None:
        why = "its Ray worker died"
    elif returncode < 0:
        why = f"killed by signal {-returncode}"
    elif returncode in NOT_RETRIED:
        run.error = f"exit {returncode} ({NOT_RETRIED[returncode]}): {log_line}"
        return "failed"
    elif returncode == 0:
        why = "exited without finishing"
    else:
        why = f"exit {returncode}"
    run.error = f"{why}: {log_line}" if log_line else why
    return "queued" if run.attempts <= retries else "failed"


def progress_line(runs: list[Run], elapsed: float, finished_here: list[float], concurrency: int) -> str:
    """`sweep: 3/8 done, 2 running, 1 failed, 2 queued; ETA 0:04:10` (mean run time of the runs
    finished in this launch × runs left / runs at once)."""
    count = {s: sum(r.state == s for r in runs) for s in ("finished", "running", "failed", "queued")}
    left = count["running"] + count["queued"]
    if not left:
        eta = _hms(0)
    elif finished_here:
        seconds = sum(finished_here) / len(finished_here) * left / max(1, min(concurrency, left))
        eta = _hms(seconds)
    else:
        eta = "?"
    return (f"sweep: {count['finished']}/{len(runs)} done, {count['running']} running, {count['failed']} failed, "
            f"{count['queued']} queued; elapsed {_hms(elapsed)}, ETA {eta}")


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
