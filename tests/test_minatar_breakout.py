"""Batched Breakout against the reference minatar package (the pattern every game's test follows)."""

import numpy as np
import pytest
import torch

from envs.minatar.breakout import Breakout
from envs.minatar.reference import (
    assert_same_mean,
    batched_random_policy_stats,
    compare_with_reference,
    reference_random_policy_stats,
)
from minatar_fuzz import assert_set_env_refused, fuzz, fuzz_seeds


def test_breakout_equals_reference_step_for_step():
    # 8 envs x 1300 steps = 10 400 env steps, about a thousand episode ends.
    result = compare_with_reference("Breakout", num_envs=8, vector_steps=1300, seed=3)
    assert result.steps >= 10_000
    assert result.episodes >= 300
    assert result.reward > 0
    # one sticky draw per env step plus one per reset (the start side), first resets included
    assert result.draws == result.steps + result.episodes + 8


def test_breakout_equals_reference_without_sticky_actions():
    result = compare_with_reference("Breakout", num_envs=4, vector_steps=300, seed=11,
                                    sticky_action_prob=0.0)
    assert result.episodes > 20


def test_breakout_reset_leaves_other_envs_alone():
    game = Breakout(4, seed=0)
    for _ in range(3):
        game.step(torch.tensor([1, 3, 0, 1]))
    before = {k: v for k, v in game.state_dict().items() if k != "random"}
    game.reset(torch.tensor([False, True, False, False]))
    after = game.state_dict()
    for name, value in before.items():
        for env in (0, 2, 3):
            assert torch.equal(after[name][env], value[env]), (name, env)
    assert game.ball_y[1] == 3 and after["pos"][1] == 4 and after["bricks"][1] == (1 << 30) - 1
    # the start side: column 0 heading down-right (2) or column 9 heading down-left (3)
    assert (game.ball_x[1], game.ball_dir[1]) in ((0, 2), (9, 3)) and not game.strike[1]
    assert game.last_x[1] == game.ball_x[1] and game.last_y[1] == 3


def test_breakout_state_dict_round_trip_continues_identically():
    game = Breakout(16, seed=5)
    actions = torch.randint(0, 6, (40, 16), generator=torch.Generator().manual_seed(0))
    for a in actions[:20]:
        _, done = game.step(a)
        game.reset(done)
    saved = game.state_dict()
    rest = []
    for a in actions[20:]:
        r, done = game.step(a)
        game.reset(done)
        rest.append((r, done, game.observation()))
    other = Breakout(16, seed=99)
    other.load_state_dict(saved)
    for a, (r, done, obs) in zip(actions[20:], rest):
        r2, done2 = other.step(a)
        other.reset(done2)
        assert torch.equal(r, r2) and torch.equal(done, done2) and torch.equal(obs, other.observation())


def test_breakout_random_policy_matches_reference_statistics():
    ours_ret, ours_len = batched_random_policy_stats("Breakout", 400, num_envs=64, seed=0)
    ref_ret, ref_len = reference_random_policy_stats("Breakout", 400, seed=0)
    assert len(ours_ret) == len(ref_ret) == 400
    assert_same_mean(ours_ret, ref_ret, "return")
    assert_same_mean(ours_len, ref_len, "length")


def test_recorded_randomness_catches_a_draw_out_of_order(monkeypatch):
    # A game that draws its start side twice per reset no longer matches the reference's stream.
    original = Breakout._reset

    def twice(self, mask):
        self.random.integers(0, 2, mask)
        original(self, mask)

    monkeypatch.setattr(Breakout, "_reset", twice)
    with pytest.raises(AssertionError, match="asked for"):
        compare_with_reference("Breakout", num_envs=2, vector_steps=50, seed=0)


@pytest.mark.slow
def test_compiled_breakout_equals_reference_step_for_step():
    # torch.compile of the step and the observation (tens of seconds to compile)
    result = compare_with_reference("Breakout", num_envs=4, vector_steps=2500, seed=7, compile=True)
    assert result.steps >= 10_000 and result.episodes >= 300


def busy_state(game, rng: np.random.Generator) -> None:
    """A random state: the ball anywhere in rows 0-8 (above, among or below the bricks), any
    heading, often right after a strike, its previous cell one step back; the paddle anywhere;
    the wall full, empty, down to one brick, or sparse."""
    game.ball_x, game.ball_y = int(rng.integers(10)), int(rng.integers(9))
    game.ball_dir, game.strike = int(rng.integers(4)), bool(rng.random() < 0.3)
    game.last_x = min(9, max(0, game.ball_x + (-1 if game.ball_dir in (1, 2) else 1)))
    game.last_y = min(9, max(0, game.ball_y + (1 if game.ball_dir < 2 else -1)))
    game.pos = int(rng.integers(10))
    game.brick_map = np.zeros((10, 10))
    kind = rng.integers(4)
    if kind == 0:
        game.brick_map[1:4, :] = 1
    elif kind == 2:
        game.brick_map[int(rng.integers(1, 4)), int(rng.integers(10))] = 1
    elif kind == 3:
        game.brick_map[1:4, :] = rng.random((3, 10)) < 0.3


def load_reference(game: Breakout, i: int, ref) -> None:
    for name in ("ball_x", "ball_y", "ball_dir", "strike", "last_x", "last_y", "pos", "brick_map"):
        game.set_env(i, name, getattr(ref, name))


def test_breakout_equals_reference_from_random_states():
    ended = fuzz("Breakout", num_envs=400, steps=20, make_state=busy_state,
                 load=load_reference, seed=0)
    assert 100 < ended < 380


@pytest.mark.slow
def test_breakout_equals_reference_from_random_states_many():
    fuzz_seeds("Breakout", make_state=busy_state, load=load_reference)


def test_breakout_set_env_puts_reference_fields_into_the_packed_state():
    game = Breakout(2)
    bricks = np.zeros((10, 10))
    bricks[1, 0] = bricks[3, 9] = 1
    for name, value in (("ball_x", 7), ("ball_y", 2), ("ball_dir", 1), ("strike", True),
                        ("last_x", 6), ("last_y", 3), ("pos", 8), ("brick_map", bricks),
                        ("terminal", 1)):
        game.set_env(1, name, value)
    assert int(game.ball[1]) == 400 + 100 + 27 and int(game.trail[1]) == 36
    assert game.pos.tolist() == [4, 8] and int(game.bricks[1]) == 1 | 1 << 29
    assert game.terminal.tolist() == [False, True]
    assert int(game.ball[0]) in (230, 339) and int(game.bricks[0]) == (1 << 30) - 1


@pytest.mark.parametrize("name, value, message", [
    ("ball_x", 10, "Breakout ball_x=10: valid values are 0-9"),
    ("ball_dir", 4, "Breakout ball_dir=4: valid values are 0-3"),
    ("strike", 2, "Breakout strike=2: valid values are 0-1"),
    ("last_y", -1, "Breakout last_y=-1: valid values are 0-9"),
    ("pos", 10, "Breakout pos=10: valid values are 0-9"),
    ("brick_map", np.ones((10, 10)), "Breakout brick_map: valid is a 10 x 10 map with bricks in rows 1-3 only"),
    ("brick_map", np.zeros((3, 10)), "Breakout brick_map: valid is a 10 x 10 map with bricks in rows 1-3 only"),
    ("bricks", 0, "Breakout has no field 'bricks'; fields: ball_x, ball_y, ball_dir, strike, last_x, "
                  "last_y, pos, brick_map, terminal"),
])
def test_breakout_set_env_refuses_what_the_packed_state_cannot_hold(name, value, message):
    assert_set_env_refused(Breakout(1), name, value, message)
