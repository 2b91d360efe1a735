"""The sweep's loop: start queued runs through a `Launcher` (Ray in `studies.ray_launcher`, a
fake in the tests), at most `max_concurrent` at once, and follow each attempt's end with the
retry rule of `studies.sweep_state`.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from studies.grid import Run
from studies.sweep_state import SweepFile, after_exit, attempt_argv, is_finished, last_line, progress_line


class Launcher(Protocol):
    """Starts `train.py ARGV` somewhere and reports how it ended."""

    def submit(self, argv: list[str], log: Path, pid_file: Path) -> Any: ...

    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, int | None]]:
        """The handles that ended within `timeout` seconds, with their exit codes (None: lost)."""
        ...


def _pid_info(pid_file: Path) -> dict:
    try:
        pid, host, worker = pid_file.read_text().split()
        return {"pid": int(pid), "host": host, "worker_pid": int(worker)}
    except (OSError, ValueError):
        return {}


def wait_gone(pid_file: Path, timeout: float = 120.0) -> None:
    """Wait until the process named in `pid_file` (if on this host) has exited, so a retry never
    writes the run directory alongside a dying attempt (one stopped by SIGTERM checkpoints first)."""
    info = _pid_info(pid_file)
    if info.get("host") == socket.gethostname():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(info["pid"], 0)
            except ProcessLookupError:
                break
            except PermissionError:
                pass
            time.sleep(0.1)
    pid_file.unlink(missing_ok=True)


class Scheduler:
    """Runs every queued run through a `Launcher`, at most `max_concurrent` at once, retrying as
    `after_exit` says; `sweep.json` follows every change and a progress line every change (and
    every `report_every` seconds)."""

    def __init__(self, runs: list[Run], sweep_dir: Path, launcher: Launcher, max_concurrent: int, retries: int,
                 say: Callable[[str], None] | None = None, report_every: float = 30.0, settle: float = 0.5):
        self.runs, self.dir, self.launcher = runs, sweep_dir, launcher
        self.max_concurrent, self.retries, self.report_every = max_concurrent, retries, report_every
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self.logs = sweep_dir / "logs"
        self.state_file = SweepFile(sweep_dir)
        self.pending = deque(r for r in runs if r.state == "queued")
        self.active: dict[Any, tuple[Run, float]] = {}
        self.finished_here: list[float] = []  # wall seconds of the runs finished in this launch
        self.t0 = self.last_report = time.monotonic()
        self.settle = settle  # seconds for new processes to write their pid files before sweep.json lists them

    def save(self) -> None:
        extra = {r.name: _pid_info(self.logs / f"{r.name}.pid") for r, _ in self.active.values()}
        self.state_file.save(self.runs, extra)

    def report(self, force: bool = True) -> None:
        if force or time.monotonic() - self.last_report >= self.report_every:
            self.last_report = time.monotonic()
            self.say(progress_line(self.runs, time.monotonic() - self.t0, self.finished_here, self.max_concurrent))

    def start(self, run: Run) -> None:
        log = self.logs / f"{run.name}.log"
        argv = attempt_argv(run, self.dir)
        run.attempts += 1
        run.state = "running"
        with open(log, "a") as f:
            f.write(f"=== attempt {run.attempts}: python train.py {' '.join(argv)}\n")
        self.active[self.launcher.submit(argv, log, self.logs / f"{run.name}.pid")] = (run, time.monotonic())

    def ended(self, handle: Any, code: int | None) -> None:
        run, started = self.active.pop(handle)
        wait_gone(self.logs / f"{run.name}.pid")
        run.seconds += time.monotonic() - started
        run.state = after_exit(run, code, self.retries, is_finished(self.dir / run.name),
                               last_line(self.logs / f"{run.name}.log"))
        if run.state == "finished":
            self.finished_here.append(run.seconds)
        elif run.state == "queued":
            self.say(f"sweep: {run.name} {run.error}; attempt {run.attempts + 1} of {self.retries + 1} follows")
            self.pending.append(run)
        else:
            self.say(f"sweep: {run.name} failed after {run.attempts} attempt(s): {run.error}")

    def run(self) -> list[Run]:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.save()
        self.report()
        try:
            while self.pending or self.active:
                if self.pending and len(self.active) < self.max_concurrent:
                    while self.pending and len(self.active) < self.max_concurrent:
                        self.start(self.pending.popleft())
                    time.sleep(self.settle)
                    self.save()
                    self.report()
                for handle, code in self.launcher.wait(list(self.active), timeout=1.0):
                    self.ended(handle, code)
                    self.save()
                    self.report()
                self.report(force=False)
        except BaseException:  # interrupted: the runs under way are queued for the next launch
            for run, _ in self.active.values():
                run.state = "queued"
            self.active.clear()
            self.save()
            raise
        return self.runs
