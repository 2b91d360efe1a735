"""Lockstep runs of a batched game and reference envs under a state-reading policy.

``envs.minatar.reference.compare_with_reference`` drives both sides with random actions.
A uniform policy seldom reaches some rules (Seaquest's surfacing with divers, ramping and
crowded screens; SpaceInvaders' cleared waves), so :func:`lockstep` lets a scripted policy
read each reference env's state to pick its action, and lets a start hook put both sides in
the same non-initial state after every reset (e.g. a late difficulty level). It compares
every observation, reward and termination for exact equality, as the random-action run does.
:func:`step_twins` runs two batched games (e.g. compiled and eager) against each other the same way,
and :func:`assert_same_state` compares their whole states.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from envs.minatar import game_class
from envs.minatar.randomness import RecordedRandomness
from envs.minatar.reference import reference_envs

Policy = Callable[[object, np.random.Generator], int]
"""``policy(reference_game, rng) -> action``; ``reference_game`` is ``Environment.env``."""
Start = Callable[[np.random.Generator], dict]
"""``start(rng) -> {state name: value}`` set on both sides after each reset (an int, or a
numpy array for a map)."""
SameState = Callable[[object, int, object], None]
"""``same_state(batched, i, reference_game)`` asserts that env ``i`` holds the reference
game's state (its fields, not only what the observation shows)."""


def lockstep(game: str, num_envs: int, vector_steps: int, policy: Policy, seed: int = 0,
             start: Start | None = None, policy_seed: int = 99,
             same_state: SameState | None = None) -> dict[str, int]:
    """Run, compare (with ``same_state`` also every env's fields after every step), and return
    counts: ``steps``, ``episodes``, ``reward``, ``max_difficulty``; raises
    ``AssertionError`` at the first difference."""
    random = RecordedRandomness(num_envs)
    refs = reference_envs(game, num_envs, seed)
    for i, env in enumerate(refs):
        env.random = env.env.random = random.recorder(i, env.random)
    batched = game_class(game)(num_envs, randomness=random)
    rng = np.random.default_rng(policy_seed)

    def restart(envs: np.ndarray) -> None:
        mask = torch.zeros(num_envs, dtype=torch.bool)
        mask[torch.as_tensor(envs, dtype=torch.long)] = True
        batched.reset(mask)
        for i in envs:
            refs[i].reset()
            values = start(rng) if start is not None else {}
            for name, value in values.items():
                setattr(refs[i].env, name, value)
            batched.set_env_fields(i, values)

    def check(t: int) -> None:
        ours = batched.observation().numpy()
        for i, env in enumerate(refs):
            theirs = np.moveaxis(env.state(), -1, 0)
            if not np.array_equal(ours[i], theirs):
                diff = np.argwhere(ours[i] != theirs)[:5].tolist()
                raise AssertionError(f"{game} step {t} env {i}: observation differs at (c, y, x) {diff}")
            if same_state is not None:
                same_state(batched, i, env.env)

    if start is not None:
        restart(np.arange(num_envs))
    check(0)
    episodes, total, level = 0, 0.0, 0
    for t in range(1, vector_steps + 1):
        actions = np.array([policy(env.env, rng) for env in refs])
        theirs = [env.act(int(a)) for env, a in zip(refs, actions)]
        reward, terminated = batched.step(torch.from_numpy(actions))
        ref_reward = np.array([r for r, _ in theirs], dtype=np.float32)
        ref_term = np.array([d for _, d in theirs], dtype=bool)
        assert np.array_equal(reward.numpy(), ref_reward), (t, reward.tolist(), ref_reward.tolist())
        assert np.array_equal(terminated.numpy(), ref_term), (t, terminated.tolist(), ref_term.tolist())
        check(t)
        level = max(level, int(batched.difficulty().max()))
        if ref_term.any():
            restart(np.flatnonzero(ref_term))
            check(t)
        episodes += int(ref_term.sum())
        total += float(ref_reward.sum())
    assert random.remaining() == 0, f"{random.remaining()} reference draws left unused"
    return {"steps": num_envs * vector_steps, "episodes": episodes, "reward": int(total),
            "max_difficulty": level}


def step_twins(a, b, steps: int, seed: int = 0) -> int:
    """Step batched games ``a`` and ``b`` (same number of envs) with the same random actions,
    each resetting its envs that ended; assert equal rewards, terminations and observations at
    every step. Returns how many episodes ended."""
    n = a.num_envs
    gen = torch.Generator().manual_seed(seed)
    ends = 0
    for _ in range(steps):
        actions = torch.randint(0, 6, (n,), generator=gen)
        ra, ta = a.step(actions)
        rb, tb = b.step(actions)
        assert torch.equal(ra, rb) and torch.equal(ta, tb)
        assert torch.equal(a.observation(), b.observation())
        ends += int(ta.sum())
        a.reset(ta)
        b.reset(tb)
    return ends


def assert_same_state(a, b) -> None:
    """Every state tensor of batched games ``a`` and ``b`` equal (their randomness aside)."""
    sa, sb = ({k: v for k, v in g.state_dict().items() if k != "random"} for g in (a, b))
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name
