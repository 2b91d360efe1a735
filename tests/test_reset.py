"""Reset (Nikishin et al., 2022): which layers, fresh init, Adam state, targets, schedule."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from plasticity.reset import Reset


def make():
    return nn.Sequential(nn.Linear(3, 5), nn.LayerNorm(5), nn.ReLU(), nn.Linear(5, 4), nn.LayerNorm(4),
                         nn.ReLU(), nn.Linear(4, 2))


def train(m, opt, steps=2):
    for _ in range(steps):
        opt.zero_grad()
        m(torch.randn(8, 3)).pow(2).sum().backward()
        opt.step()


def snapshot(m):
    return {n: t.detach().clone() for n, t in m.state_dict().items()}


def test_last_k_resets_exactly_those_layers_to_a_fresh_init():
    m = make()
    opt = torch.optim.Adam(m.parameters(), lr=0.1)
    train(m, opt)
    before = snapshot(m)
    adam_before = {p: {k: v.clone() for k, v in opt.state[p].items()} for p in m.parameters()}
    r = Reset(m, opt, layers=2, every=1)
    # last 2 weight layers = m[3], m[6]; the LayerNorm m[4] after m[3] belongs to its block
    assert [n for n, _ in r.chosen] == ["3", "4", "6"]
    expected = copy.deepcopy(m)
    torch.manual_seed(11)
    for i in (3, 4, 6):
        expected[i].reset_parameters()
    torch.manual_seed(11)
    r.after_step()
    after = snapshot(m)
    for name in before:
        if name.split(".")[0] in ("3", "4", "6"):
            assert torch.equal(after[name], expected.state_dict()[name]), name
            assert not torch.equal(after[name], before[name]), name
        else:
            assert torch.equal(after[name], before[name]), name  # bit-identical
    assert m[4].weight.eq(1).all() and m[4].bias.eq(0).all()
    reset_params = {id(p) for i in (3, 4, 6) for p in m[i].parameters()}
    for p in m.parameters():
        if id(p) in reset_params:
            assert p not in opt.state
        else:
            assert all(torch.equal(opt.state[p][k], v) for k, v in adam_before[p].items())
    train(m, opt, 1)  # Adam restarts the reset params at step 1
    assert float(opt.state[m[6].weight]["step"]) == 1 and float(opt.state[m[0].weight]["step"]) == 3


def test_all_resets_every_parameter_owner():
    m = make()
    opt = torch.optim.Adam(m.parameters(), lr=0.1)
    train(m, opt)
    r = Reset(m, opt, layers="all", at_task_switch=True)
    assert [n for n, _ in r.chosen] == ["0", "1", "3", "4", "6"]
    expected = copy.deepcopy(m)
    torch.manual_seed(3)
    for i in (0, 1, 3, 4, 6):
        expected[i].reset_parameters()
    torch.manual_seed(3)
    r.on_task_switch(1)
    for (n, a), b in zip(m.state_dict().items(), expected.state_dict().values()):
        assert torch.equal(a, b), n
    assert len(opt.state) == 0


def test_targets_equal_online_after_reset_and_untouched_elsewhere():
    m = make()
    target = copy.deepcopy(m)
    opt = torch.optim.Adam(m.parameters(), lr=0.1)
    train(m, opt)
    t_before = snapshot(target)
    Reset(m, opt, targets=[target], layers=1, at_task_switch=True).on_task_switch(0)
    for name, t in target.state_dict().items():
        if name.startswith("6."):
            assert torch.equal(t, m.state_dict()[name])
        else:
            assert torch.equal(t, t_before[name])
    assert not torch.equal(target[0].weight, m[0].weight)  # not re-synced: online trained on


def test_periodic_schedule_and_task_switch_flag():
    m = make()
    r = Reset(m, None, layers=1, every=3, at_task_switch=False)
    counts, changed = [], []
    for _ in range(7):
        w = m[6].weight.detach().clone()
        r.after_step()
        counts.append(r.metrics()["reset_count"])
        changed.append(not torch.equal(w, m[6].weight))
    assert counts == [0, 0, 1, 1, 1, 2, 2]
    assert changed == [False, False, True, False, False, True, False]
    w = m[6].weight.detach().clone()
    r.on_task_switch(1)  # at_task_switch=False: nothing
    assert torch.equal(w, m[6].weight) and r.count == 2
    r2 = Reset(make(), None, layers=1, at_task_switch=True)
    for _ in range(5):
        r2.after_step()
    assert r2.count == 0
    r2.on_task_switch(1)
    assert r2.count == 1


def test_state_dict_round_trip():
    r = Reset(make(), None, every=2)
    for _ in range(5):
        r.after_step()
    r2 = Reset(make(), None, every=2)
    r2.load_state_dict(r.state_dict())
    assert (r2.updates, r2.count) == (5, 2)
    r2.after_step()
    assert r2.count == 3


class WithLogStd(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)
        self.log_std = nn.Parameter(torch.zeros(2))

    def forward(self, x):
        return self.fc(x), self.log_std.expand(x.shape[0], 2)


@pytest.mark.parametrize("kwargs, msg", [
    (dict(layers=0, every=1), "reset: layers must be 'all' or an int in [1, 3], got 0"),
    (dict(layers=4, every=1), "got 4"),
    (dict(layers="last", every=1), "got 'last'"),
    (dict(layers=True, every=1), "got True"),
    (dict(every=0), "reset: every must be None or an int >= 1, got 0"),
    (dict(at_task_switch=False), "would never reset"),
])
def test_bad_values_raise_one_line(kwargs, msg):
    with pytest.raises(ValueError) as e:
        Reset(make(), None, **kwargs)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_parameter_without_reset_parameters_is_reported():
    with pytest.raises(ValueError, match="reset: module\\(s\\) <root> own parameters"):
        Reset(WithLogStd(), None, every=1)
    Reset(WithLogStd(), None, layers=1, every=1)  # the last layer alone is fine


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        return self.out(torch.relu(self.inner(x)))


def test_named_layers_reset_those_modules_and_everything_inside_them():
    m = Block()
    r = Reset(m, None, layers=["inner"], every=1)
    assert [n for n, _ in r.chosen] == ["inner.0", "inner.1"]  # owners of parameters inside "inner"
    assert [p.shape for p in r.parameters] == [(4, 3), (4,), (4,), (4,)]
    r2 = Reset(m, None, layers=("out", "inner.1"), every=1)
    assert [n for n, _ in r2.chosen] == ["inner.1", "out"]  # registration order
    for bad in (["nope"], [], [3]):
        with pytest.raises(ValueError) as e:
            Reset(m, None, layers=bad, every=1)
        assert str(e.value) == f"reset: layers names no module of Block: {bad!r}"


def test_layers_deeper_than_the_forward_pass_are_refused():
    class Forked(nn.Module):  # three Linear layers, but two of them side by side: 2 deep
        def __init__(self):
            super().__init__()
            self.fc, self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 1), nn.Linear(4, 1)

        def forward(self, x):
            z = torch.relu(self.fc(x))
            return self.a(z) + self.b(z)

    assert [n for n, _ in Reset(Forked(), None, layers=1, every=1).chosen] == ["a", "b"]
    assert [n for n, _ in Reset(Forked(), None, layers=2, every=1).chosen] == ["fc", "a", "b"]
    with pytest.raises(ValueError) as e:
        Reset(Forked(), None, layers=3, every=1)
    assert str(e.value) == "reset: layers=3 but Forked is 2 layers deep along its forward pass; valid: 1..2 or 'all'"


def test_a_target_of_another_shape_is_refused():
    m = make()
    wrong = nn.Sequential(nn.Linear(3, 5), nn.LayerNorm(5), nn.ReLU(), nn.Linear(5, 4), nn.LayerNorm(4),
                          nn.ReLU(), nn.Linear(4, 3))
    with pytest.raises(ValueError) as e:
        Reset(m, None, targets=[wrong], layers=1, every=1)
    assert str(e.value) == "reset: target has no module '6' shaped like the online one"
    with pytest.raises(ValueError) as e:
        Reset(m, None, targets=[nn.Sequential(nn.Linear(3, 2))], layers=1, every=1)
    assert str(e.value) == "reset: target has no module '6' shaped like the online one"
    r = Reset(m, None, layers=1, every=2)
    assert r.needs_task_boundaries is False and r.at_task_switch is True and r.metrics() == {"reset_count": 0.0}
    assert r.state_dict() == {"updates": 0, "count": 0}
    r.load_state_dict({})
    assert (r.updates, r.count) == (0, 0)


class Raw(nn.Module):
    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(2))


def test_refusal_messages_name_every_module_and_the_options():
    two = nn.Module()
    two.a, two.b = Raw(), Raw()
    with pytest.raises(ValueError) as e:
        Reset(two, None, every=1)
    assert str(e.value) == ("reset: module(s) a, b own parameters but have no reset_parameters(); "
                            "cannot re-initialise them")
    with pytest.raises(ValueError) as e:
        Reset(make(), None, at_task_switch=False)
    assert str(e.value) == ("reset: every=None and at_task_switch=False would never reset; "
                            "set every >= 1 or at_task_switch=True")
    with pytest.raises(ValueError) as e:
        Reset(nn.Sequential(nn.Linear(2, 2)), None, layers=2, every=1)
    assert str(e.value) == "reset: layers must be 'all' or an int in [1, 1], got 2"
    with pytest.raises(ValueError) as e:
        Reset(nn.Sequential(nn.LayerNorm(3)), None, layers=1, every=1)
    assert str(e.value) == ("reset: layers=1 but Sequential is 0 layers deep along its forward pass; "
                            "valid: 1..0 or 'all'")
    for every in (True, 2.0):
        with pytest.raises(ValueError) as e:
            Reset(make(), None, every=every)
        assert str(e.value) == f"reset: every must be None or an int >= 1, got {every!r}"

    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(-x if x.sum() > 0 else x)

    with pytest.raises(ValueError) as e:
        Reset(DataDependent(), None, layers=1, every=1)
    msg = str(e.value)
    assert msg.startswith("reset: cannot read the structure of DataDependent")
    assert msg.endswith("(layers=['name', ...] names the modules to reset, or layers='all')")
    m = make()
    r = Reset(m, None, layers=2, every=5)
    assert r.module is m and r.layers == 2 and r.every == 5
