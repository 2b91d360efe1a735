"""Sweeps: the product of option grids and seeds, each run its own `train.py` process, on Ray.

    python train.py sweep --out sweeps/gym --seeds 0-2 --grid plasticity=none,swr,redo \\
        --preset classic-cycle --env.steps-per-visit 20000

`--grid NAME=V1,V2,…` (repeatable) sets `--NAME V` for every value; the runs are the product
of the axes and the seeds (`--seeds 0-2`, `0,3,5`, `0-2,7`). The value `none` leaves the option
out (so `plasticity=none` is the baseline); a value's own commas stay with it when they
continue an intervention's parameters (`redo:tau=0.1,every=1000`), and spaces split a value
into several arguments (`"plasticity=adalin swr"`). Every option that is not the sweep's own
is passed to each run unchanged.

The sweep directory holds one run directory per run (`<axis>=<value>__seed=<n>`), the runs'
output in `logs/<run>.log`, and `sweep.json`: the runs, their options and their state
(`queued`, `running`, `finished`, `failed`), rewritten atomically at every change. A run whose
`results.json` says `"finished": true` is skipped on re-launch (the same command, or just
`--out DIR`). A run that dies (a signal, a crash, a lost Ray worker) is started again, from its
checkpoint with `--resume` when it has one, up to `--retries` times, then reported failed while
the others go on; bad input (exit 2) and a NaN stop (exit 3) are not retried.

Ray (`pip install '.[sweep]'`) runs the processes: a local instance by default, a cluster with
`--ray-address` (the sweep directory must then be on a file system every node sees). The
expansion, the state file and the retry rules are plain Python; Ray only starts processes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

SWEEP_FILE = "sweep.json"
#: a grid value that leaves its option out
OFF = "none"
#: options the sweep sets itself for every run
RESERVED = ("--run-dir", "--run-name", "--seed", "--resume")
#: train.py exit codes that another attempt cannot change
NOT_RETRIED = {2: "bad input", 3: "a NaN or Inf stopped it"}
ROOT = Path(__file__).resolve().parents[1]

USAGE = """usage: python train.py sweep --out DIR [--seeds 0-2] [--grid NAME=V1,V2,...]... [train.py options...]

sweep options (every other option goes to each run unchanged):
  --out DIR              the sweep directory (run directories, logs/, sweep.json); re-launch with the same DIR
  --seeds SPEC           seeds: 0-2, 0,3,5 or 0-2,7 (default 0)
  --grid NAME=V1,V2,...  one axis: --NAME V for each value; 'none' leaves the option out; repeatable
  --retries N            attempts after the first for a run that dies (default 2)
  --ray-address ADDR     an existing Ray cluster (default: a local Ray instance)
  --cpus-per-run X       CPUs Ray reserves per run (default 1)
  --gpus-per-run X       GPU fraction per run (default 0)
  --max-concurrent N     runs at once (default: the cluster's CPUs / --cpus-per-run)"""


# --- expansion ---------------------------------------------------------------------------------


def parse_seeds(spec: str) -> list[int]:
    """`0-2` → [0, 1, 2]; `0,3,5`; `0-2,7`."""
    seeds: list[int] = []
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise ValueError(f"--seeds {spec!r}: expected seeds like 0-2, 0,3,5 or 0-2,7")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        seeds.extend(s for s in range(lo, hi + 1) if s not in seeds)
    return seeds


def split_values(text: str) -> list[str]:
    """Split a grid axis on commas, keeping an intervention's `key=value` parameters together:
    `none,swr,redo:tau=0.1,every=1000` → ["none", "swr", "redo:tau=0.1,every=1000"]."""
    values: list[str] = []
    for piece in text.split(","):
        continues = values and ":" in values[-1].split()[-1] and "=" in piece and ":" not in piece and " " not in piece
        if continues:
            values[-1] += "," + piece
        else:
            values.append(piece.strip())
    if not values or any(not v for v in values):
        raise ValueError(f"--grid ...={text!r}: empty value; write values as V1,V2,...")
    return values


def parse_grid(specs: list[str]) -> list[tuple[str, list[str]]]:
    """`["plasticity=none,swr"]` → [("plasticity", ["none", "swr"])], axes in the order given."""
    axes: list[tuple[str, list[str]]] = []
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip().removeprefix("--")
        if not sep or not name or not values:
            raise ValueError(f"--grid {spec!r}: expected NAME=V1,V2,... (e.g. plasticity=none,swr,redo)")
        if "--" + name in RESERVED:
            raise ValueError(f"--grid {name}: the sweep sets --{name} itself" +
                             ("; use --seeds" if name == "seed" else ""))
        if any(name == n for n, _ in axes):
            raise ValueError(f"--grid {name} is given twice; give all its values in one --grid")
        axes.append((name, split_values(values)))
    return axes


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=+-]+", "_", text).strip("_") or "_"


