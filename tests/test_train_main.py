"""`train.main` in-process around the loop: what a failed run leaves behind (nothing for a new
run that failed before its first checkpoint; the TensorBoard events of one that diverged), the
exit codes and one-line errors, the parts closed, and what a finished run prints and writes."""

from __future__ import annotations

import json
import sys
import time

import pytest

import train
from runner.build import build

TINY = ["--env.tasks", "gym:CartPole-v1", "gym:Acrobot-v1", "--env.steps-per-visit", "40", "--env.cycles", "1",
        "--dqn.learning-starts", "20", "--dqn.batch-size", "8", "--dqn.hidden", "8", "--monitor.every", "0",
        "--eval.episodes", "0", "--eval.random-episodes", "0", "--no-progress"]


@pytest.fixture
def built(monkeypatch):
    """The parts `main` builds, with `close()` recorded."""
    made = []

    def recording_build(cfg):
        parts = build(cfg)
        close = parts.close
        parts.closed = 0

        def counted():
            parts.closed += 1
            close()

        parts.close = counted
        made.append(parts)
        return parts

    monkeypatch.setattr(train, "build", recording_build)
    return made


def failing_train(exc):
    def run(cfg, parts, log, run_dir, resume_state=None, save=None):
        raise exc
    return run


def test_a_new_run_that_fails_before_its_first_checkpoint_leaves_nothing(tmp_path, monkeypatch, built):
    rd = tmp_path / "a" / "run"
    monkeypatch.setattr(train, "train", failing_train(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        train.main(TINY + ["--run-dir", str(rd)])
    assert not rd.exists() and (tmp_path / "a").is_dir()  # only the run directory itself is removed
    assert built[0].closed == 1


def test_a_failure_in_an_existing_directory_keeps_it(tmp_path, monkeypatch, built):
    rd = tmp_path / "run"
    rd.mkdir()  # empty: a run may start in it
    monkeypatch.setattr(train, "train", failing_train(RuntimeError("boom")))
    with pytest.raises(RuntimeError):
        train.main(TINY + ["--run-dir", str(rd)])
    assert json.loads((rd / "config.json").read_text())["env"]["steps_per_visit"] == 40
    assert built[0].closed == 1


def test_a_run_that_diverges_before_its_first_checkpoint_keeps_its_events(tmp_path, monkeypatch, capsys, built):
    rd = tmp_path / "run"
    monkeypatch.setattr(train, "train", failing_train(train.NonFiniteError("losses/td_loss became nan")))
    assert train.main(TINY + ["--run-dir", str(rd)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: losses/td_loss became nan; the run stops (no checkpoint was written)"]
    assert any(p.name.startswith("events.out.tfevents") for p in rd.iterdir())
    assert built[0].closed == 1


def test_a_first_checkpoint_that_cannot_be_written_keeps_the_run_directory(tmp_path, monkeypatch, capsys, built):
    rd = tmp_path / "run"

    def refuse(run_dir, state):
        raise train.CheckpointWriteError(f"could not write the checkpoint {run_dir}/checkpoint.pt: Read-only")

    monkeypatch.setattr(train, "save_checkpoint", refuse)
    assert train.main(TINY + ["--checkpoint-every", "30", "--run-dir", str(rd)]) == 4
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: could not write the checkpoint {rd}/checkpoint.pt: Read-only; the run stops"]
    assert (rd / "config.json").is_file() and not (rd / "checkpoint.pt").exists()
    assert built[0].closed == 1


def test_bad_input_is_one_line_and_exit_2_before_anything_is_written(tmp_path, capsys):
    rd = tmp_path / "run"
    assert train.main(TINY + ["--env.steps-per-visit", "0", "--run-dir", str(rd)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and not rd.exists()


def test_a_finished_run_prints_its_summary_and_scores_and_tags_the_summary(tmp_path, capsys, built):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rd = tmp_path / "run"
    assert train.main(TINY + ["--run-dir", str(rd)]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[-1].startswith("done in ") and lines[-1].endswith(f"s; TensorBoard: tensorboard --logdir {rd}")
    assert "CartPole-v1" in out and "Acrobot-v1" in out
    results = json.loads((rd / "results.json").read_text())
    assert results["finished"] and results["step"] == 80
    acc = EventAccumulator(str(rd), size_guidance={"tensors": 0})
    acc.Reload()
    summary = [e for e in acc.Tensors("summary/text_summary")]
    assert [e.step for e in summary] == [80]
    text = summary[0].tensor_proto.string_val[0].decode()
    assert text.startswith("<pre>") and text.endswith("</pre>") and "CartPole-v1" in text
    assert built[0].closed == 1


def test_the_first_signal_asks_to_stop_the_second_stops_at_once():
    stop = train.StopRequest()
    assert stop.requested is False
    stop(15, None)
    assert stop.requested is True
    with pytest.raises(SystemExit) as exit_info:
        stop(2, None)
    assert exit_info.value.code == 130


def test_subcommands_get_the_rest_of_the_command_line(monkeypatch):
    import runner.scores

    got = []
    monkeypatch.setattr(runner.scores, "main", lambda argv: got.append(argv) or 7)
    assert train.main(["scores", "runs/x", "--json"]) == 7
    monkeypatch.setattr(sys, "argv", ["train.py", "scores", "runs/y"])
    assert train.main() == 7  # the command line itself when no argv is given
    assert got == [["runs/x", "--json"], ["runs/y"]]


def test_a_run_that_diverges_after_a_checkpoint_says_it_is_kept(tmp_path, monkeypatch, capsys, built):
    rd = tmp_path / "run"

    def diverging(cfg, parts, log, run_dir, resume_state=None, save=None):
        (run_dir / "checkpoint.pt").write_bytes(b"the last good one")
        raise train.NonFiniteError("the parameters of network 'q' became non-finite between step 90 and step 120")

    monkeypatch.setattr(train, "train", diverging)
    assert train.main(TINY + ["--run-dir", str(rd)]) == 3
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: the parameters of network 'q' became non-finite between step 90 and step 120; the run stops "
        "(the last good checkpoint.pt is kept)"]
    assert (rd / "checkpoint.pt").read_bytes() == b"the last good one"


def test_a_logger_that_cannot_start_fails_with_its_own_error_and_leaves_nothing(tmp_path, monkeypatch, built):
    def no_logger(*args, **kwargs):
        raise RuntimeError("cannot open the event file")

    monkeypatch.setattr(train, "RunLogger", no_logger)
    rd = tmp_path / "run"
    with pytest.raises(RuntimeError, match="^cannot open the event file$"):
        train.main(TINY + ["--run-dir", str(rd)])
    assert not rd.exists() and built[0].closed == 1


def test_the_layout_is_added_to_a_new_run_only_and_the_config_is_readable(tmp_path, monkeypatch, capsys):
    calls = []
    layout = train.add_continual_layout
    monkeypatch.setattr(train, "add_continual_layout", lambda writer, tasks, nets: (calls.append((tasks, nets)),
                                                                                     layout(writer, tasks, nets)))
    rd = tmp_path / "run"
    t0 = time.perf_counter()
    assert train.main(TINY + ["--run-dir", str(rd)]) == 0
    elapsed = time.perf_counter() - t0
    assert calls == [(["CartPole-v1", "Acrobot-v1"], ["q"])]
    done = capsys.readouterr().out.strip().splitlines()[-1]
    assert 0 <= int(done.removeprefix("done in ").split("s;")[0]) <= elapsed + 1  # the run's own wall time
    assert (rd / "config.json").read_text().startswith('{\n  "')  # indented for reading
    assert train.main(["--resume", str(rd), "--env.cycles", "2"]) == 0
    assert len(calls) == 1  # a resumed run keeps the layout it has
