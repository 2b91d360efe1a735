"""Batched Seaquest against the reference minatar package."""

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
from envs.minatar.seaquest import Seaquest
from envs.minatar.seaquest_rules import ALIVE, X

NOOP, LEFT, UP, RIGHT, DOWN, FIRE = range(6)


def diver_seeker(game, rng: np.random.Generator) -> int:
    """Fetches divers, shoots what is ahead, surfaces when low on oxygen or full; 20 % random."""
    if rng.random() < 0.2:
        return int(rng.integers(6))
    if game.diver_count > 0 and (game.oxygen < 60 or game.diver_count >= 6):
        return UP
    ahead = [e for e in game.e_fish + game.e_subs
             if e[1] == game.sub_y and (e[0] > game.sub_x) == game.sub_or]
    if ahead and rng.random() < 0.6:
        return FIRE
    if game.divers:
        d = min(game.divers, key=lambda d: abs(d[1] - game.sub_y) + abs(d[0] - game.sub_x))
        if d[1] < game.sub_y:
            return UP
        if d[1] > game.sub_y:
            return DOWN
        if d[0] != game.sub_x:
            return LEFT if d[0] < game.sub_x else RIGHT
    if game.sub_y == 0:
        return DOWN
    return int(rng.choice([NOOP, LEFT, RIGHT, FIRE]))


def late_start(rng: np.random.Generator) -> dict[str, int]:
    """The state after ``level`` surfacings (as the reference's ``_surface`` ramps), with
    some divers on board: crowded screens, fast enemies, the 6-diver bonus."""
    spawn, move, level = 20, 5, 0
    for _ in range(int(rng.integers(0, 26))):  # from 19 surfacings on, nothing ramps
        if spawn > 1 or move > 2:
            move -= move > 2 and level % 2 == 1
            spawn -= spawn > 1
            level += 1
    return {"e_spawn_speed": spawn, "e_spawn_timer": spawn, "move_speed": move,
            "ramp_index": level, "diver_count": int(rng.integers(0, 7))}


REFERENCE_FIELDS = ("sub_x", "sub_y", "sub_or", "oxygen", "diver_count", "e_spawn_speed",
                    "e_spawn_timer", "d_spawn_timer", "move_speed", "ramp_index", "shot_timer",
                    "surface", "f_bullets", "e_fish", "e_subs", "divers", "e_bullets")
SCALARS = REFERENCE_FIELDS[:12]  # the numbers; then the object lists


def same_fields(game: Seaquest, i: int, ref) -> None:
    """Env ``i`` holds the reference's every field: the numbers, and each object list in its
    order (enemies per kind), enemy bullets as a set of cells."""
    for name in SCALARS:
        assert int(getattr(game, name)[i]) == int(getattr(ref, name)), name
    enemies = [e for e in game.enemies[i].tolist() if e[ALIVE]]
    # enemy fields: x, y, heading, alive, move timer, shot timer, is_sub
    assert [e[:3] + e[4:5] for e in enemies if not e[6]] == [[int(v) for v in f] for f in ref.e_fish]
    assert [e[:3] + e[4:6] for e in enemies if e[6]] == [[int(v) for v in s] for s in ref.e_subs]
    assert [d[:3] + d[4:] for d in game.divers[i].tolist() if d[ALIVE]] == [[int(v) for v in d] for d in ref.divers]
    assert [b[:3] for b in game.f_bullets[i].tolist() if b[ALIVE]] == [[int(v) for v in b] for b in ref.f_bullets]
    bits = game.e_bullets[i].tolist()
    cells = {(x, y, right) for right in (0, 1) for y in range(10) for x in range(10) if bits[right][y] >> x & 1}
    assert cells == {(x, y, int(right)) for x, y, right in ref.e_bullets}


def test_seaquest_equals_reference_step_for_step():
    result = compare_with_reference("Seaquest", num_envs=8, vector_steps=250, seed=3)
    assert result.episodes >= 50 and result.reward > 0


@pytest.mark.slow
def test_seaquest_equals_reference_step_for_step_10k():
    result = compare_with_reference("Seaquest", num_envs=8, vector_steps=1300, seed=4)
    assert result.steps >= 10_000 and result.episodes >= 300 and result.reward > 0


def test_seaquest_equals_reference_without_ramping_or_sticky_actions():
    result = compare_with_reference("Seaquest", num_envs=4, vector_steps=150, seed=8,
                                    sticky_action_prob=0.0, difficulty_ramping=False)
    assert result.episodes > 10 and result.max_difficulty == 0


