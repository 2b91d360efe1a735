"""Shifts: fixed within a visit, fresh across visits, reproducible from the seed; dynamics in
the simulator's parameters; permute-actions keeps the action mask; evaluation sees the shift."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from envs import TaskSchedule
from envs.shifts import TaskShift, parse_shift
from runner.config import EnvConfig

CARTPOLE = "gym:CartPole-v1"


def _trace(task_ids, seed=0, cycles=3, steps=12, actions=None):
    """Per step: (visit, obs acted on, reward, next obs) of a 1-env schedule; ``actions(i)``
    gives the action of step i (default: alternate 0, 1)."""
    sched = TaskSchedule(task_ids, steps_per_visit=steps, cycles=cycles, num_envs=1, seed=seed)
    out = []
    try:
        obs = sched.reset()
        while not sched.finished:
            visit = sched.visit
            a = torch.tensor([actions(len(out)) if actions else len(out) % 2])
            res = sched.step(a)
            out.append((visit, obs[0].clone(), float(res.rewards[0]), res.next_obs[0].clone(), bool(res.valid[0])))
            obs = res.obs
        draws = [sched.shift_for(0, v) for v in range(sched.num_visits)]
    finally:
        sched.close()
    return out, draws


def _by_visit(trace, fn):
    """``fn(plain_step, shifted_step)`` collected per visit."""
    per = {}
    for plain, shifted in trace:
        per.setdefault(plain[0], []).append(fn(plain, shifted))
    return per


def _pair(shift, seed=0, **kw):
    plain, _ = _trace([CARTPOLE], seed, **kw)
    shifted, draws = _trace([f"{CARTPOLE}@{shift}"], seed, **kw)
    return list(zip(plain, shifted)), draws


def test_permute_obs_is_fixed_per_visit_fresh_across_visits_and_seeded() -> None:
    pairs, draws = _pair("permute-obs")
    perms = [d.obs_perm for d in draws]
    for plain, shifted in pairs:  # every step of visit v: x' = x[perm_v]
        perm = torch.as_tensor(perms[plain[0]])
        assert torch.equal(shifted[1], plain[1][perm]) and torch.equal(shifted[3], plain[3][perm])
    assert sorted(perms[0].tolist()) == list(range(4))  # CartPole: 4 features
    assert not np.array_equal(perms[0], perms[1]) and not np.array_equal(perms[1], perms[2])
    _, again = _trace([f"{CARTPOLE}@permute-obs"], 0)
    _, other = _trace([f"{CARTPOLE}@permute-obs"], 5)
    assert all(np.array_equal(a.obs_perm, b.obs_perm) for a, b in zip(draws, again))
    assert any(not np.array_equal(a.obs_perm, b.obs_perm) for a, b in zip(draws, other))


def test_obs_offset_is_constant_within_a_visit_and_fresh_across() -> None:
    pairs, _ = _pair("obs-offset:scale=2")
    diffs = _by_visit(pairs, lambda p, s: (s[3] - p[3]).numpy())
    means = []
    for visit, ds in diffs.items():
        assert np.allclose(ds, ds[0], atol=1e-5)  # one offset for the whole visit
        means.append(ds[0])
    assert np.abs(means[0] - means[1]).min() > 1e-3 and np.abs(means[1] - means[2]).min() > 1e-3
    again, _ = _pair("obs-offset:scale=2")
    assert all(torch.equal(a[1][3], b[1][3]) for a, b in zip(pairs, again))


def test_obs_noise_has_the_visits_std_and_is_reproducible() -> None:
    pairs, draws = _pair("obs-noise:std=0.5", steps=200, cycles=2)
    residual = _by_visit(pairs, lambda p, s: (s[3] - p[3]).numpy())
    stds = [d.noise_std for d in draws]
    assert stds[0] != stds[1] and all(0 < s <= 0.5 for s in stds)
    for visit, r in residual.items():
        assert np.std(np.concatenate(r)) == pytest.approx(stds[visit], rel=0.15)
    again, _ = _pair("obs-noise:std=0.5", steps=200, cycles=2)
    assert all(torch.equal(a[1][3], b[1][3]) for a, b in zip(pairs, again))


def test_reward_scale_and_flip() -> None:
    pairs, draws = _pair("reward-scale:low=0.5,high=4")
    ratios = _by_visit(pairs, lambda p, s: s[2] / p[2])  # CartPole pays 1 per step
    scales = [r[0] for r in ratios.values()]
    for visit, r in ratios.items():
        assert np.allclose(r, draws[visit].reward_mul) and 0.5 <= r[0] <= 4
    assert len(set(np.round(scales, 6))) == 3
    pairs, _ = _pair("reward-flip")
    signs = _by_visit(pairs, lambda p, s: s[2] / p[2])
    assert {v: set(r) for v, r in signs.items()} == {0: {1.0}, 1: {-1.0}, 2: {1.0}}


def test_permute_actions_keeps_the_mask_and_maps_actions() -> None:
    ids = ["gym:CartPole-v1@permute-actions", "gym:Acrobot-v1@permute-actions"]
    plain = TaskSchedule(["gym:CartPole-v1", "gym:Acrobot-v1"], 8, 2, num_envs=1)
    shifted = TaskSchedule(ids, 8, 2, num_envs=1)
    try:
        assert torch.equal(plain.action_masks, shifted.action_masks)
        assert shifted.action_masks.tolist() == [[True, True, False], [True, True, True]]
        perms = [shifted.shift_for(v % 2, v).action_perm for v in range(4)]
        assert perms[0][2] == 2 and sorted(perms[0][:2]) == [0, 1]  # CartPole: only its 2 actions move
        assert sorted(perms[1]) == [0, 1, 2]
        assert not np.array_equal(perms[1], perms[3])  # Acrobot's two visits
        # The shifted schedule given a behaves as the plain one given perm_v[a].
        po, so = plain.reset(), shifted.reset()
        rng = np.random.default_rng(0)
        while not plain.finished:
            size = 2 if plain.task_index == 0 else 3
            a = int(rng.integers(size))
            perm = shifted.shift_for(shifted.task_index, shifted.visit).action_perm
            pr, sr = plain.step(torch.tensor([int(perm[a])])), shifted.step(torch.tensor([a]))
            assert torch.equal(pr.next_obs, sr.next_obs)
    finally:
        plain.close()
        shifted.close()


def test_cartpole_dynamics_are_in_the_simulator() -> None:
    sched = TaskSchedule([f"{CARTPOLE}@dynamics:low=0.5,high=2"], 4, 3, num_envs=2, seed=1)
    try:
        seen = []
        sched.reset()
        while not sched.finished:
            f = sched.shift_for(0, sched.visit).dynamics
            for env in sched._envs[0].envs:  # both copies, defaults 9.8, 0.5, 0.1 (masscart 1.0)
                u = env.unwrapped
                assert u.gravity == pytest.approx(9.8 * f["gravity"])
                assert u.length == pytest.approx(0.5 * f["length"])
                assert u.masspole == pytest.approx(0.1 * f["mass"])
                assert u.total_mass == pytest.approx(1.0 + u.masspole)
                assert u.polemass_length == pytest.approx(u.masspole * u.length)
            seen.append((u.gravity, u.length, u.masspole))
            sched.step(torch.zeros(2, dtype=torch.long))
        visits = sorted(set(seen), key=seen.index)
        assert len(visits) == 3  # fresh per visit, fixed within (4 env steps = 2 vector steps each)
        assert all(0.5 <= g / 9.8 <= 2 for g, _, _ in visits)
    finally:
        sched.close()


def test_mujoco_dynamics_are_in_the_model() -> None:
    pytest.importorskip("mujoco")
    sched = TaskSchedule(["gym:Hopper-v5@dynamics:low=0.02,high=2"], 2, 2, num_envs=1, seed=0)
    try:
        model = sched._envs[0].envs[0].unwrapped.model
        friction, mass, gravity = model.geom_friction[:, 0].copy(), model.body_mass.copy(), model.opt.gravity.copy()
        sched.reset()
        for visit in range(2):
            while sched.visit < visit:
                sched.step(torch.zeros(1, sched.action_dim))
            f = sched.shift_for(0, visit).dynamics
            assert set(f) == {"friction", "mass", "gravity"}
            np.testing.assert_allclose(model.geom_friction[:, 0], friction * f["friction"], rtol=1e-6)
            np.testing.assert_allclose(model.body_mass, mass * f["mass"], rtol=1e-6)
            np.testing.assert_allclose(model.opt.gravity, gravity * f["gravity"], rtol=1e-6)
    finally:
        sched.close()


def test_resume_redraws_the_same_shift() -> None:
    ids = [f"{CARTPOLE}@permute-obs+obs-offset"]
    a = TaskSchedule(ids, 10, 2, num_envs=1, seed=4)
    b = TaskSchedule(ids, 10, 2, num_envs=1, seed=4)
    try:
        a.reset()
        for _ in range(13):  # into the second visit
            a.step(torch.zeros(1, dtype=torch.long))
        b.load_state_dict(a.state_dict())
        b.reset()
        assert np.array_equal(a._shift.obs_perm, b._shift.obs_perm)
        assert np.array_equal(a._shift.obs_offset, b._shift.obs_offset)
    finally:
        a.close()
        b.close()


def test_eval_env_sees_the_visits_shift() -> None:
    sched = TaskSchedule([f"{CARTPOLE}@permute-obs"], 4, 2, num_envs=1, seed=2)
    try:
        env, raw = sched.make_eval_env(0), sched._task_envs.make_single_env(0)
        sched.reset()
        for _ in range(4):  # the last step ends visit 0: evaluation now is "end of visit 0"
            res = sched.step(torch.zeros(1, dtype=torch.long))
        assert res.switch is not None
        perm0, perm1 = sched.shift_for(0, 0).obs_perm, sched.shift_for(0, 1).obs_perm
        assert np.array_equal(sched.shift_for(0).obs_perm, perm0) and not np.array_equal(perm0, perm1)
        obs, _ = env.reset(seed=9)
        ref, _ = raw.reset(seed=9)
        np.testing.assert_array_equal(obs, ref[perm0])
        sched.step(torch.zeros(1, dtype=torch.long))  # now inside visit 1
        obs, _ = env.reset(seed=9)
        np.testing.assert_array_equal(obs, ref[perm1])
        raw.close()
        env.close()
    finally:
        sched.close()


def test_image_shifts_permute_pixels_of_every_frame() -> None:
    ts = TaskShift(parse_shift("permute-obs+obs-offset:scale=30"), "atari:Pong", (4, 84, 84), True, 18, 18, None)
    d = ts.draw(seed=0, visit=1, cycle=0)
    x = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    y = d.obs(x)
    assert y.dtype == torch.uint8 and y.shape == x.shape
    perm = torch.as_tensor(d.obs_perm)
    expected = (x.flatten(-2)[..., perm].float() + torch.as_tensor(d.obs_offset).flatten()).round().clamp(0, 255)
    assert torch.equal(y.flatten(-2), expected.to(torch.uint8))
    np.testing.assert_array_equal(d.obs(x.numpy()), y.numpy())  # numpy path agrees (eval envs)


def test_same_task_twice_with_different_shifts_and_cli_errors() -> None:
    sched = TaskSchedule([CARTPOLE, f"{CARTPOLE}@permute-obs"], 4, 1)
    try:
        assert [t.name for t in sched.tasks] == ["CartPole-v1", "CartPole-v1@permute-obs"]
    finally:
        sched.close()
    with pytest.raises(ValueError, match="appears twice"):
        TaskSchedule([f"{CARTPOLE}@reward-flip", f"{CARTPOLE}@reward-flip"], 4, 1)
    with pytest.raises(ValueError, match="unknown shift 'permute'.*valid: permute-obs"):
        TaskSchedule([f"{CARTPOLE}@permute"], 4, 1)
    with pytest.raises(ValueError, match="needs discrete actions"):
        TaskSchedule(["gym:Pendulum-v1@permute-actions"], 4, 1)
    with pytest.raises(ValueError, match="no parameter 'friction'"):
        TaskSchedule([f"{CARTPOLE}@dynamics:params=friction"], 4, 1)
    with pytest.raises(ValueError, match="bad parameter 'sigma=1'"):
        parse_shift("obs-offset:sigma=1")
    cfg = EnvConfig(tasks=(CARTPOLE, "gym:Acrobot-v1@reward-flip"), shift="permute-obs")
    assert cfg.task_ids() == [f"{CARTPOLE}@permute-obs", "gym:Acrobot-v1@reward-flip"]
