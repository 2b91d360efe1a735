"""plasticity.layers: the whole text of its refusals (a network whose forward does not trace,
groups whose activation is never seen)."""

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