def test_seaquest_equals_reference_when_fetching_divers_and_surfacing():
    result = lockstep("Seaquest", num_envs=6, vector_steps=400, policy=diver_seeker, seed=5,
                      same_state=same_fields)
    assert result["max_difficulty"] >= 2 and result["reward"] > 0


def test_seaquest_equals_reference_from_late_difficulty():
    result = lockstep("Seaquest", num_envs=6, vector_steps=300, policy=diver_seeker, seed=6,
                      start=late_start, same_state=same_fields)
    assert result["max_difficulty"] == 19 and result["episodes"] >= 10


@pytest.mark.slow
def test_seaquest_equals_reference_scripted_10k():
    for seed, start in ((7, None), (8, late_start)):
        result = lockstep("Seaquest", num_envs=8, vector_steps=1300, policy=diver_seeker,
                          seed=seed, start=start)
        assert result["steps"] >= 10_000 and result["reward"] > 0


def test_seaquest_reset_leaves_other_envs_alone():
    game = Seaquest(3, seed=1)
    actions = torch.tensor([DOWN, DOWN, FIRE])
    for _ in range(40):  # past the first enemy and diver spawns
        game.step(actions)
        game.reset(game.terminal)
    before = {k: v.clone() for k, v in game.state_dict().items() if k != "random"}
    assert (before["enemies"][:, :, ALIVE] == 1).any() and (before["divers"][:, :, ALIVE] == 1).any()
    game.reset(torch.tensor([True, False, False]))
    after = game.state_dict()
    for name, value in before.items():
        for env in (1, 2):
            assert torch.equal(after[name][env], value[env]), (name, env)
    assert not (after["enemies"][0, :, ALIVE] == 1).any() and after["oxygen"][0] == 200
    assert after["sub_y"][0] == 0 and after["e_spawn_timer"][0] == 20


def test_seaquest_random_policy_matches_reference_statistics():
    ours_ret, ours_len = batched_random_policy_stats("Seaquest", 320, num_envs=64, seed=0)
    ref_ret, ref_len = reference_random_policy_stats("Seaquest", 320, seed=0)
    assert len(ours_ret) == len(ref_ret) == 320
    assert_same_mean(ours_ret, ref_ret, "return")
    assert_same_mean(ours_len, ref_len, "length")


def crowded_state(game, rng: np.random.Generator) -> None:
    """A random mid-game state with objects packed onto a few cells (shared by enemies of
    both kinds, player bullets of both headings and divers), timers near zero."""
    game.sub_x, game.sub_y = int(rng.integers(10)), int(rng.integers(9))
    game.sub_or = bool(game.sub_x == 9 or (game.sub_x > 0 and rng.random() < 0.5))
    game.move_speed = int(rng.integers(2, 6))
    game.e_spawn_speed = int(rng.integers(1, 21))
    game.e_spawn_timer, game.d_spawn_timer = int(rng.integers(3)), int(rng.integers(3))
    game.shot_timer = int(rng.integers(3))
    game.oxygen = int(rng.integers(-1, 4) if rng.random() < 0.3 else rng.integers(4, 201))
    game.diver_count = int(rng.integers(-2, 7))
    game.surface = bool(rng.random() < 0.5)
    game.ramp_index = int(rng.integers(0, 20))
    hot = [(int(rng.integers(10)), int(rng.integers(1, 9))) for _ in range(3)]
    hot.append((game.sub_x, max(game.sub_y, 1)))
    heading = {y: bool(rng.random() < 0.5) for y in range(10)}

    def near() -> tuple[int, int]:
        x, y = hot[rng.integers(len(hot))]
        return min(9, max(0, x + int(rng.integers(-1, 2)))), y

    game.f_bullets = []  # at most 2 (one per 5 steps, 10 steps' life), never 2 alike
    for _ in range(rng.integers(0, 3)):
        x, y = near()
        bullet = [x, y, bool(rng.random() < 0.5)]
        if bullet not in game.f_bullets:
            game.f_bullets.append(bullet)
    if len(game.f_bullets) == 1 and rng.random() < 0.5:  # one heading the other way, to meet
        x, y, right = game.f_bullets[0]
        if 0 <= x + (2 if right else -2) <= 9:
            game.f_bullets.append([x + (2 if right else -2), y, not right])
    game.e_fish, game.e_subs, game.divers, game.e_bullets = [], [], [], []
    for _ in range(rng.integers(0, 12)):
        x, y = near()
        if rng.random() < 0.5:
            game.e_subs.append([x, y, heading[y], int(rng.integers(0, 3)), int(rng.integers(0, 3))])
        else:
            game.e_fish.append([x, y, heading[y], int(rng.integers(0, 3))])
    for _ in range(rng.integers(0, 4)):  # often on the sub, to meet the 6-diver cap
        x, y = (game.sub_x, game.sub_y) if game.sub_y > 0 and rng.random() < 0.4 else near()
        diver = [x, y, bool(rng.random() < 0.5), int(rng.integers(0, 3))]
        # never two alike: divers spawn 30 steps apart and move in step, so play never makes
        # twins, and the reference's by-value list.remove would take the other twin
        if diver not in game.divers:
            game.divers.append(diver)
    for _ in range(rng.integers(0, 4)):
        x, y = near()
        game.e_bullets.append([x, y, bool(rng.random() < 0.5)])


