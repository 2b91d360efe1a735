"""End-to-end wiring in fast runs: evaluation, the random baselines and the summary table; the
prioritized replay driven by the loop; `plasticity/` importing nothing but torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train
from replay.prioritized import PrioritizedSampler

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--env.tasks", "gym:CartPole-v1", "gym:Acrobot-v1", "--env.steps-per-visit", "60", "--env.cycles", "1",
        "--dqn.learning-starts", "20", "--dqn.batch-size", "8", "--dqn.hidden", "8", "--monitor.every", "0",
        "--no-progress"]


def test_evaluation_random_baselines_and_summary_table(tmp_path, capsys):
    rd = tmp_path / "run"
    argv = TINY + ["--eval.episodes", "2", "--eval.random-episodes", "2", "--eval.max-steps", "7", "--run-dir", str(rd)]
    assert train.main(argv) == 0
    out = capsys.readouterr().out
    res = json.loads((rd / "results.json").read_text())
    # CartPole pays 1 a step and Acrobot −1: with a 7-step cap every episode returns ±7 or ends sooner
    cart, acro = res["random"]
    assert 1 <= cart <= 7 and acro == -7.0
    assert len(res["matrix"]) == 2 and all(len(row) == 2 for row in res["matrix"])
    assert all(1 <= row[0] <= 7 and row[1] == -7.0 for row in res["matrix"])
    assert [e["step"] for e in res["evaluations"]] == [60, 120]
    # the table: one row per visit with its task, its evaluation and the random return
    rows = [line.split() for line in out.splitlines() if line.strip().startswith(("0 ", "1 "))]
    assert [r[:2] for r in rows] == [["0", "CartPole-v1"], ["1", "Acrobot-v1"]]
    assert float(rows[0][-2]) == round(res["matrix"][0][0], 1) and float(rows[0][-1]) == round(cart, 1)
    assert float(rows[1][-2]) == round(res["matrix"][1][1], 1) and float(rows[1][-1]) == round(acro, 1)
    # then the continual scores of the run
    from runner.scores import compute_scores, format_scores

    assert format_scores(compute_scores(res), res) in out


def test_random_baselines_are_measured_under_each_tasks_shifts(tmp_path):
    """A reward shift changes a random policy's return, an observation shift does not: the same
    seed plays the same random episodes, so the scaled task's baseline is exactly 3 times the
    plain one and the offset task's equals the plain one."""
    def random_of(tasks: list[str], name: str) -> list[float]:
        rd = tmp_path / name
        assert train.main(TINY[3:] + ["--env.tasks", *tasks, "--eval.episodes", "1", "--eval.random-episodes", "3",
                                      "--eval.max-steps", "200", "--seed", "4", "--run-dir", str(rd)]) == 0
        return json.loads((rd / "results.json").read_text())["random"]

    cart, acro = random_of(["gym:CartPole-v1", "gym:Acrobot-v1"], "plain")
    shifted = random_of(["gym:CartPole-v1@reward-scale:low=3,high=3", "gym:Acrobot-v1@obs-offset:scale=5"], "shifted")
    assert cart > 5 and acro < -100  # real episodes: CartPole +1 a step, Acrobot -1 a step
    assert shifted == pytest.approx([3 * cart, acro])


def test_prioritized_replay_through_train_updates_priorities_and_weights(tmp_path, monkeypatch):
    calls, weights = [], []
    update, sample = PrioritizedSampler.update_priorities, PrioritizedSampler.sample

    def recording_update(self, storage, starts, td_errors_abs):
        calls.append((starts.clone(), td_errors_abs.clone()))
        return update(self, storage, starts, td_errors_abs)

    def recording_sample(self, *args, **kwargs):
        starts, w = sample(self, *args, **kwargs)
        weights.append(w.clone())
        return starts, w

    monkeypatch.setattr(PrioritizedSampler, "update_priorities", recording_update)
    monkeypatch.setattr(PrioritizedSampler, "sample", recording_sample)
    rd = tmp_path / "run"
    assert train.main(TINY + ["--replay.kind", "prioritized", "--eval.episodes", "0", "--eval.random-episodes", "0",
                              "--run-dir", str(rd)]) == 0
    state = torch.load(rd / "checkpoint.pt", weights_only=False)
    updates = state["agent"]["updates"]
    assert updates > 20 and len(calls) == updates == len(weights)  # one priority update per gradient step
    assert all(s.shape == (8,) and t.shape == (8,) for s, t in calls)
    assert any(bool((t > 0).any()) for _, t in calls)
    # once priorities differ, the importance weights do too (max-normalised: 1 for the rarest start)
    assert all(float(w.max()) == 1.0 for w in weights)
    assert any(float(w.min()) < 1.0 for w in weights[1:])


