"""plasticity.layers: explicit pairs, the hook path of `measure_activity`, and the whole text
of the refusals (bad pairs, a network whose forward does not trace, groups whose activation is
never seen)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from plasticity import layers as L


def test_a_forward_that_does_not_trace_is_refused_with_the_pairs_hint():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(2, 3), nn.Linear(3, 1)

        def forward(self, x):
            raise RuntimeError("data-dependent branch\ndetails")

    with pytest.raises(ValueError) as err:
        L.neuron_groups(Branchy(), who="cbp")
    assert str(err.value) == ("cbp: cannot read the structure of Branchy from its forward pass with torch.fx "
                              "(RuntimeError: data-dependent branch); pass the structure explicitly "
                              "(pairs=[(layer, next_layers, activation, norm), ...])")


def test_every_group_whose_activation_is_never_seen_is_named():
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
    idle1, idle2 = nn.Linear(4, 4), nn.Linear(4, 4)
    m.add_module("idle1", idle1)
    m.add_module("idle2", idle2)
    m.forward = lambda x: m[4](m[3](m[2](m[1](m[0](x)))))  # the idle layers are never called
    used = L.neuron_groups(m, pairs=[(m[0], m[2], m[1])])
    idle = L.neuron_groups(m, pairs=[(idle1, [m[4]]), (idle2, [m[4]])])
    x = torch.randn(5, 3)
    with pytest.raises(RuntimeError) as err:
        L.measure_activity(m, [*used, *idle], x)
    assert str(err.value) == ("measure_activity: no activation seen for idle1, idle2 "
                              "(module not called in forward?); pass explicit pairs")
    (activity,) = L.measure_activity(m, used, x)  # the hooks of the failed call are gone
    with torch.no_grad():
        torch.testing.assert_close(activity, m[1](m[0](x)).abs().mean(0).view(1, 4))
    assert all(not mod._forward_hooks for mod in m.modules())


def test_explicit_pairs_and_the_hook_path_of_measure_activity():
    m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2), nn.Linear(4, 2))
    fc1, bn, act = m[0], m[1], m[2]
    (g,) = L.neuron_groups(m, pairs=[(fc1, [m[3], m[4]], act, bn)])
    assert (g.name, g.next_layers, g.activation, g.norm, g.probe) == ("0", (m[3], m[4]), act, bn, act)
    (g3,) = L.neuron_groups(m, pairs=[(fc1, m[3], act)])
    assert g3.next_layers == (m[3],) and g3.norm is None and g3.probe is act
    for pairs, msg in [([(nn.Linear(3, 4), m[3])], "plasticity: every pair must start with a Linear/Conv layer of the module"),
                       ([(bn, m[3])], "plasticity: every pair must start with a Linear/Conv layer of the module"),
                       ([(fc1, nn.Linear(5, 2))], "plasticity: shapes of 0 and its next layer(s) do not fit")]:
        with pytest.raises(ValueError) as e:
            L.neuron_groups(m, pairs=pairs)
        assert str(e.value) == msg
    forward = lambda x: m[3](act(bn(fc1(x))))  # noqa: E731 - m itself would also run m[4] on the wrong width
    m.forward = forward
    x = torch.randn(8, 3)
    m.train()
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    absolute, signed = L.measure_activity(m, [g], x, signed=True)
    assert all(torch.equal(v, before[k]) for k, v in bn.state_dict().items())  # running stats restored
    with torch.no_grad():
        h = act(bn(fc1(x)))  # (this forward moves the running stats itself)
    torch.testing.assert_close(absolute[0], h.abs().mean(0).view(1, 4))
    torch.testing.assert_close(signed[0], h.mean(0).view(1, 4))
    assert not act._forward_hooks and L.measure_activity(m, [], x) == []
    torch.testing.assert_close(L.measure_activity(m, [g], x)[0], absolute[0])
    (unused,) = L.neuron_groups(m, pairs=[(m[4], [nn.Linear(2, 1)])])
    with pytest.raises(RuntimeError) as e:
        L.measure_activity(m, [unused], x)
    assert str(e.value) == "measure_activity: no activation seen for 4 (module not called in forward?); pass explicit pairs"