def load_reference(game: Seaquest, i: int, ref) -> None:
    """Copy a reference ``Env``'s state into env ``i`` of the batched game (its enemy list
    holds the subs first: ``e_subs`` is set after ``e_fish`` and keeps the fish after it)."""
    game.set_env_fields(i, {name: getattr(ref, name) for name in REFERENCE_FIELDS})


def piled_state(game, rng: np.random.Generator) -> None:
    """A crowded state with a pile-up: two to four enemies of both kinds on one cell, due to
    move onto the next cell as the player's bullets (one or two, from both sides) arrive
    there, so that which enemy takes which bullet follows the lists' order."""
    crowded_state(game, rng)
    x, y, right = int(rng.integers(2, 8)), int(rng.integers(1, 9)), bool(rng.random() < 0.5)
    step = 1 if right else -1
    game.e_fish = [f for f in game.e_fish if f[1] != y]  # one heading in the row
    game.e_subs = [s for s in game.e_subs if s[1] != y]
    for _ in range(rng.integers(2, 5)):
        if rng.random() < 0.5:
            game.e_subs.insert(int(rng.integers(len(game.e_subs) + 1)), [x, y, right, 0, int(rng.integers(3))])
        else:
            game.e_fish.insert(int(rng.integers(len(game.e_fish) + 1)), [x, y, right, 0])
    target = x + step
    game.f_bullets = [[target - 1, y, True], [target + 1, y, False]][:int(rng.integers(1, 3))]
    if rng.random() < 0.5:
        game.f_bullets.reverse()


def test_seaquest_equals_reference_from_crowded_random_states():
    ended = fuzz("Seaquest", num_envs=300, steps=4, make_state=crowded_state,
                 load=load_reference, seed=0)
    assert 30 < ended < 270
    fuzz("Seaquest", num_envs=300, steps=2, make_state=piled_state, load=load_reference, seed=0)


@pytest.mark.slow
def test_seaquest_equals_reference_from_crowded_random_states_many():
    for seed in range(1, 11):
        fuzz("Seaquest", num_envs=500, steps=6, make_state=crowded_state, load=load_reference,
             seed=seed)


def test_seaquest_state_dict_round_trip_continues_identically():
    game = Seaquest(16, seed=5)
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
    other = Seaquest(16, seed=99)
    other.load_state_dict(saved)
    for a, (r, done, obs) in zip(actions[40:], rest):
        r2, done2 = other.step(a)
        other.reset(done2)
        assert torch.equal(r, r2) and torch.equal(done, done2) and torch.equal(obs, other.observation())


def test_seaquest_set_env_puts_reference_lists_into_the_slots():
    game = Seaquest(2, seed=0)
    game.set_env(1, "e_subs", [[3, 4, 1, 2, 7]])
    game.set_env(1, "e_fish", [[9, 2, 0, 5], [0, 6, 1, 1]])  # the sub is kept, after the fish
    # enemy fields: x, y, heading, alive, move timer, shot timer, is_sub
    assert game.enemies[1, :4].tolist() == [[9, 2, 0, 1, 5, 0, 0], [0, 6, 1, 1, 1, 0, 0],
                                           [3, 4, 1, 1, 2, 7, 1], [0] * 7]
    assert game.enemy_count.tolist() == [0, 3] and not game.enemies[0].any()
    game.set_env(1, "e_fish", [])  # the fish go, the sub stays
    assert game.enemies[1, :2].tolist() == [[3, 4, 1, 1, 2, 7, 1], [0] * 7] and game.enemy_count[1] == 1
    game.set_env(1, "f_bullets", [[5, 5, 1], [5, 0, 0], [9, 9, 0]])  # full: 3 slots; rows 0 and 9
    game.set_env(1, "divers", [[2, 8, 1, 127]])  # the largest timer a slot holds
    assert game.f_bullets[1].tolist() == [[5, 5, 1, 1], [5, 0, 0, 1], [9, 9, 0, 1]]
    assert game.divers[1, :2].tolist() == [[2, 8, 1, 1, 127], [0] * 5]
    game.set_env(1, "e_bullets", [[9, 1, 1], [0, 1, 1], [4, 7, 0], [4, 7, 0]])  # a shared cell is one bit
    assert game.e_bullets[1, 1, 1] == 512 + 1 and game.e_bullets[1, 0, 7] == 16
    assert game.e_bullets[1].count_nonzero() == 2 and not game.e_bullets[0].any()


