"""Batched SpaceInvaders against the reference minatar package."""

import numpy as np
import pytest
import torch
from minatar_fuzz import assert_set_env_refused, fuzz
from minatar_lockstep import lockstep

from envs.minatar.reference import (
    assert_same_mean,
    batched_random_policy_stats,
    compare_with_reference,
    reference_random_policy_stats,
)
from envs.minatar.space_invaders import SpaceInvaders, to_grid, to_rows

NOOP, LEFT, UP, RIGHT, DOWN, FIRE = range(6)


def aimer(game, rng: np.random.Generator) -> int:
    """Dodges falling bullets, moves under the nearest alien column and fires (just fires
    when 3 or fewer are left); 10 % random."""
    if rng.random() < 0.1:
        return int(rng.integers(6))
    danger = game.e_bullet_map[4:].any(0)
    if danger[game.pos]:
        for step in (1, -1, 2, -2):
            if 0 <= game.pos + step <= 9 and not danger[game.pos + step]:
                return RIGHT if step > 0 else LEFT
    if game.alien_map.sum() <= 3:  # few aliens move fast: keep firing up one column
        return FIRE
    columns = np.flatnonzero(game.alien_map.any(0))
    target = columns[np.argmin(np.abs(columns - game.pos))]
    if target == game.pos or danger[game.pos + np.sign(target - game.pos)]:
        return FIRE
    return LEFT if target < game.pos else RIGHT


def late_start(rng: np.random.Generator) -> dict:
    """The state after ``level`` cleared waves (faster aliens; level 6 is the fastest, where
    a cleared wave ramps no further), with most of the current wave already shot, so that
    waves get cleared and the ramp climbs."""
    level = int(rng.integers(0, 7))
    interval = max(6, 12 - level)
    wave = np.zeros((10, 10))
    wave[0:4, 2:8] = rng.random((4, 6)) < 0.15
    wave[3, 2 + int(rng.integers(6))] = 1
    return {"enemy_move_interval": interval, "alien_move_timer": interval, "ramp_index": level,
            "alien_map": wave}


def test_space_invaders_equals_reference_step_for_step():
    # 8 envs x 1300 steps = 10 400 env steps
    result = compare_with_reference("SpaceInvaders", num_envs=8, vector_steps=1300, seed=3)
    assert result.steps >= 10_000 and result.episodes >= 100 and result.reward > 0


def test_space_invaders_equals_reference_without_ramping_or_sticky_actions():
    result = compare_with_reference("SpaceInvaders", num_envs=4, vector_steps=400, seed=8,
                                    sticky_action_prob=0.0, difficulty_ramping=False)
    assert result.episodes > 5 and result.max_difficulty == 0


def test_space_invaders_equals_reference_when_clearing_waves():
    result = lockstep("SpaceInvaders", num_envs=6, vector_steps=700, policy=aimer, seed=5)
    assert result["max_difficulty"] >= 1 and result["reward"] >= 6 * 23


FIELDS = ("pos", "alien_dir", "enemy_move_interval", "alien_move_timer", "alien_shot_timer",
          "shot_timer", "ramp_index")


def same_fields(game: SpaceInvaders, i: int, ref) -> None:
    """Env ``i`` holds the reference's every field: the numbers and the three maps."""
    for name in FIELDS:
        assert int(getattr(game, name)[i]) == getattr(ref, name), name
    for name in ("alien_map", "f_bullet_map", "e_bullet_map"):
        assert np.array_equal(game.grid(name)[i].numpy(), getattr(ref, name) != 0), name


def test_space_invaders_equals_reference_from_late_difficulty():
    result = lockstep("SpaceInvaders", num_envs=6, vector_steps=500, policy=aimer, seed=6,
                      start=late_start, same_state=same_fields)
    assert result["max_difficulty"] == 6 and result["episodes"] >= 6


@pytest.mark.slow
def test_space_invaders_equals_reference_scripted_10k():
    for seed, start in ((7, None), (8, late_start)):
        result = lockstep("SpaceInvaders", num_envs=8, vector_steps=1300, policy=aimer,
                          seed=seed, start=start)
        assert result["steps"] >= 10_000 and result["max_difficulty"] >= 2


