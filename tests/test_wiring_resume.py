"""Resume equivalence, in-process and small: a run killed right after a checkpoint at a visit
boundary and resumed ends with the same parameters, optimizer and replay contents, RNG states,
results and TensorBoard values as an uninterrupted run with the same seed (docs/DESIGN.md:
at a visit boundary the environments restart exactly as the uninterrupted run's do)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import train
from runner.checkpoint import load_checkpoint

VISIT = 120
ARGS = ["--env.tasks", "gym:CartPole-v1", "gym:Acrobot-v1", "--env.steps-per-visit", str(VISIT),
        "--env.cycles", "1", "--env.num-envs", "2", "--dqn.learning-starts", "40", "--dqn.batch-size", "8",
        "--dqn.hidden", "8", "--dqn.train-freq", "2", "--dqn.target-update-interval", "10",
        "--dqn.exploration-fraction", "0.5", "--log-every", "30", "--monitor.every", "20",
        "--monitor.batch-size", "8", "--eval.episodes", "1", "--eval.random-episodes", "1",
        "--eval.max-steps", "15", "--no-progress"]


class Killed(BaseException):
    """Stops a run right after its first checkpoint is on disk, as a SIGKILL would."""


def assert_same(a, b, path="state"):
    """Exact equality of nested checkpoint states (tensors, arrays, dicts, lists, scalars)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, path
        assert torch.equal(a, b), f"{path} differs"
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), f"{path} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{path}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every TensorBoard scalar of a run directory (all event files, resume purges applied)
    but the wall-clock speed."""
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)]
            for tag in acc.Tags()["scalars"] if tag != "charts/SPS"}


def purge_marks(run_dir: Path) -> list[int]:
    """Steps of the session-start events in a run's event files: a writer created with
    `purge_step=N` writes one at N, telling readers to drop the older events from N on."""
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    marks = []
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in LegacyEventFileLoader(str(path)).Load():
            if event.HasField("session_log") and event.session_log.status == event.session_log.START:
                marks.append(event.step)
    return marks


def runs(base: Path) -> tuple[Path, Path]:
    """An uninterrupted run and a run killed at its first checkpoint and resumed."""
    full, killed = base / "full", base / "killed"
    assert train.main(ARGS + ["--checkpoint-every", "0", "--run-dir", str(full)]) == 0
    save, first = train.save_checkpoint, []

    def save_then_die(run_dir, state):
        save(run_dir, state)
        if not first:
            first.append(state["step"])
            raise Killed

    train.save_checkpoint = save_then_die
    try:
        with pytest.raises(Killed):
            train.main(ARGS + ["--checkpoint-every", str(VISIT), "--run-dir", str(killed)])
    finally:
        train.save_checkpoint = save
    assert first == [VISIT]  # killed at the switch from visit 0 to visit 1
    assert train.main(["--resume", str(killed)]) == 0
    return full, killed


def test_killed_and_resumed_run_ends_with_the_uninterrupted_runs_state_and_tensorboard_values(tmp_path):
    # one test, the runs in its body: mutation testing credits a fixture's work to the first test
    # using it only, and does not count its time (mutants then time out instead of failing)
    runs_ = runs(tmp_path)
    full, killed = (load_checkpoint(d) for d in runs_)
    assert full["step"] == killed["step"] == 2 * VISIT
    assert full["agent"]["updates"] > 50
    # wall-clock seconds are measured, not state: both runs have them, they cannot be equal
    seconds = [state["results"].pop("seconds") for state in (full, killed)]
    assert all(s.keys() == {"run", "evaluation", "random"} and s["run"] > s["evaluation"] > 0 for s in seconds)
    for part in ("agent", "replay", "schedule", "evaluator", "monitoring", "results", "rng", "grad_credit"):
        assert_same(full[part], killed[part], part)
    # the resumed writer marks a purge of every event after the checkpoint's step (a raw reader
    # of the event files sees it; TensorBoard's own reader also drops out-of-order steps)
    assert purge_marks(runs_[1]) == [VISIT + 1] and purge_marks(runs_[0]) == []
    full, killed = (scalars(d) for d in runs_)
    assert {"losses/td_loss", "charts/epsilon", "charts/episodic_return", "task/index"} <= set(full)
    assert any(t.startswith("eval/") for t in full) and any(t.startswith("plasticity/") for t in full)
    assert sorted(full) == sorted(killed)
    for tag in full:
        assert killed[tag] == full[tag], tag
