"""`python train.py report SWEEP_OR_RUN_DIRS… --out DIR`: compare methods over seeds.

Reads every finished run under the given directories (a run directory holds `results.json`;
a sweep directory holds run directories), tells methods apart by the options in which their
`config.json` differ (seed, paths and logging cadence aside), pools the seeds of each method,
and writes to `--out`:

- `eval_<task>.png`: the task's evaluation return over steps per method (mean and 95 %
  bootstrap band over seeds), task switches dotted, the task's visits shaded;
- `visit_scores.png`: each task's return at the end of its k-th visit per method;
- `plasticity_metrics.png`: dormant ratio, effective rank and weight norm over steps per
  method (from the TensorBoard events; absent when the runs did not monitor);
- `aggregates.png`, `performance_profiles.png`, `p_improvement.png`: IQM and mean of the
  normalised final scores (`studies.normalise`) with stratified-bootstrap 95 % intervals,
  performance profiles, and the probability of improvement over the baseline (`studies.aggregate`);
- `continual_scores.png`: per method the mean over tasks of the final, plasticity and
  forgetting scores (`train.py scores`; plasticity and forgetting averaged over a task's
  later visits, `studies.normalise.continual_means`) with stratified-bootstrap 95 % intervals;
- `scores.json`: per method the runs' normalised scores and those aggregates; `summary.md`:
  the tables and the figures.

The baseline is the method without `--plasticity`, or `--baseline LABEL`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from studies import normalise

#: config fields that never make two runs different methods
NOT_METHOD = {"seed", "run_dir", "run_name", "resume", "progress", "threads", "device", "checkpoint_every",
              "log_every"}
#: the plasticity metrics drawn over time (TensorBoard `plasticity/<metric>`, or per network with SAC)
METRICS = ("dormant_ratio", "effective_rank", "weight_norm")
#: continual scores aggregated besides the final one (`studies.normalise.continual_means`)
CONTINUAL = ("plasticity", "forgetting")


@dataclass
class RunRecord:
    dir: Path
    config: dict[str, Any]
    results: dict[str, Any]
    scores: list[float | None] = field(default_factory=list)
    continual: dict[str, list[float | None]] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return self.config.get("seed", 0)


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = tuple(value) if isinstance(value, list) else value
    return out


def find_runs(paths: list[str]) -> tuple[list[Path], list[Path]]:
    """(finished run directories, unfinished ones) under `paths`, in order."""
    finished, unfinished = [], []
    for path in map(Path, paths):
        if not path.is_dir():
            raise ValueError(f"{path}: not a directory (give run or sweep directories)")
        found = [path] if (path / "results.json").is_file() else sorted(p.parent for p in path.rglob("results.json"))
        if not found:
            raise ValueError(f"{path}: no results.json in it or below (is it a run or sweep directory?)")
        for run_dir in found:
            results = json.loads((run_dir / "results.json").read_text())
            (finished if results.get("finished") else unfinished).append(run_dir)
    return finished, unfinished


def _fmt(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(map(str, value)) if value else "none"
    return str(value)


def group_methods(records: list[RunRecord]) -> tuple[dict[str, list[RunRecord]], dict[str, dict[str, str]]]:
    """Methods (label → runs) told apart by the options whose values differ between runs, and
    each method's values of those options. The label is `option=value, …`."""
    flat = [flatten(r.config) for r in records]
    keys = sorted({k for f in flat for k in f} - NOT_METHOD)
    swept = [k for k in keys if len({repr(f.get(k)) for f in flat}) > 1]
    methods: dict[str, list[RunRecord]] = {}
    options: dict[str, dict[str, str]] = {}
    for record, f in zip(records, flat):
        values = {k: _fmt(f.get(k)) for k in swept}
        label = ", ".join(f"{k}={v}" for k, v in values.items()) or "all runs"
        methods.setdefault(label, []).append(record)
        options[label] = values
    return methods, options


def pick_baseline(methods: dict[str, list[RunRecord]], requested: str | None) -> str | None:
    if requested is not None:
        if requested not in methods:
            raise ValueError(f"--baseline {requested!r} is not a method; methods: " + "; ".join(methods))
        return requested
    plain = [m for m, runs in methods.items() if not runs[0].config.get("plasticity")]
    return plain[0] if len(plain) == 1 and len(methods) > 1 else None


