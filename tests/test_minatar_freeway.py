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
