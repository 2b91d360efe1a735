"""plasticity/structure.py read directly: node kinds, why a layer is no neuron group, output
bounds of saturating activations, producers, attached modules, staleness, refusals."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from plasticity.structure import Structure, _first_line, saturation_bounds


def node(st: Structure, name: str):
    return next(n for n in st.nodes if st.name(n) == name)


class Mixed(nn.Module):
    """Tensor-method activations and shapes, a functional hardtanh with arguments, a norm."""

    def __init__(self):
        super().__init__()
        self.fc1, self.ln, self.fc2, self.fc3 = nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        h = self.ln(self.fc1(x)).relu().view(-1, 4)
        h = F.hardtanh(self.fc2(h), -2.0, 3.0)
        return self.fc3(h.sigmoid())


def test_kinds_names_bounds_and_producers_of_traced_nodes():
    st = Structure(Mixed())
    kinds = {st.name(n): st.kind(n) for n in st.nodes}
    assert kinds == {"x": "other", "fc1": "layer", "ln": "norm", "relu": "act", "view": "shape", "fc2": "layer",
                     "hardtanh": "act", "sigmoid": "act", "fc3": "layer", "output": "other"}
    assert st.activation_bounds(node(st, "hardtanh")) == (-2.0, 3.0)
    assert st.activation_bounds(node(st, "sigmoid")) == (0.0, 1.0)
    assert st.activation_bounds(node(st, "relu")) is None
    assert st.name(st.producer_layer(node(st, "relu"))) == "fc1"  # through the norm
    assert st.name(st.producer_layer(node(st, "sigmoid"))) == "fc2"
    assert st.producer_layer(node(st, "fc1")) is None  # a network input
    assert st.name(st.first_source(node(st, "relu"))) == "ln"
    assert [m for m in st.attached_modules(node(st, "fc1"))] == [st.module.ln]
    assert st.attached_modules(node(st, "fc3")) == []
    assert st.depth() == {node(st, "fc3"): 1, node(st, "fc2"): 2, node(st, "fc1"): 3}
    assert st.why_not_group("fc1") == "it is a group" and st.why_not_group("fc3") == "it reaches the network's output"
    assert st.why_not_group("fc2") == "it feeds sigmoid (sigmoid)"  # two activations in a row
    (g1,) = st.groups()
    assert (g1.name, g1.norm, g1.activation, g1.hook_module) == ("fc1", st.module.ln, None, None)  # probe: x.relu()
    assert g1.probe_node.name == "relu"
    probe = st.probe([g1.probe_node])
    assert st.probe([g1.probe_node]) is probe and st.probe([node(st, "fc2")]) is not probe  # cached per node set


def test_functional_hardtanh_keyword_bounds_and_default_bounds():
    class KW(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return F.hardtanh(self.fc(x), min_val=-0.5, max_val=0.5) + F.hardtanh(self.fc(x) * 2)

    with pytest.raises(ValueError):
        Structure(KW())  # fc called twice
    KW.forward = lambda self, x: F.hardtanh(F.hardtanh(self.fc(x), min_val=-0.5, max_val=0.5))
    st = Structure(KW())
    inner, outer = [n for n in st.nodes if st.kind(n) == "act"]
    assert st.activation_bounds(inner) == (-0.5, 0.5) and st.activation_bounds(outer) == (-1.0, 1.0)
    assert st.activation_bounds(node(st, "fc")) is None


def test_saturation_bounds_of_activation_modules():
    from plasticity.adalin import AdaLin

    assert saturation_bounds(nn.Tanh()) == (-1.0, 1.0) and saturation_bounds(nn.Softsign()) == (-1.0, 1.0)
    assert saturation_bounds(nn.Sigmoid()) == (0.0, 1.0) and saturation_bounds(nn.Hardsigmoid()) == (0.0, 1.0)
    assert saturation_bounds(nn.ReLU6()) == (0.0, 6.0) and saturation_bounds(nn.Hardtanh(-2, 2)) == (-2.0, 2.0)
    assert saturation_bounds(nn.ReLU()) is None and saturation_bounds(nn.GELU()) is None
    assert saturation_bounds(AdaLin("tanh", 3)) == (-1.0, 1.0) and saturation_bounds(AdaLin("relu", 3)) is None

    class Kinded(nn.Module):  # a `kind` without the activation flag is not an AdaLin-like module
        kind = "tanh"

    assert saturation_bounds(Kinded()) is None


@pytest.mark.parametrize(("forward", "reason"), [
    (lambda m, x: (lambda h: (m.fc2(h), h))(m.fc1(x)), "it reaches the network's output"),
    (lambda m, x: m.fc2(torch.relu(m.fc1(x)) * 2), "it feeds mul (mul)"),
    (lambda m, x: m.fc2(torch.relu(torch.tanh(m.fc1(x)))), "it feeds relu (relu)"),
    (lambda m, x: (m.fc1(x), m.fc2(x))[1], "nothing reads it"),
    (lambda m, x: (lambda h: m.fc2(torch.relu(h)) + m.fc2b(h))(m.fc1(x)),
     "its readers see it through different norms or activations"),
])
def test_why_a_layer_is_no_group(forward, reason):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.fc2b = nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 3)

        def forward(self, x):
            return forward(self, x)

    st = Structure(Net())
    assert st.why_not_group("fc1") == reason
    assert [g.name for g in st.groups()] == []


def test_shared_layers_untraceable_messages_and_staleness():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return self.fc(self.fc(x))

    with pytest.raises(ValueError) as err:
        Structure(Twice(), "redo", "pairs=...")
    assert str(err.value) == ("redo: layer 'fc' of Twice is called 2 times in one forward pass (shared weights); "
                              "pass the structure explicitly (pairs=...)")
    with pytest.raises(ValueError) as err:
        Structure(Twice())
    assert str(err.value) == "plasticity: layer 'fc' of Twice is called 2 times in one forward pass (shared weights)"
    assert _first_line(ValueError("first\nsecond")) == "ValueError: first"
    assert _first_line(KeyError()) == "KeyError: "
    m = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    st = Structure(m)
    assert st.calls == {"0": 1, "1": 1, "2": 1} and st.output.op == "output" and st.who == "plasticity"
    assert not st.stale()
    m[2] = nn.Linear(3, 1)
    assert st.stale()
    del m[2]
    assert st.stale()  # a traced module that no longer exists
    shared = nn.Sequential(nn.Linear(2, 3), nn.LayerNorm(3), nn.Linear(3, 3), nn.LayerNorm(3), nn.Linear(3, 1))
    shared[3] = shared[1]  # one norm module called twice: no forward hook can tell the calls apart
    (g1, g2) = Structure(shared).groups()
    assert g1.probe_node.target == "1" and g1.hook_module is None and g2.hook_module is None
    (g,) = Structure(nn.Sequential(nn.Linear(2, 3), nn.LayerNorm(3), nn.Linear(3, 1))).groups()
    assert g.hook_module is not None and g.probe is g.hook_module