def load_records(paths: list[str]) -> tuple[list[RunRecord], list[Path]]:
    finished, unfinished = find_runs(paths)
    if not finished:
        raise ValueError("no finished run among " + ", ".join(paths) + f" ({len(unfinished)} unfinished)")
    records = []
    for run_dir in finished:
        config_path = run_dir / "config.json"
        if not config_path.is_file():
            raise ValueError(f"{run_dir}: no config.json (is it a run directory of train.py?)")
        config = json.loads(config_path.read_text())
        results = json.loads((run_dir / "results.json").read_text())
        records.append(RunRecord(run_dir, config, results,
                                 normalise.final_scores(results, normalise.atari_tasks(config)),
                                 normalise.continual_means(results)))
    tasks = {tuple(r.results["tasks"]) for r in records}
    if len(tasks) > 1:
        raise ValueError("the runs have different task lists (" + " | ".join(" ".join(t) for t in sorted(tasks))
                         + "); report each task sequence separately")
    return records, unfinished


def scalar_series(run_dir: Path, wanted: re.Pattern) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """TensorBoard scalars of `run_dir` whose tag matches `wanted`: tag → (steps, values)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 1, "histograms": 1, "images": 1})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["scalars"]:
        if wanted.fullmatch(tag):
            events = acc.Scalars(tag)
            out[tag] = (np.array([e.step for e in events]), np.array([e.value for e in events], dtype=float))
    return out


def metric_pattern() -> re.Pattern:
    names = "|".join(METRICS)
    return re.compile(rf"plasticity/(?:[^/]+/)?(?:{names})")


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


@dataclass
class Report:
    tasks: list[str]
    methods: dict[str, list[RunRecord]]
    options: dict[str, dict[str, str]]
    baseline: str | None
    aggregates: dict[str, dict]
    continual: dict[str, dict[str, dict]]  # "plasticity" / "forgetting" → method → iqm, mean and CIs
    taus: np.ndarray
    profiles: dict[str, tuple[np.ndarray, np.ndarray]]
    figures: dict[str, Any]  # file name → Figure
    metric_tags: list[str]
    reps: int
    seed: int

    def score_table(self, method: str) -> np.ndarray:
        return _table([r.scores for r in self.methods[method]])


def _table(rows: list[list[float | None]]) -> np.ndarray:
    """(runs × tasks) array, NaN where a score does not exist."""
    return np.array([[np.nan if s is None else s for s in row] for row in rows], dtype=float)


def build_report(paths: list[str], baseline: str | None = None, reps: int = 10_000, seed: int = 0) -> Report:
    """Everything the report writes, in memory: the runs by method, the aggregates and the figures."""
    from studies import aggregate, figures

    records, _ = load_records(paths)
    methods, options = group_methods(records)
    base = pick_baseline(methods, baseline)
    tasks = list(records[0].results["tasks"])
    tables = {m: _table([r.scores for r in runs]) for m, runs in methods.items()}
    aggregates = aggregate.aggregates(tables, base, reps, seed)
    continual = {key: aggregate.aggregates(
        {m: _table([r.continual[key] for r in runs]) for m, runs in methods.items()}, None, reps, seed)
        for key in CONTINUAL}
    finite = np.concatenate([t[np.isfinite(t)] for t in tables.values()])
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    taus = np.linspace(min(lo, 0.0), max(hi, 1.0), 81)
    profiles = aggregate.profiles(tables, taus, max(reps // 10, 200), seed)

    first = records[0].results
    switches = [v["start"] for v in first["visits"][1:]]
    figs: dict[str, Any] = {}
    for t, task in enumerate(tasks):
        by_method = {m: [(np.array([e["step"] for e in r.results["evaluations"]]),
                          np.array([e["returns"][t] for e in r.results["evaluations"]], dtype=float))
                         for r in runs if r.results["evaluations"]] for m, runs in methods.items()}
        by_method = {m: s for m, s in by_method.items() if s}
        if by_method:
            visited = [(v["start"], v["end"]) for v in first["visits"] if v["task"] == t]
            figs[f"eval_{_safe(task)}.png"] = figures.eval_returns(task, by_method, switches, visited, seed)
    if any(r.results["matrix"] for r in records):
        figs["visit_scores.png"] = figures.visit_scores(
            tasks, {m: [[normalise.visit_returns(r.results, t) for t in range(len(tasks))] for r in runs]
                    for m, runs in methods.items()}, seed)
    pattern = metric_pattern()
    series = {m: [scalar_series(r.dir, pattern) for r in runs] for m, runs in methods.items()}
    tags = sorted({tag for per_run in series.values() for s in per_run for tag in s},
                  key=lambda tag: (METRICS.index(tag.rsplit("/", 1)[1]), tag))
    if tags:
        by_tag = {m: {tag: [s[tag] for s in per_run if tag in s] for tag in tags} for m, per_run in series.items()}
        figs["plasticity_metrics.png"] = figures.metrics_over_time(tags, by_tag, switches, seed)
    panels = {"IQM": {m: (a["iqm"], a["iqm_ci"]) for m, a in aggregates.items()},
              "mean": {m: (a["mean"], a["mean_ci"]) for m, a in aggregates.items()}}
    figs["aggregates.png"] = figures.intervals(panels, "normalised final score (95 % stratified bootstrap CI)")
    figs["continual_scores.png"] = figures.intervals(
        {"final": panels["mean"], **{key: {m: (a["mean"], a["mean_ci"]) for m, a in continual[key].items()}
                                     for key in CONTINUAL}},
        "continual scores, mean over tasks (95 % stratified bootstrap CI)")
    if profiles:
        figs["performance_profiles.png"] = figures.performance_profiles(taus, profiles)
    if base is not None:
        figs["p_improvement.png"] = figures.intervals(
            {"P(method > baseline)": {m: (a["p_improvement"], a["p_improvement_ci"])
                                      for m, a in aggregates.items() if m != base}},
            f"probability of improvement over {base}")
    return Report(tasks, methods, options, base, aggregates, continual, taus, profiles, figs, tags, reps, seed)


def scores_json(report: Report) -> dict[str, Any]:
    atari = normalise.atari_tasks(next(iter(report.methods.values()))[0].config)
    return {
        "tasks": report.tasks,
        "baseline": report.baseline,
        "normalisation": {t: normalise.normalisation(t, t in atari) for t in report.tasks},
        "bootstrap": {"kind": "stratified (runs within tasks), percentile", "confidence": 0.95, "reps": report.reps,
                      "seed": report.seed},
        "methods": {m: {"options": report.options[m],
                        "runs": [{"dir": str(r.dir), "seed": r.seed, "scores": r.scores, **r.continual}
                                 for r in runs],
                        **report.aggregates[m],
                        "continual": {key: report.continual[key][m] for key in CONTINUAL}}
                    for m, runs in report.methods.items()},
        "performance_profiles": {"tau": report.taus.tolist(),
                                 **{m: v.tolist() for m, (v, _) in report.profiles.items()}},
    }


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _ci(ci: list[float | None]) -> str:
    return "–" if ci[0] is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def summary_md(report: Report, data: dict[str, Any], unfinished: list[Path]) -> str:
    lines = ["# Study report", "",
             f"{sum(len(r) for r in report.methods.values())} finished runs, {len(report.methods)} methods, "
             f"tasks: {', '.join(report.tasks)}. Baseline: {report.baseline or 'none'}.", ""]
    if unfinished:
        lines += [f"Not included (unfinished): {', '.join(str(p) for p in unfinished)}.", ""]
    lines += ["## Aggregate normalised final scores", "",
              f"Stratified-bootstrap 95 % intervals ({report.reps} resamples, seed {report.seed}); "
              "P(improvement) is over the baseline.", "",
              "| method | runs | IQM | IQM 95 % CI | mean | mean 95 % CI | P(improvement) | its 95 % CI |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for m, a in report.aggregates.items():
        lines.append(f"| {m} | {len(report.methods[m])} | {_num(a['iqm'])} | {_ci(a['iqm_ci'])} | {_num(a['mean'])} | "
                     f"{_ci(a['mean_ci'])} | {_num(a['p_improvement'])} | {_ci(a['p_improvement_ci'])} |")
    lines += ["", "![IQM and mean](aggregates.png)", "",
              "## Continual scores", "",
              "Per run and task (`train.py scores`): final = (R_last − random) / (R_first_visit − random); "
              "plasticity = (R at the end of a later visit − random) / (R_first_visit − random), averaged over "
              "the task's later visits (< 1: the task is learned less well when it comes back); forgetting = "
              "(R at a visit's end − R just before the next visit) / (R at the visit's end − random), averaged "
              "over the visits followed by another (> 0: lost in between). Mean over tasks of the mean over "
              "runs, stratified-bootstrap 95 % intervals.", "",
              "| method | final | its 95 % CI | plasticity | its 95 % CI | forgetting | its 95 % CI |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for m, a in report.aggregates.items():
        p, f = report.continual["plasticity"][m], report.continual["forgetting"][m]
        lines.append(f"| {m} | {_num(a['mean'])} | {_ci(a['mean_ci'])} | {_num(p['mean'])} | {_ci(p['mean_ci'])} | "
                     f"{_num(f['mean'])} | {_ci(f['mean_ci'])} |")
    lines += ["", "![continual scores](continual_scores.png)", ""]
    if "performance_profiles.png" in report.figures:
        lines += ["![performance profiles](performance_profiles.png)", ""]
    if "p_improvement.png" in report.figures:
        lines += ["![probability of improvement](p_improvement.png)", ""]
    lines += ["## Normalised final score per run", "",
              "| method | seed | " + " | ".join(report.tasks) + " | run |",
              "| --- | --- | " + " | ".join("---" for _ in report.tasks) + " | --- |"]
    for m, runs in report.methods.items():
        for r in runs:
            lines.append(f"| {m} | {r.seed} | " + " | ".join(_num(s) for s in r.scores) + f" | `{r.dir}` |")
    lines += ["", "Normalisation: " + "; ".join(f"{t}: {n}" for t, n in data["normalisation"].items())
              + ". A dash: the score does not exist (random return unknown, or the first visit did not beat it).", "",
              "## Curves", ""]
    for name in report.figures:
        if name.startswith("eval_"):
            lines += [f"![{name[5:-4]}]({name})", ""]
    if "visit_scores.png" in report.figures:
        lines += ["Return at the end of each visit of a task (a falling line: plasticity lost):", "",
                  "![end-of-visit returns](visit_scores.png)", ""]
    if "plasticity_metrics.png" in report.figures:
        lines += ["![plasticity metrics](plasticity_metrics.png)", ""]
    else:
        lines += ["No plasticity metrics in the runs' TensorBoard events (--monitor.every 0).", ""]
    return "\n".join(lines)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python train.py report", description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="+", help="run directories and sweep directories")
    parser.add_argument("--out", required=True, help="where to write figures, scores.json and summary.md")
    parser.add_argument("--baseline", help="the baseline method's label (default: the one without --plasticity)")
    parser.add_argument("--reps", type=int, default=10_000, help="bootstrap resamples (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    return parser.parse_args(argv)


def write(report: Report, out: Path, unfinished: list[Path]) -> dict[str, Any]:
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    for name, fig in report.figures.items():
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
    data = scores_json(report)
    (out / "scores.json").write_text(json.dumps(data, indent=1))
    (out / "summary.md").write_text(summary_md(report, data, unfinished))
    return data


def main(argv: list[str]) -> int:
    args = parse(argv)
    try:
        if args.reps < 1:
            raise ValueError(f"--reps {args.reps}: must be at least 1")
        try:
            import rliable  # noqa: F401
        except ImportError:
            raise ValueError("the report's aggregates need rliable: pip install 'plasticity-rl[sweep]'") from None
        _, unfinished = find_runs(args.dirs)
        report = build_report(args.dirs, args.baseline, args.reps, args.seed)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path in unfinished:
        print(f"report: {path} is not finished; left out", file=sys.stderr)
    write(report, Path(args.out), unfinished)
    print(f"report: {len(report.methods)} methods, {sum(len(r) for r in report.methods.values())} runs -> "
          f"{args.out}/summary.md")
    return 0
