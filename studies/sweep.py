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

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studies.grid import RESERVED, expand, parse_grid, parse_seeds
from studies.ray_launcher import RayLauncher, import_ray, start_local_ray
from studies.scheduler import Scheduler
from studies.sweep_state import SweepFile, merge

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


def main(argv: list[str]) -> int:
    if "-h" in argv or "--help" in argv:
        print(USAGE)
        return 0
    try:
        opts, passthrough = parse_sweep_args(argv)
        ray = import_ray()
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
