"""A run SIGKILLed at an arbitrary moment and resumed: it loses at most one checkpoint period,
ends where an uninterrupted run with the same seed ends (step counter, replay buffer), and its
TensorBoard curves neither repeat nor skip a step — including events logged at the very step
of the checkpoint it resumes from (here a task switch). Checkpoints fall on visit ends here
because the environments' own state is not checkpointed (a resume mid-visit starts fresh
episodes, so only a resume at a visit end can be compared transition for transition with an
uninterrupted run). (A forced NaN stop is tested in test_resume.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]
LOG_EVERY, CHECKPOINT_EVERY, VISIT = 50, 600, 600
ARGS = ["--env.tasks", "gym:CartPole-v1", "gym:Acrobot-v1", "--env.steps-per-visit", str(VISIT), "--env.cycles", "2",
        "--dqn.learning-starts", "100", "--dqn.batch-size", "16", "--dqn.hidden", "16", "--monitor.every", "50",
        "--monitor.batch-size", "16", "--eval.episodes", "2", "--eval.random-episodes", "2", "--eval.max-steps", "30",
        "--log-every", str(LOG_EVERY), "--checkpoint-every", str(CHECKPOINT_EVERY), "--replay.capacity", "5000",
        "--no-progress", "--threads", "1", "--seed", "4"]


def _cli(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _scalars(path: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _replay_size(state: dict) -> int:
    """Transitions stored: the slots the storage marks as valid starts."""
    return int(state["replay"]["storage"]["start_valid"].sum())


def test_sigkill_at_any_moment_then_resume_loses_at_most_one_checkpoint_period(tmp_path):
    reference = tmp_path / "uninterrupted"
    proc = _cli([*ARGS, "--run-dir", str(reference)])
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]

    run_dir = tmp_path / "killed"
    proc = _cli([*ARGS, "--run-dir", str(run_dir)])
    ckpt, seen, deadline = run_dir / "checkpoint.pt", set(), time.time() + 300
    while len(seen) < 2 and time.time() < deadline and proc.poll() is None:  # the 2nd checkpoint: step 1200
        if ckpt.exists():
            seen.add(ckpt.stat().st_mtime_ns)
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    time.sleep(0.3)  # somewhere between two checkpoints
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed_from = torch.load(ckpt, weights_only=False)["step"]
    reached = max(step for series in _scalars(run_dir).values() for step, _ in series)  # what the killed run logged
    assert 1200 <= resumed_from < 2400 and resumed_from % CHECKPOINT_EVERY == 0
    assert reached - resumed_from <= CHECKPOINT_EVERY  # at most one checkpoint period lost

    proc = _cli(["--resume", str(run_dir), "--no-progress"])
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]

    final, full = torch.load(ckpt, weights_only=False), torch.load(reference / "checkpoint.pt", weights_only=False)
    assert final["step"] == full["step"] == 2400
    assert _replay_size(final) == _replay_size(full) > 2000
    for key, value in full["replay"]["storage"].items():
        if torch.is_tensor(value):
            assert torch.equal(final["replay"]["storage"][key], value), key  # the same transitions, none twice

    got, want = _scalars(run_dir), _scalars(reference)
    assert set(got) == set(want)
    for tag, series in got.items():
        steps = [s for s, _ in series]
        assert steps == [s for s, _ in want[tag]], tag  # nothing repeated, nothing skipped
        if tag.startswith(("losses/", "plasticity/")) or tag == "charts/SPS":
            assert all(b > a for a, b in zip(steps, steps[1:])), tag
        if tag.startswith("losses/") or tag == "charts/SPS":  # written every --log-every steps
            assert max(b - a for a, b in zip(steps, steps[1:])) <= LOG_EVERY, tag
    assert [s for s, _ in got["task/index"]] == [0, 600, 1200, 1800]
    assert got["losses/td_loss"] == want["losses/td_loss"]  # and the resumed run learned exactly the same


def test_sigterm_at_a_task_switch_stops_after_the_switch_is_recorded(tmp_path, monkeypatch, capsys):
    """The signal arrives inside the step that ends a visit: the run still closes the visit
    (its evaluation row) before it checkpoints, so the resumed run's record has no hole."""
    import json

    import train
    from envs.schedule import TaskSchedule

    step = TaskSchedule.step

    def signalling_step(self, actions):
        res = step(self, actions)
        if res.switch is not None and res.switch.visit == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # delivered before the loop handles the switch
        return res

    monkeypatch.setattr(TaskSchedule, "step", signalling_step)
    rd = tmp_path / "run"
    small = [*ARGS[:ARGS.index("--env.steps-per-visit")], "--env.steps-per-visit", "150",
             *ARGS[ARGS.index("--env.steps-per-visit") + 2:], "--checkpoint-every", "0"]
    try:
        train.main([*small, "--run-dir", str(rd)])
        raise AssertionError("the run was not interrupted")
    except SystemExit as stopped:
        assert stopped.code == 130
    assert "interrupted at step 150; checkpoint written" in capsys.readouterr().err
    state = torch.load(rd / "checkpoint.pt", weights_only=False)
    assert state["step"] == 150
    assert [(v["start"], v["end"]) for v in state["results"]["visits"]] == [(0, 150), (150, None)]
    assert len(state["results"]["matrix"]) == 1  # the ended visit's evaluation is in
    monkeypatch.setattr(TaskSchedule, "step", step)
    assert train.main(["--resume", str(rd), "--no-progress"]) == 0
    results = json.loads((rd / "results.json").read_text())
    assert [(v["start"], v["end"]) for v in results["visits"]] == [(0, 150), (150, 300), (300, 450), (450, 600)]
    assert len(results["matrix"]) == 4 and results["finished"]
