"""train.py on a MinAtar cycle: one switch per visit, and resume after a kill."""

from __future__ import annotations

import torch

from tests.test_train import events, kill_after_first_checkpoint, run_cli, scalars

MINATAR_ARGS = [
    "--env.tasks", "minatar:Breakout", "minatar:Asterix", "--env.steps-per-visit", "400",
    "--env.cycles", "2", "--env.num-envs", "4", "--dqn.learning-starts", "100",
    "--replay.capacity", "5000", "--eval.episodes", "1", "--eval.random-episodes", "0",
    "--eval.max-steps", "200", "--log-every", "100", "--no-progress", "--monitor.every", "50",
    "--threads", "1",
]


def test_minatar_cycle_switches_once_per_visit_and_resumes_after_a_kill(tmp_path):
    run_dir = tmp_path / "run"
    args = [*MINATAR_ARGS, "--checkpoint-every", "700", "--run-dir", str(run_dir)]
    killed_at = kill_after_first_checkpoint(args, run_dir)
    assert killed_at in (700, 1_400)  # inside a visit (visits start at 0, 400, 800, 1200)
    resumed = run_cli(["--resume", str(run_dir), "--no-progress"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert torch.load(run_dir / "checkpoint.pt", weights_only=False)["step"] == 1_600
    acc = events(run_dir)
    visits = scalars(acc, "task/index")
    assert [v for _, v in visits] == [0, 1, 0, 1] and [s for s, _ in visits] == [0, 400, 800, 1200]
    names = [e.tensor_proto.string_val[0].decode() for e in acc.Tensors("task/name/text_summary")]
    assert names == ["Breakout", "Asterix", "Breakout", "Asterix"]
    assert scalars(acc, "charts/Breakout/episodic_return") and scalars(acc, "charts/Asterix/episodic_return")
    # every task is evaluated at each of the 4 visit ends
    assert [s for s, _ in scalars(acc, "eval/Breakout/return")] == [400, 800, 1200, 1600]
    assert [s for s, _ in scalars(acc, "eval/Asterix/return")] == [400, 800, 1200, 1600]
    assert "Breakout" in resumed.stdout and "Asterix" in resumed.stdout
