"""Checking a batched game against the reference ``minatar`` package, under shared randomness.

:func:`compare_with_reference` runs N reference envs and one batched game in lockstep under
the same random actions: every reference env draws from its own seeded ``RandomState``
through a :class:`~envs.minatar.randomness.RandomStateRecorder`, and the batched game draws
from a :class:`~envs.minatar.randomness.RecordedRandomness` fed by those recorders, so both
see the same numbers in the same per-env order. After each step it compares every
observation, reward and termination for exact equality; a terminated env is reset (the
reference's ``reset()``, the game's ``reset(mask)``) in the same step.

Used by the tests (the reference package is a test dependency, imported only here).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from envs.minatar import GAMES, game_class
from envs.minatar.randomness import RecordedRandomness


@dataclass
class Comparison:
    """What a lockstep run saw (it raises ``AssertionError`` at the first difference)."""

    steps: int
    """Env steps compared (``num_envs * vector steps``)."""
    episodes: int
    """Episodes that ended (terminated) during the run."""
    reward: float
    """Sum of rewards over all envs."""
    draws: int
    """Random draws replayed."""
    max_difficulty: int
    """Highest difficulty level any env reached (0 for games that do not ramp)."""


def reference_envs(game: str, num_envs: int, seed: int, sticky_action_prob: float = 0.1,
                   difficulty_ramping: bool = True) -> list:
    """``num_envs`` reference ``minatar.Environment`` of ``game``, env ``i`` seeded ``seed + i``."""
    from minatar import Environment

    envs = []
    for i in range(num_envs):
        env = Environment(GAMES[game][0], sticky_action_prob=sticky_action_prob,
                          difficulty_ramping=difficulty_ramping)
        env.seed(seed + i)
        envs.append(env)
    return envs


def compare_with_reference(game: str, num_envs: int, vector_steps: int, seed: int = 0,
                           sticky_action_prob: float = 0.1, difficulty_ramping: bool = True,
                           actions_seed: int = 1234,
                           action_probs: list[float] | None = None, compile: bool = False) -> Comparison:
    """Lockstep run (see the module docstring); raises ``AssertionError`` at the first mismatch.

    Actions are uniformly random, or drawn with ``action_probs`` (six probabilities) to reach
    states a uniform policy seldom does (Freeway's far side).
    """
    random = RecordedRandomness(num_envs)
    refs = reference_envs(game, num_envs, seed, sticky_action_prob, difficulty_ramping)
    for i, env in enumerate(refs):
        rec = random.recorder(i, env.random)
        env.random = rec
        env.env.random = rec
    for env in refs:
        env.reset()
    batched = game_class(game)(num_envs, randomness=random, sticky_action_prob=sticky_action_prob,
                               difficulty_ramping=difficulty_ramping, compile=compile)
    action_rng = np.random.default_rng(actions_seed)

    def check_obs(t: int) -> None:
        ours = batched.observation().numpy()
        for i, env in enumerate(refs):
            theirs = np.moveaxis(env.state(), -1, 0)
            if not np.array_equal(ours[i], theirs):
                diff = np.argwhere(ours[i] != theirs)
                raise AssertionError(f"{game} step {t} env {i}: observation differs at (c, y, x) "
                                     f"{diff[:5].tolist()}")

    check_obs(0)
    episodes, total, level = 0, 0.0, 0
    for t in range(1, vector_steps + 1):
        actions = action_rng.choice(6, size=num_envs, p=action_probs)
        theirs = [env.act(int(a)) for env, a in zip(refs, actions)]
        reward, terminated = batched.step(torch.from_numpy(actions))
        ref_reward = np.array([r for r, _ in theirs], dtype=np.float32)
        ref_term = np.array([d for _, d in theirs], dtype=bool)
        if not np.array_equal(reward.numpy(), ref_reward):
            raise AssertionError(f"{game} step {t}: rewards {reward.tolist()} != reference {ref_reward.tolist()}")
        if not np.array_equal(terminated.numpy(), ref_term):
            raise AssertionError(f"{game} step {t}: terminated {terminated.tolist()} != reference {ref_term.tolist()}")
        check_obs(t)
        if ref_term.any():
            for i in np.flatnonzero(ref_term):
                refs[i].reset()
            batched.reset(terminated)
            check_obs(t)
        if batched.difficulty() is not None:
            level = max(level, int(batched.difficulty().max()))
        episodes += int(ref_term.sum())
        total += float(ref_reward.sum())
    if random.remaining():
        raise AssertionError(f"{game}: the game left {random.remaining()} reference draws unused")
    return Comparison(steps=num_envs * vector_steps, episodes=episodes, reward=total, draws=random.popped,
                      max_difficulty=level)


def reference_random_policy_stats(game: str, episodes: int, seed: int = 0,
                                  max_steps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Returns and lengths of ``episodes`` reference episodes under uniformly random actions."""
    from minatar import Environment

    env = Environment(GAMES[game][0])
    env.seed(seed)
    rng = np.random.default_rng(seed + 1)
    rets, lens = np.zeros(episodes), np.zeros(episodes, dtype=np.int64)
    for e in range(episodes):
        env.reset()
        done, ret, n = False, 0.0, 0
        while not done and (max_steps is None or n < max_steps):
            r, done = env.act(int(rng.integers(6)))
            ret += r
            n += 1
        rets[e], lens[e] = ret, n
    return rets, lens


def batched_random_policy_stats(game: str, episodes: int, num_envs: int = 64, seed: int = 0,
                                max_steps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Returns and lengths of ``episodes`` batched episodes under random actions (torch
    randomness): each env's first ``ceil(episodes / num_envs)`` episodes, so that short
    episodes are not favoured by taking whichever end first."""
    per_env = -(-episodes // num_envs)
    gen = torch.Generator().manual_seed(seed + 1)
    game_obj = game_class(game)(num_envs, seed=seed)
    ret = torch.zeros(num_envs, dtype=torch.float64)
    length = torch.zeros(num_envs, dtype=torch.long)
    count = torch.zeros(num_envs, dtype=torch.long)
    rets: list[float] = []
    lens: list[int] = []
    while bool((count < per_env).any()):
        actions = torch.randint(0, 6, (num_envs,), generator=gen)
        reward, done = game_obj.step(actions)
        ret += reward
        length += 1
        if max_steps is not None:
            done = done | (length >= max_steps)
        if done.any():
            keep = done & (count < per_env)
            idx = torch.nonzero(keep).flatten()
            rets.extend(ret[idx].tolist())
            lens.extend(length[idx].tolist())
            count += done.long()
            ret[done] = 0
            length[done] = 0
            game_obj.reset(done)
    return np.array(rets[:episodes]), np.array(lens[:episodes])


def assert_same_mean(ours: np.ndarray, theirs: np.ndarray, what: str = "mean") -> float:
    """Assert two samples' means differ by at most 3 standard errors of the difference
    (``sqrt(var1/n1 + var2/n2)``); returns the difference in standard errors (0 when both
    samples are constant and equal)."""
    ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    se = np.sqrt(ours.var(ddof=1) / len(ours) + theirs.var(ddof=1) / len(theirs))
    diff = abs(ours.mean() - theirs.mean())
    if se == 0:
        assert diff == 0, f"{what}: {ours.mean()} vs reference {theirs.mean()} (both constant)"
        return 0.0
    assert diff <= 3 * se, f"{what}: {ours.mean():.4f} vs reference {theirs.mean():.4f}, {diff / se:.2f} SE apart"
    return diff / se