BLOCKER = r"""
import importlib, pathlib, sys
ALLOWED = {"torch", "typing_extensions", "sympy", "mpmath", "filelock", "jinja2", "markupsafe", "fsspec",
           "networkx", "plasticity"}
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if not refused(name):
            return None
        raise ModuleNotFoundError(f"plasticity/ imported {name!r}")
def refused(name):
    top = name.split(".")[0]
    return not (top in sys.stdlib_module_names or top in ALLOWED or top.startswith("_"))
import torch  # torch may load optional packages (numpy): forget them, so a later import must find them
for name in [m for m in sys.modules if refused(m)]:
    del sys.modules[name]
sys.meta_path.insert(0, Refuse())
for f in sorted(pathlib.Path("plasticity").glob("*.py")):
    importlib.import_module("plasticity" if f.stem == "__init__" else f"plasticity.{f.stem}")
print("ok", len(list(pathlib.Path("plasticity").glob("*.py"))))
"""


def test_plasticity_imports_nothing_but_torch():
    # a fresh interpreter in which every package but torch (and torch's own) is refused
    proc = subprocess.run([sys.executable, "-c", BLOCKER], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("ok ") and int(proc.stdout.split()[1]) >= 10
    refused = subprocess.run([sys.executable, "-c", BLOCKER.replace("for f in", "import numpy\nfor f in")],
                             cwd=ROOT, capture_output=True, text=True)
    assert refused.returncode != 0 and "imported 'numpy'" in refused.stderr  # the blocker does block


# --- the loop's cadences against the fakes of tests/test_loop.py --------------------------------

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from tests import test_loop as fakes  # noqa: E402


def _scalars(run_dir):
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def test_loop_logs_each_scalar_at_its_step(tmp_path):
    parts, results, _ = fakes.run(tmp_path)
    s = _scalars(tmp_path)
    assert [st for st, _ in s["charts/epsilon"]] == [4, 8, 12, 16, 20, 24]  # every log_every = 4 steps
    assert [st for st, _ in s["losses/loss"]] == [4, 8, 12, 16, 20, 24]
    assert s["charts/episodic_return"] == [(4, 1.5), (12, 5.5), (20, 9.5)]
    assert s["task/index"] == [(0, 0.0), (6, 1.0), (12, 0.0), (18, 1.0)]
    assert s["eval/A/return"] == [(6, 10.0), (12, 20.0), (18, 30.0), (24, 40.0)]
    assert results.step == 24 and [e["step"] for e in results.evaluations] == [6, 12, 18, 24]


def test_eval_every_evaluates_between_visit_ends_but_not_after_the_last(tmp_path):
    cfg = fakes.TrainConfig(eval=fakes.EvalConfig(episodes=1, every=8), log_every=4, checkpoint_every=0,
                            progress=False)
    parts = fakes.RunParts(fakes.FakeSchedule(), fakes.FakeAgent(), fakes.FakeReplay(), fakes.FakeEvaluator(),
                           fakes.FakeMonitoring())
    log = fakes.RunLogger(str(tmp_path), list(fakes.TASKS), 24, progress=False)
    try:
        results = train.train(cfg, parts, log, tmp_path, save=lambda s: None)
    finally:
        log.close()
    assert [e["step"] for e in results.evaluations] == [6, 8, 12, 16, 18, 24]
    assert len(results.matrix) == 4  # the matrix holds visit ends only


def test_learning_starts_once_the_replay_holds_a_batch(tmp_path, monkeypatch):
    # batch 4, learning_starts 0: the replay holds 2 transitions at step 2, 4 at step 4
    monkeypatch.setattr(fakes.FakeAgent, "batch_size", 4)
    monkeypatch.setattr(fakes.FakeAgent, "learning_starts", 0)
    parts, _, _ = fakes.run(tmp_path)
    assert parts.agent.updates_at[0] == 2  # the update of step 4 happens while acting at step 2's obs


def test_interrupt_says_how_to_continue(tmp_path, capsys):
    cfg = fakes.TrainConfig(eval=fakes.EvalConfig(episodes=0), log_every=4, checkpoint_every=0, progress=False)
    parts = fakes.RunParts(fakes.FakeSchedule(), fakes.FakeAgent(), fakes.FakeReplay(), fakes.FakeEvaluator(),
                           fakes.FakeMonitoring())
    parts.agent.act = lambda obs, task, step: (_ for _ in ()).throw(KeyboardInterrupt) if step == 6 else \
        torch.zeros(obs.shape[0], dtype=torch.long)
    log = fakes.RunLogger(str(tmp_path), list(fakes.TASKS), 24, progress=False)
    try:
        with pytest.raises(SystemExit):
            train.train(cfg, parts, log, tmp_path, save=lambda s: None)
    finally:
        log.close()
    assert f"interrupted at step 6; checkpoint written. Continue with: python train.py --resume {tmp_path}" \
        in capsys.readouterr().err