@dataclass
class Run:
    """One run of a sweep and its state."""

    name: str
    argv: list[str]  # train.py options, without --seed / --run-dir
    seed: int
    options: dict[str, str] = field(default_factory=dict)  # the grid point
    state: str = "queued"  # queued | running | finished | failed
    attempts: int = 0
    returncode: int | None = None
    error: str | None = None
    seconds: float = 0.0


def expand(axes: list[tuple[str, list[str]]], seeds: list[int], passthrough: list[str]) -> list[Run]:
    """The runs: every combination of the axes' values, for every seed (seed innermost)."""
    points: list[dict[str, str]] = [{}]
    for name, values in axes:
        points = [{**p, name: v} for p in points for v in values]
    runs, names = [], set()
    for point in points:
        grid_argv: list[str] = []
        for name, value in point.items():
            if value != OFF:
                grid_argv += ["--" + name, *value.split()]
        label = "__".join(f"{n}={_safe(v)}" for n, v in point.items())
        for seed in seeds:
            name = f"{label}__seed={seed}" if label else f"seed={seed}"
            base, i = name, 1
            while name in names:  # two values that read the same once made safe for a path
                i += 1
                name = f"{base}_{i}"
            names.add(name)
            runs.append(Run(name=name, argv=[*passthrough, *grid_argv], seed=seed, options=dict(point)))
    return runs


# --- the sweep's command line ----------------------------------------------------------------


@dataclass
class SweepOptions:
    out: Path
    seeds: list[int] | None = None
    grid: list[str] = field(default_factory=list)
    retries: int = 2
    ray_address: str | None = None
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0
    max_concurrent: int | None = None


_OWN = {"--out": "out", "--seeds": "seeds", "--grid": "grid", "--retries": "retries", "--ray-address": "ray_address",
        "--cpus-per-run": "cpus_per_run", "--gpus-per-run": "gpus_per_run", "--max-concurrent": "max_concurrent"}


def _number(flag: str, text: str, kind: type, low: float) -> Any:
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or value < low:
        raise ValueError(f"{flag} {text!r}: expected a {'whole ' if kind is int else ''}number >= {low}")
    return value


def parse_sweep_args(argv: list[str]) -> tuple[SweepOptions, list[str]]:
    """The sweep's own options, and the rest (passed to every run unchanged)."""
    own: dict[str, Any] = {"grid": []}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        flag, eq, inline = arg.partition("=")
        if flag in _OWN:
            if eq:
                value = inline
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                i += 1
                value = argv[i]
            else:
                raise ValueError(f"{flag} needs a value")
            key = _OWN[flag]
            if key == "grid":
                own["grid"].append(value)
            else:
                own[key] = value
        else:
            if flag in RESERVED:
                raise ValueError(f"{flag}: the sweep sets it for each run" + ("; use --seeds" if flag == "--seed" else ""))
            rest.append(arg)
        i += 1
    if "out" not in own:
        raise ValueError("--out DIR is required (the sweep directory)")
    opts = SweepOptions(out=Path(own["out"]), grid=own["grid"], ray_address=own.get("ray_address"))
    if "seeds" in own:
        opts.seeds = parse_seeds(own["seeds"])
    if "retries" in own:
        opts.retries = _number("--retries", own["retries"], int, 0)
    if "cpus_per_run" in own:
        opts.cpus_per_run = _number("--cpus-per-run", own["cpus_per_run"], float, 0)
    if "gpus_per_run" in own:
        opts.gpus_per_run = _number("--gpus-per-run", own["gpus_per_run"], float, 0)
    if "max_concurrent" in own:
        opts.max_concurrent = _number("--max-concurrent", own["max_concurrent"], int, 1)
    return opts, rest


# --- the state file ------------------------------------------------------------------------------


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


# --- one attempt and what follows it ----------------------------------------------------------------


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


# --- the loop ---------------------------------------------------------------------------------------


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


# --- Ray ---------------------------------------------------------------------------------------------


