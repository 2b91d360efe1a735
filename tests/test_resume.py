"""Resuming a run, in-process: the evaluation seeds of a killed-and-resumed run equal an
uninterrupted run's, a finished run is left alone, options that may change are applied and
the others refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import train
from runner.build import build
from runner.checkpoint import load_checkpoint, save_checkpoint
from runner.cli import parse_args
from runner.logger import RunLogger

TINY = ["--env.tasks", "gym:CartPole-v1", "gym:Acrobot-v1", "--env.steps-per-visit", "120", "--env.cycles", "2",
        "--dqn.learning-starts", "60", "--dqn.batch-size", "16", "--dqn.hidden", "16", "--monitor.every", "0",
        "--eval.episodes", "2", "--eval.random-episodes", "2", "--eval.max-steps", "30", "--no-progress"]


class Stop(Exception):
    """Ends a run right after a checkpoint, like a SIGKILL would."""


def run(run_dir: Path, argv: list[str], resume_state: dict | None = None, stop_after_save: bool = False):
    """Build and train in-process; returns (results, checkpoints, evaluation reset seeds)."""
    cfg, _ = parse_args(argv + ["--run-dir", str(run_dir)]) if resume_state is None else parse_args(argv)
    parts = build(cfg)
    seeds: list[list[int]] = []
    make = parts.evaluator.make_envs

    def recording(task, n):
        envs = make(task, n)
        reset = envs.reset

        def seeded_reset(seed):
            seeds.append([task, *range(seed, seed + n)])  # copy i is seeded seed + i
            return reset(seed)

        envs.reset = seeded_reset
        return envs

    parts.evaluator.make_envs = recording
    saved: list[dict] = []

    def save(state):
        save_checkpoint(run_dir, state)
        saved.append(load_checkpoint(run_dir))
        if stop_after_save:
            raise Stop

    step = resume_state["step"] if resume_state else 0
    log = RunLogger(str(run_dir), [t.name for t in parts.schedule.tasks], parts.schedule.total_steps,
                    start_step=step, progress=False, purge_step=step if resume_state else None)
    try:
        results = train.train(cfg, parts, log, run_dir, resume_state, save=save)
    except Stop:
        results = None
    finally:
        log.close()
        parts.close()
    return results, saved, seeds


def test_killed_and_resumed_run_evaluates_on_the_seeds_of_an_uninterrupted_run(tmp_path):
    full, _, full_seeds = run(tmp_path / "a", TINY + ["--checkpoint-every", "0"])
    _, saved, first_seeds = run(tmp_path / "b", TINY + ["--checkpoint-every", "180"], stop_after_save=True)
    assert saved[0]["step"] == 180  # mid-visit 1: visit 0's evaluation is behind it
    resumed, _, later_seeds = run(tmp_path / "b", ["--resume", str(tmp_path / "b")], resume_state=saved[0])
    assert first_seeds + later_seeds == full_seeds
    # random baselines (2 tasks x 2 episodes) then 4 visit ends x 2 tasks x 2 episodes, no seed twice
    assert len(full_seeds) == 2 + 8
    flat = [s for row in full_seeds for s in row[1:]]
    assert len(set(flat)) == len(flat) == 20
    assert resumed.random == full.random and len(resumed.matrix) == 4
    assert [v["start"] for v in resumed.visits] == [0, 120, 240, 360]


def test_finished_run_resume_prints_one_line_and_changes_nothing(tmp_path, capsys):
    rd = tmp_path / "run"
    assert train.main(TINY + ["--env.cycles", "1", "--run-dir", str(rd)]) == 0
    before = {p.name: p.stat().st_mtime_ns for p in rd.iterdir()}
    capsys.readouterr()
    assert train.main(["--resume", str(rd)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "is finished (step 240" in out[0] and "--env.cycles 2" in out[0]
    assert {p.name: p.stat().st_mtime_ns for p in rd.iterdir()} == before


def test_resume_extends_cycles_and_refuses_other_options(tmp_path, capsys, monkeypatch):
    from agents.dqn import DQN

    switches = []
    on_task_switch = DQN.on_task_switch

    def recording(self, task, step):
        switches.append((task, step))
        return on_task_switch(self, task, step)

    monkeypatch.setattr(DQN, "on_task_switch", recording)
    rd = tmp_path / "run"
    assert train.main(TINY + ["--env.cycles", "1", "--run-dir", str(rd)]) == 0
    assert switches == [(1, 120)]  # a new run starts without a switch
    capsys.readouterr()
    assert train.main(["--resume", str(rd), "--dqn.lr", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "--dqn.lr cannot change when resuming" in err and "--env.cycles" in err
    before = json.loads((rd / "results.json").read_text())["seconds"]
    assert train.main(["--resume", str(rd), "--env.cycles", "2", "--checkpoint-every", "100"]) == 0
    # the finished run continues with a new visit of task 0: the agent hears of that switch too
    assert switches == [(1, 120), (0, 240), (1, 360)]
    results = json.loads((rd / "results.json").read_text())
    # the resumed run's seconds add to the first one's (the random baselines are not measured again)
    assert results["seconds"]["run"] > before["run"] > 0 and results["seconds"]["random"] == before["random"]
    assert results["seconds"]["evaluation"] > before["evaluation"] > 0
    assert [(v["task"], v["start"], v["end"]) for v in results["visits"]] == [
        (0, 0, 120), (1, 120, 240), (0, 240, 360), (1, 360, 480)]
    assert len(results["matrix"]) == 4 and results["finished"] and results["step"] == 480
    assert json.loads((rd / "config.json").read_text())["env"]["cycles"] == 2
    assert train.main(["--resume", str(rd), "--env.cycles", "1"]) == 2  # cannot shrink
    assert "fewer than the run's 2 cycles" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--sac.lr-actor", "0.1"], "--sac.lr-actor is an option of --agent sac, but this run uses --agent dqn"),
    (["--agent", "sac", "--env.tasks", "gym:Pendulum-v1", "--dqn.lr", "0.1"], "--dqn.lr is an option of --agent dqn"),
    (["--no-task-boundaries", "--dqn.epsilon-restart"], "--dqn.epsilon-restart restarts exploration at task switches"),
])
def test_options_that_would_do_nothing_are_refused(tmp_path, capsys, argv, message):
    rd = tmp_path / "run"
    assert train.main(argv + ["--run-dir", str(rd), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not rd.exists()


def test_a_nan_stops_the_run_naming_it_and_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    from agents.dqn import DQN

    update = DQN.update

    def poisoned(self, batch):
        metrics = update(self, batch)
        if self.updates == 150:  # at env step 210: after the checkpoint at 180
            with torch.no_grad():
                self.q.head.bias.fill_(float("nan"))
        return metrics

    monkeypatch.setattr(DQN, "update", poisoned)
    rd = tmp_path / "run"
    assert train.main(TINY + ["--checkpoint-every", "90", "--log-every", "60", "--run-dir", str(rd)]) == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "between step 180 and step 240" in err and "last good checkpoint.pt is kept" in err
    assert "losses/td_loss became nan" in err or "network 'q'" in err
    state = load_checkpoint(rd)
    assert state["step"] == 180
    assert all(torch.isfinite(v).all() for v in state["agent"]["q"]["module"].values())


def test_an_intervention_that_needs_boundaries_is_refused_when_they_are_hidden(tmp_path, capsys):
    rd = tmp_path / "run"
    argv = ["--no-task-boundaries", "--dqn.no-epsilon-restart", "--no-progress", "--run-dir", str(rd)]
    assert train.main(argv + ["--plasticity", "reset:layers=1"]) == 2
    assert "--plasticity reset acts only at task switches" in capsys.readouterr().err
    assert not rd.exists()


def test_a_checkpoint_that_cannot_be_written_stops_the_run_in_one_line_and_keeps_the_last(tmp_path, capsys, monkeypatch):
    from runner.checkpoint import CheckpointWriteError

    real = train.save_checkpoint
    calls = []

    def failing(run_dir, state):
        calls.append(state["step"])
        if len(calls) > 1:
            raise CheckpointWriteError(f"could not write {run_dir}/checkpoint.pt: [Errno 28] No space left on device")
        return real(run_dir, state)

    monkeypatch.setattr(train, "save_checkpoint", failing)
    rd = tmp_path / "run"
    assert train.main(TINY + ["--checkpoint-every", "90", "--run-dir", str(rd)]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and err[0].startswith("error: ")
    assert calls == [90, 180] and load_checkpoint(rd)["step"] == 90
