"""Random game states, set alike in reference envs and one batched game, stepped in lockstep.

Play seldom packs several objects onto one cell, which is where the reference's list order
decides who hits whom. :func:`fuzz` draws many such states at once (a ``make_state``
function fills one reference ``Env``), copies each into one env of a batched game (a
``load`` function), then steps both sides with random actions under recorded draws and
compares every observation, reward and termination.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from envs.minatar import game_class
from envs.minatar.randomness import RecordedRandomness
from envs.minatar.reference import reference_envs


def fuzz(game: str, num_envs: int, steps: int, make_state: Callable, load: Callable,
         seed: int = 0) -> int:
    """Fuzz ``num_envs`` random states for ``steps`` steps each; returns how many ended."""
    rng = np.random.default_rng(seed)
    random = RecordedRandomness(num_envs)
    refs = reference_envs(game, num_envs, seed)
    for i, env in enumerate(refs):
        env.random = env.env.random = random.recorder(i, env.random)
        env.reset()  # what a reset draws (Freeway's cars), for the batched game's first reset
        make_state(env.env, rng)
        env.last_action = int(rng.integers(6))
    batched = game_class(game)(num_envs, randomness=random)
    for i, env in enumerate(refs):
        load(batched, i, env.env)
        batched.last_action[i] = env.last_action

    def check(t: int) -> None:
        ours = batched.observation().numpy()
        for i, env in enumerate(refs):
            theirs = np.moveaxis(env.state(), -1, 0)
            if not np.array_equal(ours[i], theirs):
                diff = np.argwhere(ours[i] != theirs)[:5].tolist()
                raise AssertionError(f"{game} fuzz step {t} env {i}: observation differs at {diff}")

    check(0)
    for t in range(1, steps + 1):
        actions = rng.integers(0, 6, num_envs)
        theirs = [env.act(int(a)) for env, a in zip(refs, actions)]
        reward, terminated = batched.step(torch.from_numpy(actions))
        ref_reward = np.array([r for r, _ in theirs], dtype=np.float32)
        ref_term = np.array([d for _, d in theirs], dtype=bool)
        bad = np.flatnonzero((reward.numpy() != ref_reward) | (terminated.numpy() != ref_term))
        assert bad.size == 0, (f"fuzz step {t} env {bad[0]}: reward/terminal "
                               f"{reward[bad[0]].item()}/{terminated[bad[0]].item()} vs reference "
                               f"{ref_reward[bad[0]]}/{ref_term[bad[0]]}")
        check(t)
    assert random.remaining() == 0
    return int(batched.terminal.sum())


def fuzz_seeds(game: str, make_state: Callable, load: Callable, seeds=range(1, 11),
               num_envs: int = 500, steps: int = 30) -> None:
    """:func:`fuzz` over several seeds (the ``slow`` tests' many random states)."""
    for seed in seeds:
        fuzz(game, num_envs, steps, make_state=make_state, load=load, seed=seed)


def assert_set_env_refused(game, name: str, value, message: str) -> None:
    """``game.set_env(0, name, value)`` raises ``ValueError(message)`` and writes nothing."""
    before = {k: v.clone() for k, v in game.state_dict().items() if k != "random"}
    try:
        game.set_env(0, name, value)
    except ValueError as error:
        assert str(error) == message
    else:
        raise AssertionError(f"set_env(0, {name!r}, {value!r}) was not refused")
    after = game.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())
