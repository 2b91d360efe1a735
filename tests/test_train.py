"""train.py end to end: TensorBoard tags, task switches, checkpoints and resume, bad input,
and same seed → same run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import train

ROOT = Path(__file__).resolve().parents[1]


def events(run_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0, "histograms": 0})
    acc.Reload()
    return acc


def scalars(acc: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def run_cli(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


def start_cli(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_after_first_checkpoint(args: list[str], run_dir: Path) -> int:
    """Start train.py, SIGKILL it once a checkpoint exists; return the checkpoint's step."""
    import torch

    proc = start_cli(args)
    ckpt = run_dir / "checkpoint.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert ckpt.exists(), proc.stderr.read() if proc.poll() is not None else "no checkpoint in time"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return torch.load(ckpt, weights_only=False)["step"]


ATARI_ARGS = [
    "--preset", "atari-cycle", "--env.games", "Pong", "Breakout", "--env.steps-per-visit", "160",
    "--env.cycles", "2", "--env.max-episode-frames", "240", "--dqn.learning-starts", "64",
    "--replay.capacity", "1000", "--monitor.every", "8", "--monitor.batch-size", "32",
    "--monitor.histogram-every", "1", "--log-every", "40", "--no-progress", "--threads", "1",
    "--dqn.activation", "adalin",
    "--plasticity", "swr:lam=1e-3", "redo:tau=0.1,every=10",
]


