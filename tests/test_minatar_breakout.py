"""Batched Breakout against the reference minatar package (the pattern every game's test follows)."""

import pytest
import torch

from envs.minatar.breakout import Breakout
from envs.minatar.reference import (
    assert_same_mean,
    batched_random_policy_stats,
    compare_with_reference,
    reference_random_policy_stats,
)


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
