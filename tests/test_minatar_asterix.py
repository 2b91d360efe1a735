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


def test_asterix_spawn_draws_heading_kind_and_row_from_one_uniform():
    # From a reset the first spawn comes at step 11, onto an empty board, and the entities move
    # once that step (f 10 -> 9): every env then holds one entity, whose heading (1/2), kind
    # (1/3) and row (1/8) all come from the step's single uniform and must be independent.
    n = 40_000
    game = Asterix(n, seed=5, sticky_action_prob=0.0)
    for _ in range(11):
        game.step(torch.zeros(n, dtype=torch.long))
    alive, right, gold = game.ent_alive, game.ent_right.any(1), game.ent_gold.any(1)
    assert (alive.sum(1) == 1).all()
    assert (game.ent_x[alive] == torch.where(right, 1, 8)).all()
    se = lambda p, k: 5 * (p * (1 - p) / k) ** 0.5  # noqa: E731
    assert abs(right.float().mean() - 1 / 2) < se(1 / 2, n)
    for part in (right, ~right):
        assert abs(gold[part].float().mean() - 1 / 3) < se(1 / 3, int(part.sum()))
    for part in (gold & right, ~gold & ~right):
        rows = alive[part].float().mean(0)
        assert (rows - 1 / 8).abs().max() < se(1 / 8, int(part.sum())), rows
