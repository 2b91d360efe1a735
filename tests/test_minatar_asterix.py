"""Batched Asterix against the reference minatar package."""

import functools

import numpy as np
import pytest
import torch
from minatar.environments.asterix import Env as ReferenceAsterix

from envs.minatar.asterix import FIELDS, SLOTS, Asterix
from envs.minatar.reference import (
    assert_same_mean,
    batched_random_policy_stats,
    compare_with_reference,
    reference_random_policy_stats,
)
from minatar_fuzz import assert_set_env_refused, fuzz, fuzz_seeds
from minatar_lockstep import lockstep


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


@functools.lru_cache(maxsize=1)
def reference_timers(steps: int = 1000) -> list[tuple[int, ...]]:
    """The reference's timer fields after each of ``steps`` live steps from a reset (with
    ramping; entities cleared before every step so that nothing ends the episode): every
    joint timer state the rules reach, the last ones the ramp's fixed point."""
    env = ReferenceAsterix(ramping=True)
    env.random = np.random.RandomState(0)
    states = []
    for _ in range(steps):
        states.append(tuple(getattr(env, name) for name in FIELDS))
        env.entities = [None] * SLOTS
        env.act(0)
    return states


def busy_state(game, rng: np.random.Generator) -> None:
    """A random reachable state: timers from any step after a reset (any difficulty), the
    player anywhere, most rows holding an entity, many of them next to the player."""
    for name, value in zip(FIELDS, reference_timers()[rng.integers(len(reference_timers()))]):
        setattr(game, name, value)
    game.player_x, game.player_y = int(rng.integers(10)), int(rng.integers(1, 9))
    game.entities = [None] * SLOTS
    for slot in range(SLOTS):
        if rng.random() < 0.7:
            near = game.player_x + int(rng.integers(-2, 3))
            x = min(9, max(0, near)) if rng.random() < 0.7 else int(rng.integers(10))
            game.entities[slot] = [x, slot + 1, bool(rng.random() < 0.5), bool(rng.random() < 1 / 3)]


def load_reference(game: Asterix, i: int, ref) -> None:
    names = ("player_x", "player_y", "entities", *FIELDS)
    game.set_env_fields(i, {name: getattr(ref, name) for name in names})


def test_asterix_equals_reference_from_random_states():
    ended = fuzz("Asterix", num_envs=400, steps=20, make_state=busy_state,
                 load=load_reference, seed=0)
    assert 40 < ended < 360


@pytest.mark.slow
def test_asterix_equals_reference_from_random_states_many():
    fuzz_seeds("Asterix", make_state=busy_state, load=load_reference)


def test_asterix_equals_reference_from_late_difficulty():
    # timers from step 700 on (level 7 up to the ramp's end), set after every reset
    late = reference_timers()[700:]
    result = lockstep("Asterix", num_envs=8, vector_steps=800, seed=6,
                      policy=lambda game, rng: int(rng.integers(6)),
                      start=lambda rng: dict(zip(FIELDS, late[rng.integers(len(late))])))
    assert result["max_difficulty"] >= 7 and result["episodes"] >= 20 and result["reward"] > 0


def test_asterix_set_env_puts_reference_fields_into_the_packed_state():
    game = Asterix(2)
    entities = [None, [3, 2, True, False], None, None, None, None, [0, 7, False, True], [9, 8, False, False]]
    game.set_env_fields(1, {"player_x": 2, "player_y": 7, "entities": entities,
                            **dict(zip(FIELDS, reference_timers()[500]))})
    assert (game.player_x.tolist(), game.player_y.tolist()) == ([5, 2], [5, 7])
    assert game.ent_x[1].tolist() == [-1, 3, -1, -1, -1, -1, 0, 9] and not game.ent_alive[0].any()
    assert game.ent_right[1].tolist() == [False, True] + [False] * 6
    assert game.ent_gold[1].tolist() == [False] * 6 + [True, False]
    assert tuple(int(game.state_dict()[name][1]) for name in FIELDS) == reference_timers()[500]
    assert int(game.clock[0]) == 0
    game.set_env(1, "player_y", 3)  # one field: the other coordinate kept
    assert (int(game.player_x[1]), int(game.player_y[1])) == (2, 3)
    game.set_env(1, "terminal", 1)
    assert game.terminal.tolist() == [False, True]
    game.set_env(1, "terminal", 0)
    assert game.terminal.tolist() == [False, False]
    flat = Asterix(1, difficulty_ramping=False)  # its timers never ramp
    with pytest.raises(ValueError, match="ramp_index=1, .* from a reset without ramping$"):
        flat.set_env(0, "ramp_index", 1)
    with pytest.raises(ValueError, match=r"\(spawn_timer=3, move_timer=5, "):
        flat.set_env(0, "spawn_timer", 3)  # alone: the move timer is 3 when it is 3
    flat.set_env_fields(0, {"spawn_timer": 3, "move_timer": 3})  # 7 steps after a reset
    assert int(flat.clock[0]) == 7 and int(flat.spawn_timer[0]) == 3


@pytest.mark.parametrize("name, value, message", [
    ("spawn_timer", 77, "Asterix timers (spawn_timer=77, move_timer=5, ramp_timer=100, ramp_index=0, "
                        "spawn_speed=10, move_speed=5) are not a state the rules reach from a reset"),
    ("player_y", 0, "Asterix player_y=0: valid values are 1-8"),
    ("player_x", 10, "Asterix player_x=10: valid values are 0-9"),
    ("entities", [None] * 7, "Asterix entities: 7 rows given, expected 8"),
    ("entities", [[10, 1, True, False]] + [None] * 7,
     "Asterix entity [10, 1, True, False] in row slot 0: valid are x 0-9 and y = slot + 1 = 1"),
    ("entities", [[3, 1, True, False]] * 2 + [None] * 6,
     "Asterix entity [3, 1, True, False] in row slot 1: valid are x 0-9 and y = slot + 1 = 2"),
    ("shot_timer", 0, "Asterix has no field 'shot_timer'; fields: player_x, player_y, entities, "
                      "terminal, spawn_timer, move_timer, ramp_timer, ramp_index, spawn_speed, move_speed"),
])
def test_asterix_set_env_refuses_what_the_packed_state_cannot_hold(name, value, message):
    assert_set_env_refused(Asterix(1), name, value, message)


def test_asterix_clock_table_stops_where_the_timers_reach_no_cycle(monkeypatch):
    import envs.minatar.asterix as asterix

    def never_repeats(state, ramping):
        return (state[0] + 1, *state[1:]), False, False

    monkeypatch.setattr(asterix, "_timers", never_repeats)
    with pytest.raises(RuntimeError, match="^Asterix's timers reach no cycle within 4096 steps of a reset$"):
        asterix._clock.__wrapped__(True, torch.device("cpu"))
