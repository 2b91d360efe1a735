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


def test_sticky_actions_and_the_time_cap_reach_the_minatar_envs_from_the_command_line(tmp_path):
    from runner.build import build
    from runner.cli import parse_args

    argv = ["--env.tasks", "minatar:Freeway", "--env.num-envs", "3", "--env.sticky-actions", "0",
            "--env.max-episode-steps", "7", "--run-dir", str(tmp_path / "run"), "--no-progress"]
    parts = build(parse_args(argv)[0])
    try:
        env = parts.schedule._envs[0]
        eval_env = parts.schedule.make_eval_envs(0, 2).env
        single = parts.schedule.make_eval_env(0)  # one gymnasium env, as for host tasks
        for e in (env, eval_env, single.unwrapped._env):
            assert e.game.sticky_action_prob == 0.0 and e.channels == 7
        assert env.max_episode_steps == eval_env.max_episode_steps == single.max_episode_steps == 7
        assert single.observation_space.shape == (7, 10, 10)  # a single game keeps its channels
        parts.schedule.reset()
        ends = [parts.schedule.step(torch.zeros(3, dtype=torch.long)).truncated for _ in range(8)]
        # a chicken standing still ends nothing by itself: every env is cut at its 7th step
        assert [bool(t.any()) for t in ends] == [False] * 6 + [True, False] and ends[6].all()
    finally:
        parts.schedule.close()
    default = build(parse_args(["--env.tasks", "minatar:Breakout", "--run-dir", str(tmp_path / "d"),
                                "--no-progress"])[0])
    assert default.schedule._envs[0].game.sticky_action_prob == 0.1  # MinAtar's standard
    assert default.schedule._envs[0].max_episode_steps is None
    assert not default.schedule._envs[0].game.compiled


def test_no_difficulty_ramping_reaches_every_minatar_env_from_the_command_line(tmp_path):
    from runner.build import build
    from runner.cli import parse_args

    def ramping(argv, name):
        parts = build(parse_args([*argv, "--env.tasks", "minatar:SpaceInvaders", "minatar:Seaquest",
                                  "--run-dir", str(tmp_path / name), "--no-progress"])[0])
        try:
            sched = parts.schedule
            envs = [*sched._envs, *(sched.make_eval_envs(t, 2).env for t in range(2))]
            single = sched.make_eval_env(0)
            assert single.observation_space.shape == (10, 10, 10)  # SpaceInvaders' 6 channels padded in a cycle
            return [e.game.difficulty_ramping for e in envs] + [single.unwrapped._env.game.difficulty_ramping]
        finally:
            parts.schedule.close()

    assert ramping(["--env.no-difficulty-ramping"], "flat") == [False] * 5
    assert ramping([], "ramped") == [True] * 5  # MinAtar's default


def test_env_compile_compiles_the_training_games_only(tmp_path):
    from runner.build import build
    from runner.cli import parse_args

    parts = build(parse_args(["--env.tasks", "minatar:Breakout", "minatar:Asterix", "--env.compile",
                              "--run-dir", str(tmp_path / "run"), "--no-progress"])[0])
    assert [e.game.compiled for e in parts.schedule._envs] == [True, True]
    assert not parts.schedule.make_eval_envs(0, 2).env.game.compiled


def test_the_time_cap_is_refused_for_tasks_other_than_minatar():
    import pytest

    from runner.config import EnvConfig

    with pytest.raises(ValueError, match=r"--env.max-episode-steps caps MinAtar episodes only, but the tasks "
                                         r"include 'gym:CartPole-v1'"):
        EnvConfig(tasks=("gym:CartPole-v1",), max_episode_steps=5).validate()
    with pytest.raises(ValueError, match=r"--env.max-episode-steps must be >= 1 \(or None: no cap\), got 0"):
        EnvConfig(tasks=("minatar:Breakout",), max_episode_steps=0).validate()
    with pytest.raises(ValueError, match=r"--env.compile compiles MinAtar games only, but the tasks include "
                                         r"'atari:Pong'"):
        EnvConfig(tasks=("minatar:Breakout", "atari:Pong"), compile=True).validate()
    with pytest.raises(ValueError, match=r"--env.no-difficulty-ramping applies to MinAtar games only, but the "
                                         r"tasks include 'gym:CartPole-v1'"):
        EnvConfig(tasks=("minatar:Seaquest", "gym:CartPole-v1"), difficulty_ramping=False).validate()
    EnvConfig(tasks=("gym:CartPole-v1",), difficulty_ramping=True).validate()  # the default is no request
    with pytest.raises(ValueError, match=r"--env.sticky-actions must be in \[0, 1\]"):
        EnvConfig(tasks=("minatar:Breakout",), sticky_actions=1.5).validate()
