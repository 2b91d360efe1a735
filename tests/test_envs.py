"""Environment factories: task ids, Atari settings, padding/rescaling wrappers, env checker."""

from __future__ import annotations

import sys
import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs import (
    AtariOptions,
    PadObservation,
    RescaleActionToTask,
    TaskSchedule,
    build_task_envs,
    make_atari_env,
    make_atari_vector_env,
    make_gym_env,
    parse_task,
    parse_tasks,
)


def _check(env: gymnasium.Env) -> None:
    """Gymnasium's checker on a wrapped env; two of its warnings are expected here.

    It warns that a wrapped env is not the unwrapped one, and that padded observation
    entries have equal bounds (they are always 0).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*different from the unwrapped version.*")
        warnings.filterwarnings("ignore", message=".*maximum and minimum values are equal.*")
        check_env(env, skip_render_check=True)


# ---------------------------------------------------------------------------- task ids
@pytest.mark.parametrize(
    ("task_id", "name", "target"),
    [
        ("atari:Pong", "Pong", "pong"),
        ("atari:breakout", "Breakout", "breakout"),
        ("atari:SPACEINVADERS", "SpaceInvaders", "space_invaders"),
        ("atari:space_invaders", "SpaceInvaders", "space_invaders"),
        ("gym:CartPole-v1", "CartPole-v1", "CartPole-v1"),
        ("gym:Pendulum-v1", "Pendulum-v1", "Pendulum-v1"),
    ],
)
def test_parse_task_canonical_name_and_target(task_id: str, name: str, target: str) -> None:
    spec = parse_task(task_id)
    assert (spec.name, spec.target) == (name, target)
    assert spec.id == f"{spec.kind}:{name}"
    assert spec.kind == task_id.split(":")[0]


def test_atari_spec_names_its_gymnasium_v5_id() -> None:
    assert parse_task("atari:space_invaders").gym_id == "ALE/SpaceInvaders-v5"


@pytest.mark.parametrize(
    ("task_id", "must_contain"),
    [
        ("atari:Pongg", ["'Pongg'", "did you mean 'Pong'", "valid games:", "Breakout", "SpaceInvaders"]),
        ("gym:CartPol-v1", ["'CartPol-v1'", "'CartPole-v1'", "see gymnasium registry"]),
        ("gym:NoSuchEnv-v0", ["'NoSuchEnv-v0'", "see gymnasium registry"]),
        ("pong", ["'pong'", "'atari:Pong'", "'atari:' or 'gym:'"]),
        ("gym:ALE/Pong-v5", ["'atari:Pong'"]),
    ],
)
def test_bad_task_id_is_one_line_value_error(task_id: str, must_contain: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        parse_task(task_id)
    message = str(info.value)
    assert "\n" not in message
    for part in must_contain:
        assert part in message


def test_mujoco_task_without_mujoco_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mujoco", None)  # makes `import mujoco` raise ImportError
    with pytest.raises(ValueError) as info:
        parse_task("gym:HalfCheetah-v5")
    assert str(info.value) == "task 'gym:HalfCheetah-v5' needs MuJoCo: pip install '.[mujoco]'"


def test_mixing_atari_and_gym_tasks_is_rejected() -> None:
    with pytest.raises(ValueError, match="cannot mix Atari tasks.*non-Atari"):
        parse_tasks(["atari:Pong", "gym:CartPole-v1"])


def test_duplicate_task_is_rejected() -> None:
    with pytest.raises(ValueError, match="appears twice"):
        parse_tasks(["gym:CartPole-v1", "gym:CartPole-v1"])


def test_mixing_discrete_and_continuous_tasks_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"^cannot mix discrete-action tasks \['gym:CartPole-v1'\] with continuous-action "
                                         r"tasks \['gym:Pendulum-v1'\] in one schedule \(DQN and SAC need different heads\)$"):
        build_task_envs(parse_tasks(["gym:CartPole-v1", "gym:Pendulum-v1"]), num_envs=1)


def test_bad_atari_option_is_rejected() -> None:
    with pytest.raises(ValueError, match="repeat_action_probability=1.5"):
        AtariOptions(repeat_action_probability=1.5)


# ---------------------------------------------------------------------------- Atari
def test_atari_vector_env_uses_machado_defaults() -> None:
    env = make_atari_vector_env(parse_task("atari:Pong"), num_envs=2)
    try:
        assert env.single_observation_space.shape == (4, 84, 84)
        assert env.single_observation_space.dtype == np.uint8
        assert env.single_action_space.n == 18  # full action space
        obs, _ = env.reset(seed=0)
        assert obs.shape == (2, 4, 84, 84)
    finally:
        env.close()


@pytest.mark.parametrize("fire", [False, True])
def test_single_atari_env_matches_vector_env_pixel_for_pixel(fire: bool) -> None:
    # Without sticky actions both are deterministic, so the same actions give the same frames.
    options = AtariOptions(repeat_action_probability=0.0, use_fire_reset=fire)
    spec = parse_task("atari:Breakout")
    vec, single = make_atari_vector_env(spec, 1, options), make_atari_env(spec, options)
    try:
        vec_obs, _ = vec.reset(seed=0)
        obs, _ = single.reset(seed=0)
        assert obs.shape == vec_obs.shape[1:] and obs.dtype == vec_obs.dtype
        np.testing.assert_array_equal(obs, vec_obs[0])
        for t in range(30):
            action = (7 * t) % 18
            vec_obs, vec_rew, *_ = vec.step(np.array([action]))
            obs, rew, *_ = single.step(action)
            np.testing.assert_array_equal(obs, vec_obs[0])
            assert rew == vec_rew[0]
    finally:
        vec.close()
        single.close()


def test_atari_frame_cap_truncates_without_terminating() -> None:
    options = AtariOptions(max_num_frames_per_episode=40)  # 10 agent steps at frameskip 4
    env = make_atari_vector_env(parse_task("atari:Pong"), 1, options)
    try:
        env.reset(seed=0)
        flags = [env.step(np.zeros(1, dtype=np.int64))[2:4] for _ in range(10)]
        terminated = np.array([f[0][0] for f in flags])
        truncated = np.array([f[1][0] for f in flags])
        assert not terminated.any()
        assert truncated.tolist() == [False] * 9 + [True]
    finally:
        env.close()


def test_atari_stack_starts_with_zero_frames_after_reset_and_auto_reset() -> None:
    # Replay that stores one frame per step must rebuild episode starts the same way.
    options = AtariOptions(max_num_frames_per_episode=40)
    env = make_atari_vector_env(parse_task("atari:Pong"), 1, options)
    try:
        obs, _ = env.reset(seed=0)
        assert (obs[0, :3] == 0).all() and obs[0, 3].any()
        for _ in range(10):
            obs, _, _, truncated, _ = env.step(np.zeros(1, dtype=np.int64))
        assert truncated[0] and obs[0, :3].any()
        obs, *_ = env.step(np.zeros(1, dtype=np.int64))  # next-step auto-reset
        assert (obs[0, :3] == 0).all() and obs[0, 3].any()
    finally:
        env.close()


def test_check_env_atari_single_env() -> None:
    env = make_atari_env(parse_task("atari:Pong"))
    try:
        assert env.observation_space.shape == (4, 84, 84)
        _check(env)
    finally:
        env.close()


# ---------------------------------------------------------------------------- Gymnasium
def test_pad_observation_appends_zeros_to_the_raw_observation() -> None:
    raw = gymnasium.make("CartPole-v1")
    padded = make_gym_env(parse_task("gym:CartPole-v1"), obs_dim=6)
    try:
        raw_obs, _ = raw.reset(seed=3)
        obs, _ = padded.reset(seed=3)
        assert obs.dtype == np.float32 and obs.shape == (6,)
        np.testing.assert_array_equal(obs[:4], raw_obs)
        np.testing.assert_array_equal(obs[4:], 0.0)
        raw_obs, *_ = raw.step(1)
        obs, *_ = padded.step(1)
        np.testing.assert_array_equal(obs, np.concatenate([raw_obs, [0.0, 0.0]]).astype(np.float32))
        assert padded.observation_space.shape == (6,)
        assert padded.observation_space.low[4:].tolist() == [0.0, 0.0]
    finally:
        raw.close()
        padded.close()


def test_pad_observation_rejects_shrinking() -> None:
    with pytest.raises(ValueError, match="cannot pad"):
        PadObservation(gymnasium.make("Acrobot-v1"), 4)


def test_rescale_action_maps_unit_box_to_task_bounds() -> None:
    env = RescaleActionToTask(gymnasium.make("Pendulum-v1"), 3)  # Pendulum bounds: [-2, 2]
    assert env.action_space.shape == (3,)
    np.testing.assert_allclose(env.action(np.array([-1.0, 0.9, 0.9])), [-2.0])
    np.testing.assert_allclose(env.action(np.array([0.0, -1.0, 1.0])), [0.0])
    np.testing.assert_allclose(env.action(np.array([0.25, 0.0, 0.0])), [0.5])
    np.testing.assert_allclose(env.action(np.array([1.0, 0.0, 0.0])), [2.0])
    np.testing.assert_allclose(env.action(np.array([5.0, 0.0, 0.0])), [2.0])  # clipped


def test_rescaled_pendulum_steps_like_the_raw_env_with_the_rescaled_action() -> None:
    raw = gymnasium.make("Pendulum-v1")
    wrapped = make_gym_env(parse_task("gym:Pendulum-v1"), obs_dim=5, action_dim=2)
    try:
        raw.reset(seed=1)
        wrapped.reset(seed=1)
        for a in (0.5, -0.25, 1.0):
            raw_obs, raw_rew, *_ = raw.step(np.array([2.0 * a], dtype=np.float32))
            obs, rew, *_ = wrapped.step(np.array([a, -1.0], dtype=np.float32))
            np.testing.assert_allclose(obs[:3], raw_obs, rtol=1e-6)
            np.testing.assert_array_equal(obs[3:], 0.0)
            assert rew == pytest.approx(raw_rew)
    finally:
        raw.close()
        wrapped.close()


@pytest.mark.parametrize(
    ("task_id", "obs_dim", "action_dim"),
    [
        ("gym:CartPole-v1", None, None),
        ("gym:CartPole-v1", 6, None),
        ("gym:Pendulum-v1", None, None),
        ("gym:Pendulum-v1", 4, 3),
        ("gym:MountainCarContinuous-v0", 3, 1),
    ],
)
def test_check_env_gym_single_envs(task_id: str, obs_dim: int | None, action_dim: int | None) -> None:
    env = make_gym_env(parse_task(task_id), obs_dim, action_dim)
    try:
        _check(env)
    finally:
        env.close()


def test_check_env_mujoco_with_padding_and_rescaling(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # MuJoCo writes its warnings to ./MUJOCO_LOG.TXT
    try:
        spec = parse_task("gym:HalfCheetah-v5")
    except ValueError as err:  # MuJoCo extra not installed
        pytest.skip(str(err))
    env = make_gym_env(spec, obs_dim=20, action_dim=8)
    try:
        assert env.observation_space.shape == (20,) and env.action_space.shape == (8,)
        _check(env)
    finally:
        env.close()


def test_schedule_eval_env_has_the_schedule_layout() -> None:
    schedule = TaskSchedule(["gym:CartPole-v1", "gym:Acrobot-v1"], steps_per_visit=4, cycles=1)
    try:
        env = schedule.make_eval_env(0)
        obs, _ = env.reset(seed=0)
        assert obs.shape == schedule.obs_shape
        _check(env)
        env.close()
    finally:
        schedule.close()


def test_discrete_gym_tasks_share_one_layout_and_mask_each_tasks_own_actions() -> None:
    task_envs = build_task_envs(parse_tasks(["gym:CartPole-v1", "gym:Acrobot-v1"]), num_envs=2)
    try:
        assert task_envs.obs_shape == (6,) and task_envs.frame_stack == 1 and task_envs.discrete
        assert task_envs.task_sizes == [2, 3] and task_envs.action_size == 3
        masks = task_envs.action_masks()
        assert masks.dtype == bool and masks.tolist() == [[True, True, False], [True, True, True]]
    finally:
        task_envs.close()


def test_continuous_tasks_of_different_sizes_act_in_the_largest_box(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # MuJoCo writes its warnings to ./MUJOCO_LOG.TXT
    try:
        specs = parse_tasks(["gym:Pendulum-v1", "gym:Swimmer-v5"])  # 1 and 2 action dims
    except ValueError as err:  # MuJoCo extra not installed
        pytest.skip(str(err))
    task_envs = build_task_envs(specs, num_envs=2)
    try:
        assert task_envs.obs_shape == (8,) and task_envs.frame_stack == 1 and not task_envs.discrete
        assert task_envs.task_sizes == [1, 2] and task_envs.action_size == 2
        assert task_envs.action_masks().tolist() == [[True, False], [True, True]]
        for task in range(2):  # the training envs and an evaluation env alike
            assert task_envs.envs[task].single_action_space.shape == (2,)
            env = task_envs.make_single_env(task)
            assert env.observation_space.shape == (8,) and env.action_space.shape == (2,)
            env.close()
    finally:
        task_envs.close()


def test_an_atari_evaluation_env_has_the_schedules_options() -> None:
    options = AtariOptions(repeat_action_probability=0.0, max_num_frames_per_episode=300)
    task_envs = build_task_envs(parse_tasks(["atari:Pong", "atari:Breakout"]), num_envs=1, atari=options)
    try:
        env = task_envs.make_single_env(1)
        ale = env.unwrapped.ale
        assert env.unwrapped.spec.id == "ALE/Breakout-v5"
        assert ale.getFloat("repeat_action_probability") == 0.0 and ale.getInt("max_num_frames_per_episode") == 300
        assert env.observation_space.shape == task_envs.obs_shape == (4, 84, 84)
        assert env.action_space.n == task_envs.task_sizes[1]
        env.close()
    finally:
        task_envs.close()


def test_build_task_envs_refuses_bad_input_in_one_line() -> None:
    with pytest.raises(ValueError, match=r"^num_envs=0 must be >= 1$"):
        build_task_envs(parse_tasks(["gym:CartPole-v1"]), num_envs=0)