@pytest.fixture(scope="module")
def atari_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    run_dir = tmp_path_factory.mktemp("atari") / "run"
    proc = run_cli([*ATARI_ARGS, "--run-dir", str(run_dir)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, proc


def test_atari_cycle_logs_every_tag(atari_run):
    run_dir, _ = atari_run
    acc = events(run_dir)
    tags = set(acc.Tags()["scalars"])
    expected = {
        "charts/episodic_return", "charts/episodic_length", "charts/SPS", "charts/epsilon",
        "task/index", "losses/td_loss", "losses/q_values",
        "charts/Pong/episodic_return", "charts/Breakout/episodic_return",
        # the interventions' own scalars (SWR + AdaLin + ReDo in one run)
        "plasticity/swr_scale", "plasticity/redo_recycled",
        # the monitor's
        "plasticity/dormant_ratio", "plasticity/dead_ratio", "plasticity/active_units",
        "plasticity/effective_rank", "plasticity/srank", "plasticity/feature_norm",
        "plasticity/weight_norm", "plasticity/weight_distance_from_init", "plasticity/grad_norm",
        "plasticity/q_mean", "plasticity/q_spread",
    }
    assert expected <= tags, f"missing: {sorted(expected - tags)}"
    assert any(t.startswith("plasticity/dormant_ratio/") for t in tags)
    assert any(t.startswith("plasticity/weight_norm/") for t in tags)
    assert any(t.startswith("plasticity/neuron_scores/") for t in acc.Tags()["histograms"])
    assert "task/name/text_summary" in acc.Tags()["tensors"]
    assert (run_dir / "config.json").is_file() and (run_dir / "checkpoint.pt").is_file()


def test_one_switch_per_visit_in_order(atari_run):
    run_dir, proc = atari_run
    acc = events(run_dir)
    visits = scalars(acc, "task/index")
    assert [v for _, v in visits] == [0, 1, 0, 1]
    assert [s for s, _ in visits] == [0, 160, 320, 480]
    names = [e.tensor_proto.string_val[0].decode() for e in acc.Tensors("task/name/text_summary")]
    assert names == ["Pong", "Breakout", "Pong", "Breakout"]
    # raw returns: Atari rewards are not clipped in the logs (episodes here are 60 agent steps)
    lengths = [v for _, v in scalars(acc, "charts/episodic_length")]
    assert lengths and all(0 < n <= 60 for n in lengths)
    assert "Pong" in proc.stdout and "Breakout" in proc.stdout  # summary table


QUICK_ARGS = [
    "--env.steps-per-visit", "400", "--dqn.learning-starts", "100", "--replay.capacity", "5000",
    "--eval.episodes", "0", "--eval.random-episodes", "0", "--log-every", "100", "--no-progress",
    "--monitor.every", "50",
]


@pytest.mark.slow  # 30 s; test_faults.py (a real SIGKILL) and test_wiring_resume.py (exact, in-process) cover it
def test_kill_then_resume_continues_the_step_count(tmp_path):
    run_dir = tmp_path / "run"
    args = [*QUICK_ARGS, "--env.steps-per-visit", "1500", "--checkpoint-every", "400", "--run-dir", str(run_dir)]
    killed_at = kill_after_first_checkpoint(args, run_dir)
    assert 400 <= killed_at < 6_000
    import torch

    ckpt = run_dir / "checkpoint.pt"
    resumed = run_cli(["--resume", str(run_dir), "--no-progress"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = torch.load(ckpt, weights_only=False)
    assert final["step"] == 6_000
    acc = events(run_dir)
    visits = scalars(acc, "task/index")
    assert [v for _, v in visits] == [0, 1, 0, 1] and [s for s, _ in visits] == [0, 1500, 3000, 4500]
    sps_steps = [s for s, _ in scalars(acc, "charts/SPS")]
    assert sps_steps == sorted(sps_steps) and sps_steps[-1] >= 5_900  # one continuous step axis


def test_sigterm_writes_a_checkpoint_and_exits_cleanly(tmp_path):
    run_dir = tmp_path / "run"
    args = [*QUICK_ARGS, "--env.steps-per-visit", "100000", "--run-dir", str(run_dir)]
    proc = start_cli(args)
    deadline = time.time() + 300
    while not list(run_dir.glob("events.out.tfevents.*")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "--resume" in err
    import torch

    assert torch.load(run_dir / "checkpoint.pt", weights_only=False)["step"] > 0


@pytest.mark.parametrize("args, message", [
    (["--env.games", "Pnog"], "unknown"),
    (["--env.tasks", "gym:CartPol-v1"], "CartPol-v1"),
    (["--preset", "nope"], "unknown preset 'nope'; valid: quickstart"),
    (["--env.steps-per-visit", "0"], "--env.steps-per-visit must be a positive integer, got 0"),
    (["--env.cycles", "-1"], "--env.cycles must be a positive integer, got -1"),
    (["--replay.capacity", "10"], "--replay.capacity (10) must be at least the batch size (64)"),
    (["--plasticity", "swr:lam=2"], "swr: lam must be in (0, 1], got 2"),
    (["--plasticity", "swrr"], "unknown intervention 'swrr'"),
    (["--plasticity", "redo:tauu=1"], "unknown parameter 'tauu' for redo"),
    (["--dqn.lr", "-1"], "--dqn.lr must be > 0, got -1.0"),
    (["--agent", "sac"], "--agent sac needs continuous actions"),
    (["--agent", "foo"], "invalid choice 'foo' for argument '--agent'"),
    (["--dqn.lr", "abc"], "--dqn.lr"),
    (["--resume", "/nonexistent/run"], "no checkpoint.pt there"),
])
def test_bad_input_is_one_line_nonzero_exit_no_run_dir(tmp_path, capsys, args, message):
    run_dir = tmp_path / "run"
    code = train.main([*args, "--run-dir", str(run_dir), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert message in err
    assert not run_dir.exists()


def test_same_seed_same_run(tmp_path):
    args = [*QUICK_ARGS, "--env.steps-per-visit", "1000", "--env.cycles", "1", "--threads", "1",
            "--log-every", "50", "--seed", "3"]
    dirs = []
    for i in range(2):
        d = tmp_path / f"run{i}"
        assert train.main([*args, "--run-dir", str(d)]) == 0
        dirs.append(events(d))
    for tag in ("charts/episodic_return", "losses/td_loss", "losses/q_values", "plasticity/dormant_ratio"):
        a, b = scalars(dirs[0], tag), scalars(dirs[1], tag)
        assert a and a == b, tag
    assert scalars(dirs[0], "losses/td_loss")[-1][0] == 2000  # the first 2000 steps, compared


SAC_ARGS = [
    "--agent", "sac", "--env.tasks", "gym:Pendulum-v1", "gym:MountainCarContinuous-v0",
    "--env.steps-per-visit", "250", "--env.cycles", "2", "--sac.learning-starts", "50",
    "--sac.batch-size", "32", "--sac.hidden", "32", "32", "--replay.capacity", "2000",
    "--monitor.every", "20", "--monitor.batch-size", "32", "--log-every", "50", "--threads", "1",
    "--eval.episodes", "0", "--eval.random-episodes", "0", "--no-progress",
]


def test_sac_continuous_cycle_switches_once_per_visit_and_logs_losses(tmp_path):
    run_dir = tmp_path / "run"
    assert train.main([*SAC_ARGS, "--plasticity", "redo:on=critic,every=20", "--run-dir", str(run_dir)]) == 0
    acc = events(run_dir)
    visits = scalars(acc, "task/index")
    assert [v for _, v in visits] == [0, 1, 0, 1] and [s for s, _ in visits] == [0, 250, 500, 750]
    tags = set(acc.Tags()["scalars"])
    expected = {"losses/qf1_loss", "losses/qf2_loss", "losses/actor_loss", "losses/alpha", "losses/alpha_loss",
                "losses/q_values", "charts/episodic_return", "charts/SPS", "plasticity/actor/dormant_ratio",
                "plasticity/critic/dormant_ratio", "plasticity/policy_entropy", "plasticity/redo_recycled/critic"}
    assert expected <= tags, f"missing: {sorted(expected - tags)}"


def test_sac_resume_after_kill_continues(tmp_path):
    run_dir = tmp_path / "run"
    args = [*SAC_ARGS, "--env.steps-per-visit", "600", "--checkpoint-every", "200", "--run-dir", str(run_dir)]
    assert 200 <= kill_after_first_checkpoint(args, run_dir) < 2400
    import torch

    ckpt = run_dir / "checkpoint.pt"
    resumed = run_cli(["--resume", str(run_dir), "--no-progress"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert torch.load(ckpt, weights_only=False)["step"] == 2400
    visits = scalars(events(run_dir), "task/index")
    assert [s for s, _ in visits] == [0, 600, 1200, 1800]


INTERVENTIONS = ["swr", "l2", "l2init", "clip", "reset", "snp", "redo:every=10", "cbp:maturity=10",
                 "injection", "adalin", "crelu", "layernorm"]


@pytest.mark.parametrize("agent", ["dqn", "sac"])
@pytest.mark.parametrize("spec", INTERVENTIONS)
def test_every_intervention_runs_with_both_agents(tmp_path, agent, spec):
    if agent == "sac":
        if spec == "injection":
            spec = "injection:on=actor,head=mean"  # SAC's networks have no `head`: name one
        args = [*SAC_ARGS, "--env.steps-per-visit", "100", "--monitor.every", "25"]
    else:
        args = [*QUICK_ARGS, "--env.steps-per-visit", "150", "--dqn.learning-starts", "50", "--threads", "1",
                "--monitor.every", "25"]
    run_dir = tmp_path / "run"
    assert train.main([*args, "--plasticity", spec, "--run-dir", str(run_dir)]) == 0
    assert scalars(events(run_dir), "task/index")[-1][1] == 1
