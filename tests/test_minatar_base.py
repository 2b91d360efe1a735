"""What every batched MinAtar game gets from ``BatchedGame``: the sticky-action draw and the
step's block of draws, masks and actions of any integer dtype, ``compile=True`` threading the
state through the compiled function, the state dict, and one-line refusals."""

import pytest
import torch

from envs.minatar import GAMES, game_class
from envs.minatar.randomness import TorchRandomness
from minatar_lockstep import assert_same_state, step_twins


@pytest.mark.parametrize("name", ["Seaquest", "Asterix"])
def test_a_step_is_the_sticky_draw_then_a_float64_block_then_the_rules(name):
    # the game's generator gives float32 sticky uniforms [N], then the [N, K] float64 block
    game, twin = (game_class(name)(6, seed=4, sticky_action_prob=0.5) for _ in range(2))
    assert game.draws_per_step > 0
    for _ in range(80):
        actions = torch.randint(0, 6, (6,))
        g = twin.random.generator
        u = torch.rand(6, generator=g)
        taken = torch.where(u < 0.5, twin.last_action, actions)
        twin.last_action = taken
        block = torch.rand(6, twin.draws_per_step, dtype=torch.float64, generator=g)
        expected = twin._advance(taken, block)
        got = game.step(actions)
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
        assert_same_state(game, twin)
        done = got[1]
        game.reset(done)
        twin.reset(done)
    assert torch.equal(game.last_action, twin.last_action)


@pytest.mark.parametrize("reads_are_free", [True, False])
def test_masks_and_actions_of_any_integer_dtype_act_as_bool_masks_and_long_actions(reads_are_free):
    games = [game_class("Seaquest")(8, seed=1) for _ in range(3)]
    for game in games:
        game.reads_are_free = reads_are_free
    gen = torch.Generator().manual_seed(0)
    for t in range(150):
        actions = torch.randint(0, 6, (8,), generator=gen)
        outs = [games[0].step(actions), games[1].step(actions.to(torch.uint8)),
                games[2].step(actions.to(torch.int32))]
        done = outs[0][1]
        for out in outs[1:]:
            assert torch.equal(out[0], outs[0][0]) and torch.equal(out[1], done), t
        games[0].reset(done)
        games[1].reset(done.to(torch.uint8))
        games[2].reset(done.long())
    for other in games[1:]:
        assert_same_state(games[0], other)


@pytest.mark.parametrize("name", sorted(GAMES))
def test_compile_runs_the_step_through_torch_compile_with_the_state_threaded(name, monkeypatch):
    # torch.compile stood in for by the function itself: the state goes in as arguments and
    # comes back as results (the compiled graph holds none), which must give the eager steps
    calls = []

    def fake_compile(fn, **kwargs):
        calls.append(kwargs)
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    eager, compiled = game_class(name)(8, seed=2), game_class(name)(8, seed=2, compile=True)
    assert calls == [{"dynamic": False}] and compiled.compiled and not eager.compiled
    step_twins(eager, compiled, 150, seed=1)
    assert_same_state(eager, compiled)


def test_defaults_seed_0_eager_and_ramping():
    game = game_class("Asterix")(4)
    same = game_class("Asterix")(4, seed=0)
    assert not game.compiled and game.difficulty_ramping and game.sticky_action_prob == 0.1
    for _ in range(50):
        actions = torch.randint(0, 6, (4,))
        assert torch.equal(game.step(actions)[0], same.step(actions)[0])
    assert_same_state(game, same)


@pytest.mark.parametrize("name", GAMES)
def test_state_layout_holds_through_steps_ends_and_resets(name):
    # every state tensor keeps the dtype and shape it has after construction, so a checkpoint
    # of a game stores what the layout says (e.g. SpaceInvaders' maps as int16 rows)
    game = game_class(name)(5, seed=3)
    layout = {k: (v.dtype, v.shape) for k, v in game.state_dict().items() if k != "random"}
    gen = torch.Generator().manual_seed(0)
    ends = 0
    for _ in range(150):
        done = game.step(torch.randint(0, 6, (5,), generator=gen))[1]
        ends += int(done.sum())
        assert {k: (v.dtype, v.shape) for k, v in game.state_dict().items() if k != "random"} == layout
        game.reset(done & (torch.rand(5, generator=gen) < 0.5))  # some ended envs stay ended a step
    assert ends > 0 or name == "Freeway"


@pytest.mark.parametrize("name", GAMES)
def test_a_reset_env_keeps_nothing_of_its_episode(name):
    # mid-game envs 0 and 2, reset, equal the same envs of a new game reset with the same draws
    # (a game draws for every env and keeps the draws of the envs it resets): a reset sets
    # every field (the values themselves are the reference's: the lockstep tests). Envs 1 and 3
    # are untouched.
    # The previous action is not episode state: as in the reference, a sticky action may repeat
    # the last episode's last action.
    game, new = game_class(name)(4, seed=3), game_class(name)(4, seed=8)
    gen = torch.Generator().manual_seed(1)
    for _ in range(60):
        game.reset(game.step(torch.randint(0, 6, (4,), generator=gen))[1])
    before = game.state_dict()
    new.random.load_state_dict(game.random.state_dict())
    mask = torch.tensor([True, False, True, False])
    game.reset(mask)
    new.reset(mask)
    after, fresh = game.state_dict(), new.state_dict()
    assert torch.equal(after["last_action"], before["last_action"])
    for key in after:
        if key not in ("random", "last_action"):
            assert torch.equal(after[key][mask], fresh[key][mask]), key
            assert torch.equal(after[key][~mask], before[key][~mask]), key


def test_load_state_dict_takes_other_dtypes_and_refuses_another_shape():
    game = game_class("Seaquest")(3, seed=0)
    for _ in range(40):
        game.step(torch.randint(0, 6, (3,)))
    state = game.state_dict()
    widened = {k: (v.long() if isinstance(v, torch.Tensor) else v) for k, v in state.items()}
    other = game_class("Seaquest")(3, seed=9)
    other.load_state_dict(widened)
    assert_same_state(game, other)
    assert other.enemies.dtype == game.enemies.dtype and other.surface.dtype == torch.bool
    wrong = dict(state, oxygen=torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^Seaquest state 'oxygen' has shape \(4,\), expected \(3,\)$"):
        other.load_state_dict(wrong)


def test_set_env_reads_a_reference_number_as_a_flag_for_a_bool_field():
    game = game_class("Seaquest")(2, seed=0)
    game.set_env(1, "surface", 0)
    assert game.surface.tolist() == [True, False]
    game.set_env(1, "surface", 1)
    game.set_env(0, "oxygen", 17)
    assert game.surface.tolist() == [True, True] and game.oxygen.tolist() == [17, 200]


def test_bad_arguments_are_refused_in_one_line():
    cls = game_class("Breakout")
    with pytest.raises(ValueError, match=r"^num_envs=0 must be >= 1$"):
        cls(0)
    for p in (1.5, -0.1):
        with pytest.raises(ValueError, match=rf"^sticky_action_prob={p} must be in \[0, 1\]$"):
            cls(2, sticky_action_prob=p)
    assert cls(2, sticky_action_prob=1.0).sticky_action_prob == 1.0
    with pytest.raises(ValueError, match=r"^randomness serves 3 envs, the game 2$"):
        cls(2, randomness=TorchRandomness(3))
