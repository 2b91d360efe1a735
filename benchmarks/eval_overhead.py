"""Share of a run's wall time spent in evaluation (all tasks at every visit end, the random
baselines once), measured inside the same run: the evaluator's own seconds over the run's.

    python benchmarks/eval_overhead.py --preset continual-gym --repeats 3
    python benchmarks/eval_overhead.py --preset quickstart -- --env.steps-per-visit 5000
    python benchmarks/eval_overhead.py --runs sweeps/continual-gym

Everything after `--` is passed to train.py's parser. Each repeat is a fresh run in a
temporary directory; the table gives every repeat. `--runs DIR…` instead reads finished runs
(run or sweep directories): every run's `results.json` records the wall seconds of its loop,
of its evaluations and of its random baselines (`seconds`), so the share of a study's runs
costs nothing more to measure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.speed_common import machine_line  # noqa: E402


def one_run(preset: str, extra: list[str], seed: int) -> dict[str, float]:
    import torch

    import train
    from runner.build import build
    from runner.cli import parse_args
    from runner.logger import RunLogger

    with tempfile.TemporaryDirectory() as tmp:
        cfg, _ = parse_args(["--preset", preset, "--seed", str(seed), "--no-progress", "--run-dir", tmp, *extra])
        t0 = time.perf_counter()
        parts = build(cfg)
        spent = {"evaluate_all": 0.0, "random_baselines": 0.0}
        for name in spent:
            method = getattr(parts.evaluator, name)

            def timed(*args, _method=method, _name=name, **kwargs):
                t = time.perf_counter()
                try:
                    return _method(*args, **kwargs)
                finally:
                    spent[_name] += time.perf_counter() - t

            setattr(parts.evaluator, name, timed)
        log = RunLogger(tmp, [t.name for t in parts.schedule.tasks], parts.schedule.total_steps, progress=False)
        try:
            results = train.train(cfg, parts, log, Path(tmp))
        finally:
            log.close()
            parts.close()
        total = time.perf_counter() - t0
    return {"total_s": total, "eval_s": spent["evaluate_all"], "random_s": spent["random_baselines"],
            "evaluations": len(results.evaluations), "threads": torch.get_num_threads()}


def recorded_runs(paths: list[str]) -> list[dict[str, float]]:
    """The `seconds` of every finished run under `paths` (runs that predate the record are skipped)."""
    rows = []
    for path in map(Path, paths):
        found = [path] if (path / "results.json").is_file() else sorted(p.parent for p in path.rglob("results.json"))
        for run_dir in found:
            results = json.loads((run_dir / "results.json").read_text())
            seconds = results.get("seconds")
            if results.get("finished") and seconds and seconds.get("run"):
                rows.append({"name": run_dir.name, "total_s": seconds["run"], "eval_s": seconds["evaluation"],
                             "random_s": seconds["random"], "evaluations": len(results["evaluations"]),
                             "threads": json.loads((run_dir / "config.json").read_text()).get("threads", 0)})
    if not rows:
        raise SystemExit(f"error: no finished run with recorded seconds under {' '.join(paths)}")
    return rows


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="quickstart")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runs", nargs="+", help="read finished runs' results.json instead of running")
    args = parser.parse_args(argv)
    if args.runs:
        rows = recorded_runs(args.runs)
    else:
        rows = [one_run(args.preset, extra, seed) for seed in range(args.repeats)]
    print(f"# {machine_line(rows[0]['threads'])}")
    print(f"# python benchmarks/eval_overhead.py {' '.join(sys.argv[1:])}")
    print("| repeat or run | run (s) | evaluation (s) | random baselines (s) | evaluations | evaluation share |")
    print("| --- | --- | --- | --- | --- | --- |")
    shares = []
    for i, r in enumerate(rows):
        share = (r["eval_s"] + r["random_s"]) / r["total_s"]
        shares.append(share)
        print(f"| {r.get('name', i)} | {r['total_s']:.1f} | {r['eval_s']:.1f} | {r['random_s']:.1f} | {r['evaluations']} | {100 * share:.1f} % |")
    print(f"median evaluation share: {100 * statistics.median(shares):.1f} %")


if __name__ == "__main__":
    main()
