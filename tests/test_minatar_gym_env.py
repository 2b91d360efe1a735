"""One MinAtar env as a ``gymnasium.Env`` (``MinAtarGymEnv``) and the batched env's options:
the same game step for step, Gymnasium's contract, and every option reaching the game."""

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from envs.minatar.vector import ACCELERATOR_REPORT_EVERY, MinAtarGymEnv, MinAtarOptions, MinAtarVectorEnv


def test_passes_gymnasiums_env_checker():
    env = MinAtarGymEnv("Seaquest", channels=10)
    check_env(env, skip_render_check=True)
    assert env.observation_space == gymnasium.spaces.Box(0, 1, (10, 10, 10), np.uint8)
    assert env.action_space == gymnasium.spaces.Discrete(6)


@pytest.mark.parametrize("game", ["Breakout", "SpaceInvaders"])
def test_steps_as_the_batched_game_of_one_env_with_its_seed(game):
    gym_env = MinAtarGymEnv(game, sticky_action_prob=0.3)
    batched = MinAtarVectorEnv(game, 1, sticky_action_prob=0.3)
    obs, _ = gym_env.reset(seed=5)
    assert np.array_equal(obs, batched.reset(seed=5)[0].numpy())
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(600):
        action = int(rng.integers(6))
        obs, reward, terminated, truncated, _ = gym_env.step(action)
        reward_b, terminated_b = batched.game.step(torch.tensor([action]))
        assert np.array_equal(obs, batched.observation()[0].numpy())
        assert (reward, terminated, truncated) == (float(reward_b[0]), bool(terminated_b[0]), False)
        assert isinstance(reward, float) and isinstance(terminated, bool)
        if terminated:
            ends += 1
            obs, _ = gym_env.reset()
            batched.game.reset()
            assert np.array_equal(obs, batched.observation()[0].numpy())
    assert ends >= 3


def test_reset_seed_repeats_an_episode_and_another_seed_does_not():
    def first_steps(env, seed):
        frames = [env.reset(seed=seed)[0]]
        frames += [env.step(a)[0] for a in [1, 5, 3, 5, 0, 2, 4, 5] * 8]
        return np.stack(frames)

    env = MinAtarGymEnv("Asterix")
    a, b, c = first_steps(env, 1), first_steps(env, 1), first_steps(env, 2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_time_cap_truncates_at_the_cap_and_restarts_counting_at_reset():
    env = MinAtarGymEnv("Freeway", max_episode_steps=5)  # Freeway: no end before 2 500 steps
    for _ in range(2):
        env.reset(seed=0)
        flags = [env.step(0)[3] for _ in range(5)]
        assert flags == [False] * 4 + [True]


def test_a_termination_on_the_capped_step_is_not_also_a_truncation():
    env = MinAtarGymEnv("Breakout", sticky_action_prob=0.0, max_episode_steps=10_000)
    env.reset(seed=0)
    steps = 0
    while True:
        steps += 1
        *_, terminated, truncated, _ = env.step(0)
        if terminated:
            break
    capped = MinAtarGymEnv("Breakout", sticky_action_prob=0.0, max_episode_steps=steps)
    capped.reset(seed=0)
    results = [capped.step(0)[2:4] for _ in range(steps)]
    assert results[-1] == (True, False) and all(r == (False, False) for r in results[:-1])


def test_options_reach_the_game():
    env = MinAtarGymEnv("Seaquest", sticky_action_prob=0.25, difficulty_ramping=False)
    game = env._env.game
    assert game.sticky_action_prob == 0.25 and not game.difficulty_ramping and game.num_envs == 1
    assert MinAtarGymEnv("Seaquest")._env.game.difficulty_ramping


def test_vector_env_options_reach_the_game_and_shape_the_observations():
    env = MinAtarVectorEnv("Breakout", 3, channels=7, sticky_action_prob=0.2, difficulty_ramping=False)
    assert env.single_observation_shape == (7, 10, 10) and env.num_actions == 6
    assert env.game.sticky_action_prob == 0.2 and not env.game.difficulty_ramping
    obs = env.reset(seed=0)
    assert obs.shape == (3, 7, 10, 10) and obs.dtype == torch.uint8 and not obs[:, 4:].any()
    assert MinAtarVectorEnv("SpaceInvaders", 2).game.difficulty_ramping


def test_vector_env_seed_sets_the_stream_before_any_reseed():
    def run(seed=None):
        env = MinAtarVectorEnv("Asterix", 4) if seed is None else MinAtarVectorEnv("Asterix", 4, seed=seed)
        gen = torch.Generator().manual_seed(0)
        return torch.stack([env.step(torch.randint(0, 6, (4,), generator=gen)).obs for _ in range(60)])

    assert torch.equal(run(3), run(3)) and not torch.equal(run(3), run(4))
    assert torch.equal(run(), run(0))  # the default seed is 0


def test_the_default_report_cadence_follows_the_path():
    env = MinAtarVectorEnv("Breakout", 2)
    assert env.report_every == 1
    env.reads_are_free = False
    assert env.report_every == ACCELERATOR_REPORT_EVERY
    assert MinAtarVectorEnv("Breakout", 2, report_every=9).report_every == 9


def test_bad_options_are_refused_in_one_line():
    with pytest.raises(ValueError, match=r"^channels=3 is fewer than Seaquest's 10$"):
        MinAtarVectorEnv("Seaquest", 1, channels=3)
    with pytest.raises(ValueError, match=r"^max_episode_steps=0 must be >= 1 or None$"):
        MinAtarVectorEnv("Breakout", 1, max_episode_steps=0)
    MinAtarVectorEnv("Breakout", 1, max_episode_steps=1)
    with pytest.raises(ValueError, match=r"^MinAtar sticky_action_prob=1.5 must be in \[0, 1\]$"):
        MinAtarOptions(sticky_action_prob=1.5)
    with pytest.raises(ValueError, match=r"^MinAtar sticky_action_prob=-0.1 must be in \[0, 1\]$"):
        MinAtarOptions(sticky_action_prob=-0.1)
    with pytest.raises(ValueError, match=r"^MinAtar max_episode_steps=0 must be >= 1 or None$"):
        MinAtarOptions(max_episode_steps=0)
    assert MinAtarOptions(sticky_action_prob=1.0, max_episode_steps=1).max_episode_steps == 1
    assert MinAtarOptions(sticky_action_prob=0.0).sticky_action_prob == 0.0