@pytest.mark.parametrize("name, value, message", [
    ("e_fish", [[10, 2, 0, 1]], "Seaquest e_fish entry [10, 2, 0, 1]: valid is [x 0-9, y 0-9, "
                                "heading 0/1, timers 0-127] (4 numbers)"),
    ("e_subs", [[1, 2, 0, 1]], "Seaquest e_subs entry [1, 2, 0, 1]: valid is [x 0-9, y 0-9, "
                               "heading 0/1, timers 0-127] (5 numbers)"),
    ("divers", [[1, 2, 0, 200]], "Seaquest divers entry [1, 2, 0, 200]: valid is [x 0-9, y 0-9, "
                                 "heading 0/1, timers 0-127] (4 numbers)"),
    ("e_bullets", [[1, 2, 2]], "Seaquest e_bullets entry [1, 2, 2]: valid is [x 0-9, y 0-9, "
                               "heading 0/1] (3 numbers)"),
    ("e_bullets", [[1, 10, 0]], "Seaquest e_bullets entry [1, 10, 0]: valid is [x 0-9, y 0-9, "
                                "heading 0/1] (3 numbers)"),
    ("e_subs", [[1, 2, 0, 1, 0]], "Seaquest e_subs: 1 given and 32 e_fish kept make 33 enemies, "
                                  "valid are at most 32"),
    ("f_bullets", [[1, 2, 0]] * 4, "Seaquest f_bullets: 4 given, valid are at most 3"),
    ("e_fish", [[1, 2, 0, 1]], "Seaquest e_fish: 1 given and 32 e_subs kept make 33 enemies, "
                               "valid are at most 32"),
    *((field, 0, f"Seaquest has no field {field!r}; fields: sub_x, sub_y, sub_or, oxygen, diver_count, "
                 "e_spawn_speed, e_spawn_timer, d_spawn_timer, move_speed, ramp_index, shot_timer, "
                 "surface, terminal, f_bullets, e_bullets, e_fish, e_subs, divers")
      for field in ("enemies", "enemy_count")),
])
def test_seaquest_set_env_refuses_what_the_slots_cannot_hold(name, value, message):
    game = Seaquest(1)
    kind, enemy = ("e_fish", [3, 4, 1, 2]) if name == "e_subs" else ("e_subs", [3, 4, 1, 2, 7])
    game.set_env(0, kind, [enemy] * 32)  # a full enemy list of the other kind
    assert_set_env_refused(game, name, value, message)


@pytest.mark.parametrize("capacity", [3, 12])  # the one-hot sum (<= 8 slots) and the scatter
def test_slot_compaction_keeps_live_objects_in_order(capacity):
    from envs.minatar import slots

    gen = torch.Generator().manual_seed(capacity)
    objects = torch.randint(1, 100, (4, capacity, 50), generator=gen).to(slots.DTYPE)
    objects[ALIVE] = torch.randint(0, 2, (capacity, 50), generator=gen).to(slots.DTYPE)
    packed, count = slots.compact(objects, ALIVE, count=True)
    for env in range(50):
        live = [objects[:, k, env].tolist() for k in range(capacity) if objects[ALIVE, k, env]]
        assert count[env] == len(live)
        assert [packed[:, k, env].tolist() for k in range(len(live))] == live
        assert not packed[:, len(live):, env].any()
    mask = objects[ALIVE].bool()
    assert torch.equal(slots.anyof(mask, 0), mask.any(0))
    assert torch.equal(slots.pick(mask, objects[X], -1), torch.where(mask, objects[X], -1))
