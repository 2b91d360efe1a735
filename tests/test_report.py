"""`train.py report`: methods from differing options, normalised scores by hand, rliable's
aggregates against a direct computation with the same bootstrap seed, and the figures checked
through matplotlib's objects against scores.json and the runs' numbers — on synthetic run
directories (results.json, config.json, TensorBoard events by SummaryWriter) and on tiny real runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from torch.utils.tensorboard import SummaryWriter

import train
from studies import aggregate, normalise, report

TASKS = ["CartPole-v1", "Acrobot-v1"]
VISITS = [{"task": 0, "start": 0, "end": 100}, {"task": 1, "start": 100, "end": 200},
          {"task": 0, "start": 200, "end": 300}, {"task": 1, "start": 300, "end": 400}]


def make_run(run_dir: Path, seed: int, plasticity: list[str], matrix: list[list[float]], lr: float = 1e-3,
             random: list[float] = (10.0, -500.0), monitor: bool = True) -> Path:
    run_dir.mkdir(parents=True)
    config = {"seed": seed, "run_dir": str(run_dir), "plasticity": plasticity, "threads": 1,
              "env": {"tasks": ["gym:CartPole-v1", "gym:Acrobot-v1"], "games": [], "steps_per_visit": 100},
              "dqn": {"lr": lr}}
    (run_dir / "config.json").write_text(json.dumps(config))
    results = {"tasks": TASKS, "random": list(random), "visits": VISITS, "matrix": matrix,
               "evaluations": [{"step": v["end"], "visit": i, "returns": row} for i, (v, row) in
                               enumerate(zip(VISITS, matrix))],
               "train_curve": [[] for _ in VISITS], "step": 400, "finished": True}
    (run_dir / "results.json").write_text(json.dumps(results))
    if monitor:
        writer = SummaryWriter(str(run_dir))
        for step in range(50, 401, 50):
            writer.add_scalar("plasticity/dormant_ratio", 0.01 * seed + step / 1000, step)
            writer.add_scalar("plasticity/effective_rank", 10 - step / 100, step)
            writer.add_scalar("plasticity/weight_norm", 1 + seed + step / 100, step)
            writer.add_scalar("plasticity/dormant_ratio/fc1", 0.5, step)  # per layer: not drawn
        writer.close()
    return run_dir


def matrix_for(seed: int, boost: float) -> list[list[float]]:
    return [[50 + 10 * seed + boost, -400.0], [40 + seed, -300 + 20 * seed + boost],
            [60 + 5 * seed + boost, -350.0], [30 + 2 * seed + boost, -250 + 10 * seed]]


@pytest.fixture
def study(tmp_path) -> Path:
    root = tmp_path / "sweep"
    for seed in range(3):
        make_run(root / f"none{seed}", seed, [], matrix_for(seed, 0.0))
        make_run(root / f"swr{seed}", seed, ["swr:lam=1e-2"], matrix_for(seed, 15.0))
    return root


# --- pieces ------------------------------------------------------------------------------------------


def test_final_scores_by_hand():
    results = {"tasks": ["Pong", "CartPole-v1", "Acrobot-v1", "MountainCar-v0"], "random": [None, 20.0, -500.0, -200.0],
               "visits": [{"task": 0}, {"task": 1}, {"task": 2}, {"task": 3}, {"task": 1}],
               "matrix": [[-20.7, 0, 0, 0], [0, 120.0, 0, 0], [0, 0, -300.0, 0], [0, 0, 0, -200.0],
                          [14.6, 70.0, -450.0, -150.0]]}
    scores = normalise.final_scores(results, atari={"Pong"})
    # Pong: (14.6 − (−20.7)) / (14.6 − (−20.7)) = 1 (human-normalised); CartPole: (70 − 20)/(120 − 20)
    # Acrobot: (−450 + 500)/(−300 + 500) = 0.25; MountainCar: first visit did not beat random → None
    assert scores[:3] == pytest.approx([1.0, 0.5, 0.25]) and scores[3] is None
    assert normalise.atari_tasks({"env": {"games": ["Pong"], "tasks": ["gym:CartPole-v1"]}}) == {"Pong"}
    assert normalise.visit_returns(results, 1) == [120.0, 70.0]
    assert normalise.final_scores({**results, "matrix": []}) == [None] * 4


def test_methods_are_told_apart_by_differing_options(tmp_path):
    runs = [make_run(tmp_path / "a", 0, [], matrix_for(0, 0), monitor=False),
            make_run(tmp_path / "b", 1, [], matrix_for(1, 0), monitor=False),
            make_run(tmp_path / "c", 0, ["swr"], matrix_for(0, 0), monitor=False),
            make_run(tmp_path / "d", 0, ["swr"], matrix_for(0, 0), lr=3e-4, monitor=False)]
    records, _ = report.load_records([str(p) for p in runs])
    methods, options = report.group_methods(records)
    assert {m: [r.dir.name for r in rs] for m, rs in methods.items()} == {
        "dqn.lr=0.001, plasticity=none": ["a", "b"], "dqn.lr=0.001, plasticity=swr": ["c"],
        "dqn.lr=0.0003, plasticity=swr": ["d"]}
    assert options["dqn.lr=0.0003, plasticity=swr"] == {"dqn.lr": "0.0003", "plasticity": "swr"}
    assert report.pick_baseline(methods, None) == "dqn.lr=0.001, plasticity=none"
    with pytest.raises(ValueError, match="is not a method"):
        report.pick_baseline(methods, "nope")


def test_iqm_mean_and_improvement_equal_a_direct_rliable_computation_with_the_same_seed():
    from rliable import library, metrics

    table = np.array([[0.1, 0.9, 0.4], [0.5, 0.2, 0.8], [0.3, 0.7, 0.6], [1.2, -0.1, 0.45], [0.05, 0.55, 0.65]])
    other = table[::-1] * 0.8
    got = aggregate.aggregates({"a": table, "b": other}, baseline="b", reps=1000, seed=5)
    # the IQM by hand: 15 scores, the lowest and highest 3 cut, the middle 9 averaged
    middle = np.sort(table.ravel())[3:12]
    assert got["a"]["iqm"] == pytest.approx(middle.mean())
    assert got["a"]["mean"] == pytest.approx(table.mean(axis=0).mean())
    for key, func in (("iqm", metrics.aggregate_iqm), ("mean", metrics.aggregate_mean)):
        np.random.seed(5)  # rliable's stratified resampling draws from NumPy's global generator
        point, ci = library.get_interval_estimates({"a": table}, lambda s: np.array([func(s)]), reps=1000)
        assert got["a"][key] == pytest.approx(point["a"][0])
        assert got["a"][f"{key}_ci"] == pytest.approx(ci["a"][:, 0].tolist())
        assert ci["a"][0, 0] < point["a"][0] < ci["a"][1, 0]
    np.random.seed(5)
    point, ci = library.get_interval_estimates(
        {"ab": [table, other]}, lambda x, y: np.array([metrics.probability_of_improvement(x, y)]), reps=1000)
    assert got["a"]["p_improvement"] == pytest.approx(point["ab"][0])
    assert got["a"]["p_improvement_ci"] == pytest.approx(ci["ab"][:, 0].tolist())
    assert got["b"]["p_improvement"] is None  # the baseline against itself
    # a different seed gives a different interval (the seed is used), the same seed the same one
    assert aggregate.aggregates({"a": table}, None, 1000, 6)["a"]["iqm_ci"] != got["a"]["iqm_ci"]
    assert aggregate.aggregates({"a": table}, None, 1000, 5)["a"]["iqm_ci"] == got["a"]["iqm_ci"]


def test_missing_scores_are_left_out_not_zero():
    table = np.array([[1.0, np.nan], [3.0, 2.0], [5.0, np.nan], [7.0, 4.0]])
    got = aggregate.aggregates({"a": table}, None, reps=200, seed=0)["a"]
    finite = np.array([1.0, 3.0, 5.0, 7.0, 2.0, 4.0])
    assert got["iqm"] == pytest.approx(np.sort(finite)[1:5].mean())
    assert got["mean"] == pytest.approx((4.0 + 3.0) / 2)
    assert None not in got["iqm_ci"] and got["iqm_ci"][0] <= got["iqm"] <= got["iqm_ci"][1]
    assert aggregate.aggregates({"a": np.full((2, 2), np.nan)}, None, 200, 0)["a"]["iqm"] is None


# --- the whole report ----------------------------------------------------------------------------------


def _is_png(path: Path) -> bool:
    import matplotlib.image

    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and matplotlib.image.imread(path).shape[0] > 100


def test_report_figures_draw_one_line_per_method_and_match_scores_json(study, tmp_path):
    rep = report.build_report([str(study)], reps=500, seed=3)
    out = tmp_path / "report"
    data = report.write(rep, out, [])
    expected = {"eval_CartPole-v1.png", "eval_Acrobot-v1.png", "visit_scores.png", "plasticity_metrics.png",
                "aggregates.png", "continual_scores.png", "performance_profiles.png", "p_improvement.png"}
    assert set(rep.figures) == expected
    assert all(_is_png(out / name) for name in expected)
    methods = ["plasticity=none", "plasticity=swr:lam=1e-2"]
    assert list(rep.methods) == methods and rep.baseline == "plasticity=none"

    # evaluation returns: 2 lines (mean over the 3 seeds), 3 task switches marked
    ax = rep.figures["eval_CartPole-v1.png"].axes[0]
    lines = ax.get_lines()
    assert len(lines) == 2
    for line, boost in zip(lines, (0.0, 15.0)):
        assert list(line.get_xdata()) == [100, 200, 300, 400]
        expected_mean = np.mean([[row[0] for row in matrix_for(s, boost)] for s in range(3)], axis=0)
        assert np.allclose(line.get_ydata(), expected_mean)
    (switches,) = [c for c in ax.collections if c.get_label() == "task switch"]
    assert [seg[0][0] for seg in switches.get_segments()] == [100, 200, 300]
    # end-of-visit returns: per task 2 lines over its 2 visits
    for t, ax in enumerate(rep.figures["visit_scores.png"].axes):
        assert len(ax.get_lines()) == 2
        assert np.allclose(ax.get_lines()[1].get_ydata(),
                           np.mean([[matrix_for(s, 15.0)[v][t] for v in (t, t + 2)] for s in range(3)], axis=0))
    # plasticity metrics: 3 panels (per-layer tags left out), 2 lines each
    fig = rep.figures["plasticity_metrics.png"]
    assert [a.get_title() for a in fig.axes] == ["dormant_ratio", "effective_rank", "weight_norm"]
    assert all(len(a.get_lines()) == 2 for a in fig.axes)
    assert np.allclose(fig.axes[2].get_lines()[0].get_ydata(), [2 + s / 100 for s in range(50, 401, 50)])

    # scores.json: the per-run scores and aggregates the aggregate figure draws
    assert set(data["methods"]) == set(methods)
    runs = data["methods"]["plasticity=none"]["runs"]
    assert [r["seed"] for r in runs] == [0, 1, 2]
    m = matrix_for(1, 0.0)
    assert runs[1]["scores"] == pytest.approx([(m[3][0] - 10) / (m[0][0] - 10), (m[3][1] + 500) / (m[1][1] + 500)])
    iqm_ax, mean_ax = rep.figures["aggregates.png"].axes
    for ax, key in ((iqm_ax, "iqm"), (mean_ax, "mean")):
        assert len(ax.get_lines()) == 2
        for line, method in zip(ax.get_lines(), methods):
            assert line.get_label() == method
            assert line.get_xdata()[0] == pytest.approx(data["methods"][method][key])
        spans = sorted((seg[0][0], seg[1][0]) for c in ax.collections for seg in c.get_segments())
        assert np.allclose(spans, sorted(tuple(data["methods"][m][f"{key}_ci"]) for m in methods))
    table = np.array([r["scores"] for r in data["methods"]["plasticity=swr:lam=1e-2"]["runs"]], dtype=float)
    assert data["methods"]["plasticity=swr:lam=1e-2"]["iqm"] == pytest.approx(aggregate.iqm(table))
    (p_line,) = rep.figures["p_improvement.png"].axes[0].get_lines()
    assert p_line.get_xdata()[0] == pytest.approx(data["methods"]["plasticity=swr:lam=1e-2"]["p_improvement"])
    assert data["methods"]["plasticity=swr:lam=1e-2"]["p_improvement"] > 0.5  # the boosted runs do better
    profile_ax = rep.figures["performance_profiles.png"].axes[0]
    assert len(profile_ax.get_lines()) == 2
    for line, method in zip(profile_ax.get_lines(), methods):
        assert np.allclose(line.get_ydata(), data["performance_profiles"][method])
        assert np.allclose(line.get_xdata(), data["performance_profiles"]["tau"])
    # continual scores: plasticity and forgetting per run by hand, their means drawn with the final one's
    for method, boost in zip(methods, (0.0, 15.0)):
        plast, forget = [], []
        for seed, run in enumerate(data["methods"][method]["runs"]):
            m = matrix_for(seed, boost)
            p = [(m[2][0] - 10) / (m[0][0] - 10), (m[3][1] + 500) / (m[1][1] + 500)]
            f = [(m[0][0] - m[1][0]) / (m[0][0] - 10), (m[1][1] - m[2][1]) / (m[1][1] + 500)]
            assert run["plasticity"] == pytest.approx(p) and run["forgetting"] == pytest.approx(f)
            plast.append(p)
            forget.append(f)
        got = data["methods"][method]["continual"]
        assert got["plasticity"]["mean"] == pytest.approx(np.mean(plast))
        assert got["forgetting"]["mean"] == pytest.approx(np.mean(forget))
        assert got["plasticity"]["mean_ci"][0] <= got["plasticity"]["mean"] <= got["plasticity"]["mean_ci"][1]
    final_ax, plast_ax, forget_ax = rep.figures["continual_scores.png"].axes
    for ax, key in ((plast_ax, "plasticity"), (forget_ax, "forgetting")):
        assert [line.get_xdata()[0] for line in ax.get_lines()] == pytest.approx(
            [data["methods"][m]["continual"][key]["mean"] for m in methods])
    assert [line.get_xdata()[0] for line in final_ax.get_lines()] == pytest.approx(
        [data["methods"][m]["mean"] for m in methods])
    summary = (out / "summary.md").read_text()
    assert all(f"]({name})" in summary for name in expected)
    assert f"| plasticity=swr:lam=1e-2 | 3 | {data['methods']['plasticity=swr:lam=1e-2']['iqm']:.3f} |" in summary


def test_report_cli_on_tiny_real_runs(tmp_path, capsys):
    tiny = ["--env.tasks", "gym:CartPole-v1", "gym:Acrobot-v1", "--env.steps-per-visit", "100", "--env.cycles", "2",
            "--dqn.learning-starts", "50", "--dqn.batch-size", "16", "--dqn.hidden", "16", "--monitor.every", "25",
            "--monitor.batch-size", "16", "--eval.episodes", "2", "--eval.random-episodes", "2",
            "--eval.max-steps", "30", "--log-every", "25", "--no-progress", "--threads", "1"]
    for method, extra in (("base", []), ("swr", ["--plasticity", "swr:lam=1e-2"])):
        for seed in (0, 1):
            assert train.main([*tiny, *extra, "--seed", str(seed), "--run-dir", str(tmp_path / "s" / f"{method}{seed}")]) == 0
    out = tmp_path / "report"
    assert train.main(["report", str(tmp_path / "s"), "--out", str(out), "--reps", "300"]) == 0
    assert "2 methods, 4 runs" in capsys.readouterr().out
    data = json.loads((out / "scores.json").read_text())
    assert data["baseline"] == "plasticity=none"
    assert {m: len(v["runs"]) for m, v in data["methods"].items()} == {"plasticity=none": 2,
                                                                       "plasticity=swr:lam=1e-2": 2}
    for name in ("eval_CartPole-v1.png", "eval_Acrobot-v1.png", "visit_scores.png", "plasticity_metrics.png",
                 "aggregates.png", "summary.md"):
        assert (out / name).is_file()
    # the numbers in scores.json are the runs' own results.json scores
    for method in data["methods"].values():
        for run in method["runs"]:
            results = json.loads((Path(run["dir"]) / "results.json").read_text())
            assert run["scores"] == normalise.final_scores(results)


@pytest.mark.parametrize("argv, message", [
    (["/nonexistent"], "not a directory"),
    (["{empty}"], "no results.json"),
    (["{study}", "--baseline", "nope"], "--baseline 'nope' is not a method"),
])
def test_bad_input_is_one_line(study, tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    argv = [a.format(empty=tmp_path / "empty", study=study) for a in argv]
    assert train.main(["report", *argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "out").exists()
