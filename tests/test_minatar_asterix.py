"""Batched Asterix against the reference minatar package."""

import torch

from envs.minatar.asterix import Asterix
from envs.minatar.reference import (
    assert_same_mean,
    batched_random_policy_stats,
    compare_with_reference,
    reference_random_policy_stats,
)


def test_asterix_equals_reference_step_for_step():
    result = compare_with_reference("Asterix", num_envs=8, vector_steps=1300, seed=3)
    assert result.steps >= 10_000
    assert result.episodes >= 100
    assert result.reward > 0
    assert result.max_difficulty >= 2  # the ramp was exercised


def test_asterix_equals_reference_without_ramping_or_sticky_actions():
    result = compare_with_reference("Asterix", num_envs=4, vector_steps=500, seed=8,
                                    sticky_action_prob=0.0, difficulty_ramping=False)
    assert result.episodes > 10 and result.max_difficulty == 0


def test_asterix_reset_leaves_other_envs_alone():
    game = Asterix(3, seed=1)
    for _ in range(25):  # past the first spawns
        game.step(torch.tensor([0, 1, 3]))
    before = {k: v.clone() for k, v in game.state_dict().items() if k != "random"}
    assert before["ent_alive"].any()
    game.reset(torch.tensor([True, False, False]))
    after = game.state_dict()
    for name, value in before.items():
        for env in (1, 2):
            assert torch.equal(after[name][env], value[env]), (name, env)
    assert not after["ent_alive"][0].any() and after["spawn_timer"][0] == 10


def test_asterix_random_policy_matches_reference_statistics():
    ours_ret, ours_len = batched_random_policy_stats("Asterix", 320, num_envs=64, seed=0)
    ref_ret, ref_len = reference_random_policy_stats("Asterix", 320, seed=0)
    assert len(ours_ret) == len(ref_ret) == 320
    assert_same_mean(ours_ret, ref_ret, "return")
    assert_same_mean(ours_len, ref_len, "length")
