"""A batched game's step draws from one pre-drawn block of uniforms (`StepDraws`), so the step is
a pure function of state, actions and block: each game's `draws_per_step` counts exactly what its
step reads, and the compiled step equals the eager one value for value (`slow`: compilation)."""

import pytest
import torch

import envs.minatar.base as base
from envs.minatar import GAMES, game_class
from envs.minatar.randomness import StepDraws
from minatar_lockstep import step_twins


def test_step_draws_serve_columns_in_order_and_refuse_to_overdraw():
    block = torch.tensor([[0.10, 0.50, 0.25, 0.75, 0.99],
                          [0.90, 0.00, 0.60, 0.20, 0.40]], dtype=torch.float64)
    draws = StepDraws(block)
    mask = torch.tensor([True, False])  # ignored: every env reads every column
    assert torch.equal(draws.uniform(mask), block[:, 0])
    # integers(low, high) = low + floor(u * (high - low)), per-env bounds allowed
    assert draws.integers(1, 9, mask).tolist() == [1 + int(0.50 * 8), 1 + int(0.00 * 8)]
    assert draws.integers(0, torch.tensor([4, 10]), mask, size=2).tolist() == [[1, 3], [6, 2]]
    assert draws.used == 4
    with pytest.raises(IndexError, match="more than the 5 columns"):
        draws.uniform(mask, size=2)


class CountingDraws(StepDraws):
    seen: list[int] = []

    def __init__(self, block):
        super().__init__(block)
        CountingDraws.seen.append(self)


@pytest.mark.parametrize("name", sorted(GAMES))
def test_every_step_reads_exactly_draws_per_step_columns(name, monkeypatch):
    monkeypatch.setattr(base, "StepDraws", CountingDraws)
    CountingDraws.seen = []
    game = game_class(name)(16, seed=1)
    gen = torch.Generator().manual_seed(2)
    ends = 0
    for _ in range(400):
        _, done = game.step(torch.randint(0, 6, (16,), generator=gen))
        ends += int(done.sum())
        game.reset(done)
    if game.draws_per_step == 0:
        assert CountingDraws.seen == []
    else:
        assert len(CountingDraws.seen) == 400
        assert {d.used for d in CountingDraws.seen} == {game.draws_per_step}
    assert ends > 0 or name == "Freeway"


def test_the_block_is_the_only_source_of_a_step():
    # same state, same actions, same block -> same step, whatever the game's generator holds
    a, b = game_class("Asterix")(32, seed=0), game_class("Asterix")(32, seed=0)
    b.random.generator.manual_seed(12345)
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        actions = torch.randint(0, 6, (32,), generator=gen)
        block = torch.rand(32, a.draws_per_step, dtype=torch.float64, generator=gen)
        ra, ta = a._advance(actions, block)
        rb, tb = b._advance(actions, block)
        assert torch.equal(ra, rb) and torch.equal(ta, tb)
        assert torch.equal(a.observation(), b.observation())


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(GAMES))
def test_compiled_step_equals_eager_step(name):
    eager = game_class(name)(8, seed=3)
    compiled = game_class(name)(8, seed=3, compile=True)
    ends = step_twins(eager, compiled, 600)
    assert ends > 0 or name == "Freeway"