def random_state(game, rng: np.random.Generator) -> None:
    """A random mid-game state: scattered aliens (some in the bottom rows and at the edges),
    bullets anywhere, timers near zero."""
    game.pos = int(rng.integers(10))
    game.alien_map = (rng.random((10, 10)) < rng.choice([0.03, 0.1, 0.3])).astype(float)
    if not game.alien_map.any():
        game.alien_map[int(rng.integers(10)), int(rng.integers(10))] = 1
    game.f_bullet_map = (rng.random((10, 10)) < 0.1).astype(float)
    game.e_bullet_map = (rng.random((10, 10)) < 0.1).astype(float)
    game.alien_dir = int(rng.choice([-1, 1]))
    game.enemy_move_interval = int(rng.integers(6, 13))
    game.alien_move_timer = int(rng.integers(0, 3))
    game.alien_shot_timer = int(rng.integers(0, 3))
    game.shot_timer = int(rng.integers(0, 3))
    game.ramp_index = int(rng.integers(0, 7))


def load_reference(game: SpaceInvaders, i: int, ref) -> None:
    """Copy a reference ``Env``'s state into env ``i`` of the batched game."""
    for name in (*FIELDS, "alien_map", "f_bullet_map", "e_bullet_map"):
        game.set_env(i, name, getattr(ref, name))


def test_space_invaders_equals_reference_from_random_states():
    ended = fuzz("SpaceInvaders", num_envs=300, steps=6, make_state=random_state,
                 load=load_reference, seed=0)
    assert 30 < ended < 270


@pytest.mark.parametrize("name, value, message", [
    ("pos", 10, "SpaceInvaders pos=10: valid values are 0-9"),
    ("alien_dir", 0, "SpaceInvaders alien_dir=0: valid values are -1 and 1"),
    ("shot_timer", -1, "SpaceInvaders shot_timer=-1: valid values are >= 0"),
    ("alien_map", np.ones((10, 9)), "SpaceInvaders alien_map of shape (10, 9): valid is 10 x 10"),
    ("aliens", 1, "SpaceInvaders has no field 'aliens'; fields: pos, f_bullet_map, e_bullet_map, "
                  "alien_map, alien_dir, enemy_move_interval, alien_move_timer, alien_shot_timer, "
                  "ramp_index, shot_timer, terminal"),
])
def test_space_invaders_set_env_refuses_what_the_state_cannot_hold(name, value, message):
    assert_set_env_refused(SpaceInvaders(1), name, value, message)


def test_space_invaders_reset_leaves_other_envs_alone():
    game = SpaceInvaders(3, seed=1)
    for _ in range(30):
        game.step(torch.tensor([FIRE, LEFT, FIRE]))
        game.reset(game.terminal)
    before = {k: v.clone() for k, v in game.state_dict().items() if k != "random"}
    assert before["e_bullet_map"].any() and to_grid(before["alien_map"]).sum() < 24 * 3
    game.reset(torch.tensor([False, True, False]))
    after = game.state_dict()
    for name, value in before.items():
        for env in (0, 2):
            assert torch.equal(after[name][env], value[env]), (name, env)
    assert to_grid(after["alien_map"][1]).sum() == 24 and not after["e_bullet_map"][1].any()
    assert after["pos"][1] == 5 and after["alien_move_timer"][1] == 12


def test_space_invaders_random_policy_matches_reference_statistics():
    ours_ret, ours_len = batched_random_policy_stats("SpaceInvaders", 320, num_envs=64, seed=0)
    ref_ret, ref_len = reference_random_policy_stats("SpaceInvaders", 320, seed=0)
    assert len(ours_ret) == len(ref_ret) == 320
    assert_same_mean(ours_ret, ref_ret, "return")
    assert_same_mean(ours_len, ref_len, "length")


def test_space_invaders_state_dict_round_trip_continues_identically():
    game = SpaceInvaders(16, seed=5)
    actions = torch.randint(0, 6, (80, 16), generator=torch.Generator().manual_seed(0))
    for a in actions[:40]:
        _, done = game.step(a)
        game.reset(done)
    saved = game.state_dict()
    rest = []
    for a in actions[40:]:
        r, done = game.step(a)
        game.reset(done)
        rest.append((r, done, game.observation()))
    other = SpaceInvaders(16, seed=99)
    other.load_state_dict(saved)
    for a, (r, done, obs) in zip(actions[40:], rest):
        r2, done2 = other.step(a)
        other.reset(done2)
        assert torch.equal(r, r2) and torch.equal(done, done2) and torch.equal(obs, other.observation())


def test_space_invaders_rows_hold_one_bit_per_column():
    grid = torch.zeros(2, 10, 10, dtype=torch.bool)
    grid[0, 3, 0] = grid[0, 3, 9] = grid[1, 9, 4] = True
    rows = to_rows(grid)
    assert rows.dtype == torch.int16
    assert rows[0, 3] == 1 + 512 and rows[1, 9] == 16 and rows.count_nonzero() == 2
    random = torch.rand(5, 10, 10, generator=torch.Generator().manual_seed(0)) < 0.4
    assert torch.equal(to_grid(to_rows(random)), random)
