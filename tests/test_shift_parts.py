"""envs/shifts.py piece by piece, without environments: spec parsing and its one-line errors,
composition of shifts in one visit, and each apply path (numpy, torch, scalars)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from envs.shifts import NO_SHIFT, ShiftedEnv, ShiftSpec, TaskShift, VisitShift, parse_shift, parse_shifted_tasks


def test_parse_fills_defaults_and_reads_numbers_and_parameter_names():
    assert parse_shift("permute-obs") == (ShiftSpec("permute-obs", {}),)
    assert parse_shift(" obs-offset : scale=2 + reward-flip ") == (
        ShiftSpec("obs-offset", {"scale": 2.0}), ShiftSpec("reward-flip", {}))
    assert parse_shift("obs-noise") == (ShiftSpec("obs-noise", {"std": 0.1}),)
    assert parse_shift("reward-scale:high=3,") == (ShiftSpec("reward-scale", {"low": 0.1, "high": 3.0}),)
    assert parse_shift("dynamics:params= mass/length ,low=1") == (
        ShiftSpec("dynamics", {"params": "mass/length", "low": 1.0, "high": 2.0}),)
    assert parse_shift("dynamics") == (ShiftSpec("dynamics", {"params": "all", "low": 0.5, "high": 2.0}),)
    assert parse_shift("obs-offset:scale=0+obs-noise:std=0")[1].params == {"std": 0.0}  # zero is allowed
    assert parse_shift("reward-scale:low=2,high=2")[0].params == {"low": 2.0, "high": 2.0}


@pytest.mark.parametrize("text,message", [
    ("flip", "unknown shift 'flip' in 'flip'; valid: permute-obs, obs-offset, obs-noise, reward-scale, "
             "reward-flip, permute-actions, dynamics"),
    ("permute-obs:k=1", "shift permute-obs: bad parameter 'k=1'; valid keys: none"),
    ("obs-offset:scale", "shift obs-offset: bad parameter 'scale'; valid keys: scale"),
    ("reward-scale:lo=1", "shift reward-scale: bad parameter 'lo=1'; valid keys: low, high"),
    ("obs-noise:std=big", "shift obs-noise: std='big' is not a number"),
    ("obs-offset:scale=1=2", "shift obs-offset: scale='1=2' is not a number"),  # split at the first '='
    ("obs-offset:scale=-1", "shift obs-offset: scale=-1.0 must be >= 0"),
    ("obs-noise:std=-0.5", "shift obs-noise: std=-0.5 must be >= 0"),
    ("reward-scale:low=0", "shift reward-scale: need 0 < low <= high, got low=0.0, high=10.0"),
    ("dynamics:low=3", "shift dynamics: need 0 < low <= high, got low=3.0, high=2.0"),
])
def test_bad_specs_are_refused_in_one_line(text, message):
    with pytest.raises(ValueError) as err:
        parse_shift(text)
    assert str(err.value) == message


def test_task_lists_must_be_non_empty_lists():
    for bad in ([], (), "gym:CartPole-v1"):
        with pytest.raises(ValueError, match="^tasks must be a non-empty list of task ids"):
            parse_shifted_tasks(bad)
    with pytest.raises(ValueError, match="^task id must be a string like 'atari:Pong', got 3$"):
        parse_shifted_tasks([3])
    with pytest.raises(ValueError) as err:
        parse_shifted_tasks(["gym:CartPole-v1@reward-flip", "gym:Acrobot-v1", "gym:CartPole-v1@reward-flip"])
    assert str(err.value) == ("task 'gym:CartPole-v1@reward-flip' appears twice in ['gym:CartPole-v1@reward-flip', "
                              "'gym:Acrobot-v1', 'gym:CartPole-v1@reward-flip']; list each task once and use cycles "
                              "to revisit it")
    specs, shifts = parse_shifted_tasks(["gym:CartPole-v1", " gym:CartPole-v1 @ reward-flip "])
    assert [s.id for s in specs] == ["gym:CartPole-v1", "gym:CartPole-v1@reward-flip"]
    assert [s.name for s in specs] == ["CartPole-v1", "CartPole-v1@reward-flip"]
    assert shifts == [(), (ShiftSpec("reward-flip", {}),)]


def shift(text: str, obs_shape=(4,), discrete=True, num_actions=3, action_size=5) -> TaskShift:
    return TaskShift(parse_shift(text), "t", obs_shape, discrete, num_actions, action_size, env=None)


def test_a_visit_composes_its_shifts_in_order():
    two = shift("permute-obs+permute-obs").draw(seed=3, visit=2, cycle=1)
    p0 = shift("permute-obs").draw(seed=3, visit=2, cycle=1).obs_perm  # shift j=0 of the pair
    p1 = np.random.default_rng(np.random.SeedSequence([3, 2, 7919, 1])).permutation(4)
    assert np.array_equal(two.obs_perm, p0[p1])
    offsets = shift("obs-offset:scale=2+obs-offset:scale=3").draw(seed=0, visit=0, cycle=0).obs_offset
    o = [np.random.default_rng(np.random.SeedSequence([0, 0, 7919, j])).normal(0.0, s, (4,)).astype(np.float32)
         for j, s in enumerate((2.0, 3.0))]
    np.testing.assert_allclose(offsets, o[0] + o[1], rtol=1e-6)
    assert offsets.dtype == np.float32
    mul = shift("reward-scale:low=2,high=8+reward-flip").draw(seed=1, visit=5, cycle=3).reward_mul
    scale = float(np.exp(np.random.default_rng(np.random.SeedSequence([1, 5, 7919, 0])).uniform(np.log(2), np.log(8))))
    assert mul == pytest.approx(-scale) and 2 <= scale <= 8
    # the other order: the flip first, then the scale multiplies it
    assert shift("reward-flip+reward-scale:low=2,high=8").draw(seed=1, visit=5, cycle=3).reward_mul < 0
    assert shift("reward-flip+reward-flip").draw(0, 0, cycle=1).reward_mul == 1.0  # flipped twice
    assert shift("reward-flip").draw(0, 0, cycle=2).reward_mul == 1.0
    acts = shift("permute-actions+permute-actions").draw(seed=3, visit=1, cycle=0).action_perm
    a = [np.random.default_rng(np.random.SeedSequence([3, 1, 7919, j])).permutation(3) for j in range(2)]
    assert not np.array_equal(a[0][a[1]], a[1])  # (the first permutation is not the identity)
    assert acts.tolist() == [*a[0][a[1]].tolist(), 3, 4]  # the masked actions 3, 4 stay put


def test_noise_draw_restarts_its_stream_at_the_visit_step():
    ts = shift("obs-noise:std=0.5")
    a, b, c = ts.draw(1, 2, 0, visit_step=0), ts.draw(1, 2, 0, visit_step=0), ts.draw(1, 2, 0, visit_step=7)
    assert a.noise_std == b.noise_std == c.noise_std and 0 < a.noise_std <= 0.5
    assert a.noise_seed == b.noise_seed != c.noise_seed
    assert a.noise_seed == int(np.random.SeedSequence([1, 2, 7919, 0, 0]).generate_state(1)[0])
    x = np.zeros((3, 4), dtype=np.float32)
    assert np.array_equal(a.obs(x), b.obs(x)) and not np.array_equal(a.obs(x), c.obs(x))
    expected = a.noise_std * np.random.default_rng(a.noise_seed).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_allclose(ts.draw(1, 2, 0).obs(x), expected, rtol=1e-6)
    assert ts.draw(1, 2, 0).obs(x).dtype == np.float32
    d = ts.draw(1, 2, 0)
    t1, t2 = d.obs(torch.zeros(3, 4)), d.obs(torch.zeros(3, 4))  # one stream over the steps, not restarted
    gen = torch.Generator().manual_seed(a.noise_seed)
    torch.testing.assert_close(t1, a.noise_std * torch.randn((3, 4), generator=gen))
    torch.testing.assert_close(t2, a.noise_std * torch.randn((3, 4), generator=gen))


def test_visit_shift_applies_to_scalars_arrays_and_tensors():
    assert not NO_SHIFT.changes_obs
    fresh = VisitShift()
    assert (fresh.obs_perm, fresh.obs_offset, fresh.noise_std, fresh.noise_seed, fresh.reward_mul, fresh.action_perm,
            fresh.dynamics) == (None, None, 0.0, 0, 1.0, None, {})
    x = np.arange(4.0)
    assert NO_SHIFT.obs(x) is x and NO_SHIFT.reward(x) is x and NO_SHIFT.reward(2) == 2 and NO_SHIFT.action(1) == 1
    assert isinstance(NO_SHIFT.reward(2), int)
    v = VisitShift()
    v.reward_mul = -0.5
    assert v.reward(3) == -1.5 and isinstance(v.reward(3), float) and v.reward(4.0) == -2.0
    r = v.reward(np.array([2.0, 4.0], dtype=np.float32))
    assert r.dtype == np.float32 and r.tolist() == [-1.0, -2.0]
    assert v.reward(torch.tensor([2.0])).tolist() == [-1.0]
    v.action_perm = np.array([2, 0, 1])
    assert v.action(0) == 2 and isinstance(v.action(np.int64(1)), int) and v.action(np.int64(1)) == 0
    assert v.action([0, 2]).tolist() == [2, 1] and v.action(torch.tensor([1, 2])).tolist() == [0, 1]
    v.obs_perm = np.array([3, 2, 1, 0])
    assert v.changes_obs and v.obs(np.array([1, 2, 3, 4])).tolist() == [4, 3, 2, 1]
    assert v.obs(np.array([1, 2, 3, 4])).dtype == np.int64  # a permutation alone keeps the dtype
    assert v.obs(torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])).tolist() == [[4, 3, 2, 1], [8, 7, 6, 5]]
    assert v.obs([5, 6, 7, 8]).tolist() == [8, 7, 6, 5]  # lists are read as arrays
    w = VisitShift()
    w.obs_offset = np.array([0.5, -0.5], dtype=np.float32)
    assert w.changes_obs and w.obs(np.array([1, 1], dtype=np.int64)).tolist() == [1.5, 0.5]
    assert w.obs(np.array([1, 1], dtype=np.int64)).dtype == np.float32
    assert w.obs(torch.tensor([1.0, 1.0], dtype=torch.float64)).dtype == torch.float32
    u8 = w.obs(np.array([0, 255, 3], dtype=np.uint8)[:2])
    assert u8.dtype == np.uint8 and u8.tolist() == [0, 254]  # rounded and clipped to 0..255
    w = VisitShift()  # (a visit's tensors are cached: a new shift for new values)
    w.obs_offset = np.array([0.6, 0.6], dtype=np.float32)
    assert w.obs(torch.tensor([255, 7], dtype=torch.uint8)).tolist() == [255, 8]
    n = VisitShift()
    n.noise_std = 0.25  # the noise stream of a hand-made shift starts from seed 0
    assert n.changes_obs
    torch.testing.assert_close(n.obs(torch.zeros(2)), 0.25 * torch.randn(2, generator=torch.Generator().manual_seed(0)))


def test_shifted_env_redraws_on_reset_and_passes_the_rest_through():
    class Env:
        gravity = 9.8

        def __init__(self):
            self.actions, self.closed = [], False

        def reset(self, **kw):
            return np.array([1.0, 2.0]), {"seed": kw.get("seed")}

        def step(self, a):
            self.actions.append(a)
            return np.array([3.0, 4.0]), 2.0, False, True, {}

        def close(self):
            self.closed = True

    visits = []

    def current():
        v = VisitShift()
        v.obs_perm, v.reward_mul, v.action_perm = np.array([1, 0]), 3.0, np.array([1, 0])
        visits.append(v)
        return v

    inner = Env()
    env = ShiftedEnv(inner, current)
    assert env.shift is NO_SHIFT and env.gravity == 9.8
    obs, info = env.reset(seed=4)
    assert obs.tolist() == [2.0, 1.0] and info == {"seed": 4} and env.shift is visits[-1]
    assert [x if not isinstance(x, np.ndarray) else x.tolist() for x in env.step(0)] == [[4.0, 3.0], 6.0, False, True, {}]
    assert inner.actions == [1]
    env.reset()
    assert len(visits) == 2 and env.shift is visits[1]  # a function is called again at every reset
    fixed = VisitShift()
    assert ShiftedEnv(Env(), fixed).reset()[0].tolist() == [1.0, 2.0]
    env.close()
    assert inner.closed


@pytest.mark.parametrize("obs_shape", [(3, 4), (2, 3, 4)])
def test_pixels_of_one_unbatched_image_observation_are_permuted(obs_shape):
    d = shift("permute-obs", obs_shape=obs_shape).draw(seed=2, visit=0, cycle=0)
    assert sorted(d.obs_perm.tolist()) == list(range(12))  # the pixels of one frame
    x = np.arange(int(np.prod(obs_shape))).reshape(obs_shape)
    expected = x.reshape(*obs_shape[:-2], 12)[..., d.obs_perm].reshape(obs_shape)
    assert np.array_equal(d.obs(x), expected)
    assert np.array_equal(d.obs(torch.as_tensor(x)).numpy(), expected)


def test_dynamics_are_checked_against_the_env_and_set_before_each_reset():
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    try:
        with pytest.raises(ValueError) as err:
            TaskShift(parse_shift("dynamics:params=friction"), "gym:CartPole-v1", (4,), True, 2, 2, env)
        assert str(err.value) == ("shift dynamics: task 'gym:CartPole-v1' has no parameter 'friction'; "
                                  "valid: gravity, length, mass")
        ts = TaskShift(parse_shift("dynamics:params=gravity/length,low=2,high=2"), "gym:CartPole-v1", (4,), True, 2, 2,
                       env)
        d = ts.draw(seed=0, visit=0, cycle=0)
        assert d.dynamics == pytest.approx({"gravity": 2.0, "length": 2.0})
        wrapped = ShiftedEnv(env, d)
        wrapped.reset(seed=0)
        assert env.unwrapped.gravity == pytest.approx(2 * 9.8) and env.unwrapped.length == pytest.approx(1.0)
    finally:
        env.close()
    with pytest.raises(ValueError) as err:
        TaskShift(parse_shift("dynamics"), "minatar:breakout", (10, 10, 4), True, 3, 6, object())
    assert str(err.value) == ("shift dynamics: task 'minatar:breakout' has no known physical parameters "
                              "(supported: CartPole, Pendulum, Acrobot, MountainCar, MuJoCo)")
