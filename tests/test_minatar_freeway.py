"""Batched Freeway against the reference minatar package."""

import numpy as np
import pytest
import torch

from envs.minatar.freeway import Freeway
from envs.minatar.reference import (
    assert_same_mean,
    batched_random_policy_stats,
    compare_with_reference,
    reference_random_policy_stats,
)
from minatar_fuzz import assert_set_env_refused, fuzz, fuzz_seeds

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


def busy_state(game, rng: np.random.Generator) -> None:
    """A random state: the chicken on any row with any move timer, every car anywhere (often
    next to the chicken's column 4) with any speed, heading and timer, and sometimes a few
    steps left before the time cap."""
    game.pos, game.move_timer = int(rng.integers(1, 10)), int(rng.integers(0, 4))
    game.terminate_timer = int(rng.integers(0, 4) if rng.random() < 0.2 else rng.integers(4, 2501))
    for k, car in enumerate(game.cars):
        speed = int(rng.integers(1, 6)) * (1 if rng.random() < 0.5 else -1)
        x = int(rng.integers(3, 6) if rng.random() < 0.6 else rng.integers(10))
        car[:] = [x, k + 1, int(rng.integers(0, abs(speed) + 1)), speed]


def load_reference(game: Freeway, i: int, ref) -> None:
    names = ("pos", "move_timer", "terminate_timer", "cars")
    game.set_env_fields(i, {name: getattr(ref, name) for name in names})


def test_freeway_equals_reference_from_random_states():
    # upward moves are a third of the actions here: crossings and their redraws are frequent
    ended = fuzz("Freeway", num_envs=400, steps=12, make_state=busy_state,
                 load=load_reference, seed=0)
    assert 40 < ended < 200


@pytest.mark.slow
def test_freeway_equals_reference_from_random_states_many():
    fuzz_seeds("Freeway", make_state=busy_state, load=load_reference)


def test_freeway_set_env_puts_reference_fields_into_the_packed_state():
    game = Freeway(2)
    cars = [[k, k + 1, k % 3, (k % 5 + 1) * (-1) ** k] for k in range(8)]
    game.set_env_fields(1, {"pos": 6, "move_timer": 2, "terminate_timer": 17, "cars": cars})
    assert (game.pos.tolist(), game.move_timer.tolist()) == ([9, 6], [3, 2])
    assert int(game.terminate_timer[1]) == 17
    assert game.car_x[1].tolist() == list(range(8))
    assert game.car_timer[1].tolist() == [k % 3 for k in range(8)]
    assert game.car_speed[1].tolist() == [(k % 5 + 1) * (-1) ** k for k in range(8)]
    game.set_env(1, "move_timer", 0)  # one field: the row kept
    assert (int(game.pos[1]), int(game.move_timer[1])) == (6, 0)
    game.set_env(0, "terminal", 1)
    assert game.terminal.tolist() == [True, False]


@pytest.mark.parametrize("name, value, message", [
    ("pos", 10, "Freeway pos=10: valid values are 0-9"),
    ("move_timer", 4, "Freeway move_timer=4: valid values are 0-3"),
    ("cars", [[0, 1, 0, 1]] * 7, "Freeway cars: 7 given, expected 8"),
    ("cars", [[0, 1, 0, 1], [0, 2, 0, 0]] + [[0, 1, 0, 1]] * 6,
     "Freeway car 1 = [0, 2, 0, 0]: valid are x 0-9, y = car + 1 = 2, timer 0-5 and speed ±1-5"),
    ("cars", [[0, 1, 0, 1], [10, 2, 0, 1]] + [[0, 1, 0, 1]] * 6,
     "Freeway car 1 = [10, 2, 0, 1]: valid are x 0-9, y = car + 1 = 2, timer 0-5 and speed ±1-5"),
    ("cars", [[0, 1, 0, 1], [0, 3, 0, 1]] + [[0, 1, 0, 1]] * 6,
     "Freeway car 1 = [0, 3, 0, 1]: valid are x 0-9, y = car + 1 = 2, timer 0-5 and speed ±1-5"),
    ("cars", [[0, 1, 6, 5]] + [[0, 1, 0, 1]] * 7,
     "Freeway car 0 = [0, 1, 6, 5]: valid are x 0-9, y = car + 1 = 1, timer 0-5 and speed ±1-5"),
    ("cars", [[0, 1, 0, -6]] + [[0, 1, 0, 1]] * 7,
     "Freeway car 0 = [0, 1, 0, -6]: valid are x 0-9, y = car + 1 = 1, timer 0-5 and speed ±1-5"),
    ("speed", 1, "Freeway has no field 'speed'; fields: pos, move_timer, terminate_timer, cars, terminal"),
])
def test_freeway_set_env_refuses_what_the_packed_state_cannot_hold(name, value, message):
    assert_set_env_refused(Freeway(1), name, value, message)


def test_freeway_packed_speed_draws_map_the_lowest_and_highest_uniforms_to_the_ends():
    # A key is floor(u * 5^4 * 16): u = 0 is key 0 (every digit 0, no bit: speed 1 heading
    # right), u just below 1 the last key (every digit 4, every bit: speed 5 heading left).
    from envs.minatar.freeway import _code
    from envs.minatar.randomness import StepDraws

    game = Freeway(2, seed=0)
    below_one = 1 - 2 ** -53
    game.random = StepDraws(torch.tensor([[0.0, 0.0], [below_one, below_one]], dtype=torch.float64))
    codes = game._draw_speeds(game.all_envs).view(torch.int16).view(2, 8)
    assert codes[0].tolist() == [_code(0, 1, 1)] * 8
    assert codes[1].tolist() == [_code(0, 5, -5)] * 8
