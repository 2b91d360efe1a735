"""Shrink & Perturb (Ash & Adams, 2020): θ ← α·θ + σ·ε, ε from the layer's initialiser."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from plasticity.shrink_perturb import ShrinkPerturb


def make():
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 4), nn.LayerNorm(4),
                         nn.ReLU(), nn.Linear(4, 2))


def train(m, opt):
    opt.zero_grad()
    m(torch.randn(5, 1, 4, 4)).pow(2).sum().backward()
    opt.step()


def draw_eps(m, seed):
    """ε by hand: reset a copy of each weight layer, in registration order, from `seed`."""
    c = copy.deepcopy(m)
    torch.manual_seed(seed)
    eps = {}
    for i in (0, 3, 6):
        c[i].reset_parameters()
        eps[i] = (c[i].weight.detach().clone(), c[i].bias.detach().clone())
    return eps


def test_new_weights_equal_alpha_theta_plus_sigma_eps():
    m = make()
    opt = torch.optim.Adam(m.parameters(), lr=0.1)
    train(m, opt)
    theta = {i: (m[i].weight.detach().clone(), m[i].bias.detach().clone()) for i in (0, 3, 6)}
    ln = [p.detach().clone() for p in m[4].parameters()]
    eps = draw_eps(m, 5)
    sp = ShrinkPerturb(m, opt, alpha=0.3, sigma=0.02)
    torch.manual_seed(5)
    sp.on_task_switch(1)
    for i in (0, 3, 6):
        for got, th, e in zip((m[i].weight, m[i].bias), theta[i], eps[i]):
            assert torch.allclose(got, 0.3 * th + 0.02 * e, rtol=0, atol=1e-7)
            assert not torch.allclose(got, 0.3 * th, rtol=0, atol=1e-5)  # the noise is really there
    assert all(torch.equal(p, q) for p, q in zip(m[4].parameters(), ln))  # norm params untouched
    # Adam state of the perturbed params deleted, the LayerNorm's kept
    assert m[3].weight not in opt.state and m[4].weight in opt.state


def test_eps_is_a_fresh_init_sample():
    m = make()
    eps = draw_eps(m, 9)
    torch.manual_seed(9)
    ShrinkPerturb(m, alpha=0.0, sigma=1.0, at_task_switch=True).perturb()
    for i in (0, 3, 6):
        assert torch.equal(m[i].weight, eps[i][0]) and torch.equal(m[i].bias, eps[i][1])
    bound = 1 / 8 ** 0.5  # default init of Linear(8, 4): U(-1/sqrt(8), 1/sqrt(8))
    assert m[3].weight.abs().max() <= bound


def test_alpha_one_sigma_zero_is_identity_and_keep_optimizer_option():
    m = make()
    opt = torch.optim.Adam(m.parameters(), lr=0.1)
    train(m, opt)
    before = copy.deepcopy(m.state_dict())
    ShrinkPerturb(m, opt, alpha=1.0, sigma=0.0, reset_optimizer=False).on_task_switch(0)
    assert all(torch.equal(a, before[n]) for n, a in m.state_dict().items())
    assert m[3].weight in opt.state


def test_schedule_every_n_and_task_switch():
    m = make()
    sp = ShrinkPerturb(m, every=2, at_task_switch=False)
    changed = []
    for _ in range(5):
        w = m[6].weight.detach().clone()
        sp.after_step()
        changed.append(not torch.equal(w, m[6].weight))
    assert changed == [False, True, False, True, False]
    assert sp.metrics() == {"shrink_perturb_count": 2.0}
    w = m[6].weight.detach().clone()
    sp.on_task_switch(1)
    assert torch.equal(w, m[6].weight)
    sp2 = ShrinkPerturb(make())  # defaults: task switches only
    for _ in range(3):
        sp2.after_step()
    assert sp2.count == 0
    sp2.on_task_switch(1)
    assert sp2.count == 1


def test_targets_resynced():
    m = make()
    target = copy.deepcopy(m)
    ShrinkPerturb(m, targets=[target]).on_task_switch(1)
    for (n, a), b in zip(m.state_dict().items(), target.state_dict().values()):
        assert torch.equal(a, b), n


@pytest.mark.parametrize("kwargs, msg", [
    (dict(alpha=1.5), "shrink_perturb: alpha must be in [0, 1], got 1.5"),
    (dict(sigma=-0.1), "shrink_perturb: sigma must be >= 0, got -0.1"),
    (dict(every=0), "shrink_perturb: every must be None or an int >= 1, got 0"),
    (dict(at_task_switch=False), "would never act"),
])
def test_bad_values_raise(kwargs, msg):
    with pytest.raises(ValueError) as e:
        ShrinkPerturb(make(), **kwargs)
    assert msg in str(e.value)


def test_needs_task_boundaries_only_when_switches_are_the_only_trigger():
    from plasticity import PlasticityInjection, Reset

    m = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert ShrinkPerturb(m, None).needs_task_boundaries is True
    assert ShrinkPerturb(m, None, every=10).needs_task_boundaries is False
    assert Reset(m, None).needs_task_boundaries is True
    assert Reset(m, None, every=10).needs_task_boundaries is False
    opt = torch.optim.Adam(m.parameters())
    assert PlasticityInjection(m, opt, head="2").needs_task_boundaries is True
    assert PlasticityInjection(m, opt, head="2", at_step=5).needs_task_boundaries is False


def test_defaults_state_and_refused_targets():
    m = make()
    sp = ShrinkPerturb(m)
    assert (sp.alpha, sp.sigma, sp.every, sp.at_task_switch, sp.reset_optimizer) == (0.4, 0.1, None, True, True)
    assert [n for n, _ in sp.layers] == ["0", "3", "6"]
    sp.after_step()
    sp.on_task_switch(1)
    assert sp.state_dict() == {"updates": 1, "count": 1}
    sp2 = ShrinkPerturb(make())
    sp2.load_state_dict({"updates": 7.0, "count": 2})
    assert (sp2.updates, sp2.count) == (7, 2) and type(sp2.updates) is int
    sp2.load_state_dict({})
    assert (sp2.updates, sp2.count) == (0, 0)
    wrong = make()
    wrong[6] = nn.Linear(4, 3)
    with pytest.raises(ValueError) as e:
        ShrinkPerturb(m, targets=[wrong])
    assert str(e.value) == "shrink_perturb: target has no layer '6' shaped like the online one"
    with pytest.raises(ValueError) as e:
        ShrinkPerturb(m, targets=[nn.Sequential(nn.Conv2d(1, 2, 3))])
    assert str(e.value) == "shrink_perturb: target has no layer '3' shaped like the online one"
    with pytest.raises(ValueError) as e:
        ShrinkPerturb(nn.Sequential(nn.ReLU(), nn.LayerNorm(3)))
    assert str(e.value) == "shrink_perturb: the module has no Linear/Conv layer to perturb"
    for kwargs in ({"every": True}, {"every": 2.0}, {"alpha": -0.1}):
        with pytest.raises(ValueError):
            ShrinkPerturb(m, **kwargs)
    assert ShrinkPerturb(m, alpha=0.0, sigma=0.0).alpha == 0.0  # both ends of the ranges accepted
    assert ShrinkPerturb(m, alpha=1, every=1).alpha == 1.0


def test_never_acting_configuration_is_refused_with_the_fix():
    with pytest.raises(ValueError) as e:
        ShrinkPerturb(make(), at_task_switch=False)
    assert str(e.value) == ("shrink_perturb: every=None and at_task_switch=False would never act; "
                            "set every >= 1 or at_task_switch=True")
    m = make()
    assert ShrinkPerturb(m).module is m
