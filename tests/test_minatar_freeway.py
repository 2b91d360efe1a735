"""Batched Freeway against the reference minatar package."""

import pytest
import torch

from envs.minatar.freeway import Freeway
from envs.minatar.reference import (
    assert_same_mean,
    batched_random_policy_stats,
    compare_with_reference,
    reference_random_policy_stats,
)

# Mostly "up": the chicken reaches the far side, so crossings and car redraws are compared too.
UPWARD = [0.1, 0.05, 0.6, 0.05, 0.1, 0.1]


def test_freeway_equals_reference_step_for_step_uniform_actions():
    result = compare_with_reference("Freeway", num_envs=4, vector_steps=2600, seed=3)
    assert result.steps >= 10_000 and result.episodes == 4  # episodes last 2501 steps


def test_freeway_equals_reference_step_for_step_upward_actions():
    result = compare_with_reference("Freeway", num_envs=4, vector_steps=2600, seed=5,
                                    action_probs=UPWARD)
    assert result.steps >= 10_000 and result.episodes == 4
    assert result.reward >= 20


def test_freeway_reset_leaves_other_envs_alone():
    game = Freeway(3, seed=1)
    for _ in range(10):
        game.step(torch.tensor([2, 2, 4]))
    before = {k: v.clone() for k, v in game.state_dict().items() if k != "random"}
    game.reset(torch.tensor([False, False, True]))
    after = game.state_dict()
    for name, value in before.items():
        for env in (0, 1):
            assert torch.equal(after[name][env], value[env]), (name, env)
    assert after["terminate_timer"][2] == 2500 and (after["car_x"][2] == 0).all()


def test_freeway_random_policy_matches_reference_statistics_short():
    # Episodes are 2501 steps: 64 a side in the fast suite, 320 in the slow one.
    ours_ret, ours_len = batched_random_policy_stats("Freeway", 64, num_envs=64, seed=0)
    ref_ret, ref_len = reference_random_policy_stats("Freeway", 64, seed=0)
    assert (ours_len == 2501).all() and (ref_len == 2501).all()
    assert_same_mean(ours_ret, ref_ret, "return")


@pytest.mark.slow
def test_freeway_random_policy_matches_reference_statistics():
    ours_ret, ours_len = batched_random_policy_stats("Freeway", 320, num_envs=320, seed=1)
    ref_ret, ref_len = reference_random_policy_stats("Freeway", 320, seed=1)
    assert (ours_len == 2501).all() and (ref_len == 2501).all()
    assert_same_mean(ours_ret, ref_ret, "return")


def test_freeway_packed_speed_draws_are_uniform_and_independent():
    # Outside the reference lockstep the 8 speeds and directions are two table keys (a reset
    # draws them as integers, a step from its block of uniforms): each speed uniform in 1..5,
    # each direction a fair coin, cars independent.
    from envs.minatar.randomness import StepDraws

    n = 40_000
    game = Freeway(n, seed=2)
    gen = torch.Generator().manual_seed(3)
    block = torch.rand(n, game.draws_per_step, dtype=torch.float64, generator=gen)
    source, game.random = game.random, StepDraws(block)
    stepped = game._draw_speeds(game.all_envs).view(torch.int16).view(n, 8).long() >> 4
    game.random = source
    se = lambda p, k: 5 * (p * (1 - p) / k) ** 0.5  # noqa: E731
    for speed in (game.car_speed, stepped % 11 - 5):  # reset's draws, then the step's
        assert (game.car_timer == game.car_speed.abs()).all()
        size, left = speed.abs(), speed < 0
        assert size.min() == 1 and size.max() == 5
        for s in range(1, 6):
            assert ((size == s).float().mean(0) - 1 / 5).abs().max() < se(1 / 5, n)
        assert (left.float().mean(0) - 1 / 2).abs().max() < se(1 / 2, n)
        pairs = (size[:, :-1] == size[:, 1:]).float().mean(0)  # neighbours agree 1/5 of the time
        assert (pairs - 1 / 5).abs().max() < se(1 / 5, n)
        assert ((left[:, :-1] == left[:, 1:]).float().mean(0) - 1 / 2).abs().max() < se(1 / 2, n)