def _run_train_process(argv: list[str], log: str, pid_file: str, root: str, cwd: str) -> int:
    """Body of the Ray task: `python ROOT/train.py ARGV` in `cwd` (the sweep's working directory,
    else `root`), output appended to `log`; the child
    gets SIGTERM (it checkpoints) if this worker dies. Uses only the standard library, so Ray
    ships it by value and a cluster worker needs no copy of this module."""
    import ctypes
    import os
    import signal
    import socket
    import subprocess
    import sys

    def die_with_parent() -> None:
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:  # not Linux: the child may outlive a killed worker
            pass

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "a") as out:
        proc = subprocess.Popen([sys.executable, os.path.join(root, "train.py"), *argv], env=env,
                                cwd=cwd if os.path.isdir(cwd) else root,
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                preexec_fn=die_with_parent if sys.platform.startswith("linux") else None)
        with open(pid_file, "w") as f:
            f.write(f"{proc.pid} {socket.gethostname()} {os.getpid()}\n")  # the run, its host, the Ray worker
        return proc.wait()


class RayLauncher:
    """Each attempt is one Ray task (`num_cpus`, `num_gpus` reserved) that runs the process."""

    def __init__(self, ray: Any, cpus: float, gpus: float):
        self.ray = ray
        self.task = ray.remote(_run_train_process).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)

    def submit(self, argv: list[str], log: Path, pid_file: Path) -> Any:
        return self.task.remote(argv, str(log.resolve()), str(pid_file.resolve()), str(ROOT), os.getcwd())

    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, int | None]]:
        ready, _ = self.ray.wait(handles, num_returns=len(handles), timeout=timeout)
        out = []
        for ref in ready:
            try:
                out.append((ref, int(self.ray.get(ref))))
            except self.ray.exceptions.RayError:  # the worker died (or was lost with its node)
                out.append((ref, None))
        return out


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ValueError("the sweep runs on Ray, which is not installed: pip install 'plasticity-rl[sweep]' "
                         "(or pip install ray)") from None
    return ray


def start_local_ray(ray: Any) -> None:
    """Start a local Ray instance whose workers, and so the runs, get this process's niceness:
    Ray starts its workers at niceness 15 otherwise, so any other job on the machine would take
    the CPU from the runs. `RAY_worker_niceness` set in the environment wins."""
    if hasattr(os, "getpriority"):
        os.environ.setdefault("RAY_worker_niceness", str(os.getpriority(os.PRIO_PROCESS, 0)))
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)


def main(argv: list[str]) -> int:
    if "-h" in argv or "--help" in argv:
        print(USAGE)
        return 0
    try:
        opts, passthrough = parse_sweep_args(argv)
        ray = _import_ray()
        sweep_dir = opts.out.resolve()  # run directories are absolute: the processes may start elsewhere
        stored = SweepFile(sweep_dir).load()
        if not stored and opts.seeds is None and not opts.grid and not passthrough and not sweep_dir.exists():
            raise ValueError(f"--out {sweep_dir}: no sweep there yet; give its runs (--seeds, --grid, train.py options)")
        relaunch_only = stored and opts.seeds is None and not opts.grid and not passthrough
        wanted = [] if relaunch_only else expand(parse_grid(opts.grid), opts.seeds or [0], passthrough)
        runs = merge(stored, wanted, sweep_dir)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    skipped = sum(r.state == "finished" for r in runs)
    if skipped:
        print(f"sweep: {skipped} of {len(runs)} runs already finished; skipped", file=sys.stderr)
    if skipped == len(runs):
        SweepFile(sweep_dir).save(runs)
        print(f"sweep: {len(runs)}/{len(runs)} runs finished in {sweep_dir}")
        return 0
    owned = not ray.is_initialized()
    if owned and opts.ray_address:
        ray.init(address=opts.ray_address, log_to_driver=False, configure_logging=False)
    elif owned:
        start_local_ray(ray)
    try:
        cpus = ray.cluster_resources().get("CPU", 1.0)
        concurrency = opts.max_concurrent or max(1, int(cpus // opts.cpus_per_run) if opts.cpus_per_run else int(cpus))
        Scheduler(runs, sweep_dir, RayLauncher(ray, opts.cpus_per_run, opts.gpus_per_run), concurrency, opts.retries).run()
    except KeyboardInterrupt:
        print(f"\nsweep interrupted; the running runs checkpoint on the way out. Continue with: "
              f"python train.py sweep --out {sweep_dir}", file=sys.stderr)
        return 130
    finally:
        if owned:
            ray.shutdown()
    failed = [r for r in runs if r.state == "failed"]
    for run in failed:
        print(f"failed: {run.name} after {run.attempts} attempt(s): {run.error} (log: {sweep_dir / 'logs' / run.name}.log)",
              file=sys.stderr)
    print(f"sweep: {len(runs) - len(failed)}/{len(runs)} runs finished in {sweep_dir}"
          + (f"; {len(failed)} failed" if failed else ""))
    return 1 if failed else 0
