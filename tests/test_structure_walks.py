"""plasticity/structure.py on networks built to reach its less common paths: which modules are
traced into, the kinds of shape modules, shape functions and other submodules, the bounds of
functional and module activations, the walks over forks, diamonds and skips (each node once),
the depth of a layer nothing reads, a layer read by keyword, a group whose shapes do not fit,
and the refusal of a forward that does not trace."""

from __future__ import annotations

import pytest
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from plasticity.structure import Structure


def node(st: Structure, name: str):
    return next(n for n in st.nodes if st.name(n) == name)


class GatedAct(nn.Module):
    """An activation module holding its own Linear gate: x · σ(Wx)."""

    is_activation = True

    def __init__(self, n):
        super().__init__()
        self.gate = nn.Linear(n, n)

    def forward(self, x):
        return x * torch.sigmoid(self.gate(x))


class CondNorm(nn.LayerNorm):
    """A LayerNorm whose gain is computed by a Linear of its input."""

    def __init__(self, n):
        super().__init__(n)
        self.gain = nn.Linear(n, n)

    def forward(self, x):
        return super().forward(x) * self.gain(x)


def test_activation_and_norm_modules_are_leaves_even_when_they_hold_a_weight_layer():
    net = nn.Sequential(nn.Linear(3, 4), CondNorm(4), GatedAct(4), nn.Linear(4, 2))
    st = Structure(net)
    assert [(st.name(n), st.kind(n)) for n in st.nodes] == [
        ("input_1", "other"), ("0", "layer"), ("1", "norm"), ("2", "act"), ("3", "layer"), ("output", "other")]
    assert [st.name(n) for n in st.layer_nodes] == ["0", "3"]  # not the gate nor the gain
    (g,) = st.groups()
    assert (g.name, g.norm, g.activation, g.next_layers) == ("0", net[1], net[2], (net[3],))


class Kinds(nn.Module):
    """A shape module, a submodule that holds no weight layer, shape and activation functions."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc1, self.fc2 = nn.Conv2d(1, 2, 3), nn.Linear(8, 4), nn.Linear(4, 2)
        self.flat, self.act, self.scale = nn.Flatten(), nn.Tanh(), Scale()

    def forward(self, x):
        h = torch.flatten(F.max_pool2d(torch.relu(self.conv(self.scale(x))), 2), 1)
        return self.fc2(self.flat(self.act(self.fc1(h))))


class Scale(nn.Module):
    """Frames to [0, 1]: a submodule with its own forward and no weight layer."""

    def forward(self, x):
        return x / 255.0


def test_kinds_of_shape_modules_shape_functions_and_other_submodules():
    st = Structure(Kinds())
    kinds = {st.name(n): st.kind(n) for n in st.nodes}
    assert kinds == {"x": "other", "scale": "other", "conv": "layer", "relu": "act", "max_pool2d": "shape",
                     "flatten": "shape", "fc1": "layer", "act": "act", "flat": "shape", "fc2": "layer",
                     "output": "other"}
    conv, fc1 = st.groups()
    assert (conv.name, conv.activation, conv.spatial, conv.probe_node.name) == ("conv", None, 4, "relu")
    assert (fc1.name, fc1.activation, fc1.spatial, fc1.probe_node.name) == ("fc1", st.module.act, 1, "act")
    assert st.activation_bounds(node(st, "act")) == (-1.0, 1.0)  # the Tanh module
    assert st.activation_bounds(node(st, "relu")) is None
    assert st.activation_bounds(node(st, "conv")) is None


def test_activation_bounds_of_function_nodes_with_positional_keyword_and_default_bounds():
    st = Structure(nn.Sequential(nn.Linear(2, 2), nn.ReLU6(), nn.Linear(2, 1)))
    assert st.activation_bounds(node(st, "1")) == (0.0, 6.0)  # the module's own bounds
    g = fx.Graph()  # a graph written by hand may hold hardtanh's bounds as positional arguments
    x = g.placeholder("x")
    calls = {"both": g.call_function(F.hardtanh, (x, -2.0, 3.0)), "low": g.call_function(F.hardtanh, (x, -0.5)),
             "none": g.call_function(F.hardtanh, (x,)),
             "kw": g.call_function(F.hardtanh, (x,), {"min_val": -4.0, "max_val": 5.0}),
             "mixed": g.call_function(F.hardtanh, (x, -7.0), {"max_val": 8.0}),
             "tanh": g.call_function(torch.tanh, (x,)), "relu6": g.call_function(F.relu6, (x,)),
             "relu": g.call_function(F.relu, (x,)), "sigmoid": g.call_method("sigmoid", (x,)),
             "view": g.call_method("view", (x, -1))}
    assert {k: st.activation_bounds(n) for k, n in calls.items()} == {
        "both": (-2.0, 3.0), "low": (-0.5, 1.0), "none": (-1.0, 1.0), "kw": (-4.0, 5.0), "mixed": (-7.0, 8.0),
        "tanh": (-1.0, 1.0), "relu6": (0.0, 6.0), "relu": None, "sigmoid": (0.0, 1.0), "view": None}
    assert all(type(v) is float for k in ("both", "low", "none") for v in st.activation_bounds(calls[k]))


def test_a_forward_that_does_not_trace_is_refused_with_the_first_line_of_its_error():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            raise RuntimeError("depends on the data\nsecond line")

    with pytest.raises(ValueError) as err:
        Structure(Branchy(), "swr", "chain=True")
    assert str(err.value) == ("swr: cannot read the structure of Branchy from its forward pass with torch.fx "
                              "(RuntimeError: depends on the data); pass the structure explicitly (chain=True)")
    assert err.value.__cause__ is None and err.value.__suppress_context__


class Scaled(nn.Module):
    """A learnt scale as the first operand before the next layer; a norm branch and a skip."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(4, 4)
        self.ln, self.act = nn.LayerNorm(4), nn.PReLU(4)
        self.scale = nn.Parameter(torch.full((4,), 2.0))

    def forward(self, x):
        h = self.fc1(x)
        z = self.fc3(self.act(self.ln(h)))  # the norm branch is registered as h's first user
        h = self.fc2(self.scale * h)  # then the skip to fc2 through a get_attr operand
        return h + z


def test_walks_back_over_a_parameter_operand_and_forward_over_a_skip_and_a_norm_branch():
    st = Structure(Scaled())
    m = st.module
    fc1, fc2, fc3, mul = node(st, "fc1"), node(st, "fc2"), node(st, "fc3"), node(st, "mul")
    assert st.first_source(mul) is fc1 and st.first_source(fc2) is fc1  # `scale` is passed over
    assert st.producer_layer(fc2) is fc1
    assert st.attached_modules(fc1) == [m.ln, m.act]  # both, each once, though fc2 is met first
    assert st.downstream(fc1) == ({fc2, fc3}, False) and st.downstream(fc1)[1] is False
    assert st.downstream(fc2) == (set(), True)
    assert st.depth() == {fc3: 1, fc2: 1, fc1: 2}
    assert st.why_not_group("fc1") == "it feeds mul (mul)"


def test_depth_of_a_layer_that_also_reaches_the_output_and_of_a_layer_nothing_reads():
    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.aux = nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 1)

        def forward(self, x):
            self.aux(x)  # an auxiliary head computed and dropped
            h = self.fc1(x)
            return self.fc2(torch.relu(h)) + h

    st = Structure(Skip())
    assert st.downstream(node(st, "aux")) == (set(), False)
    assert {st.name(n): d for n, d in st.depth().items()} == {"fc2": 1, "fc1": 1, "aux": 1}
    assert [st.name(n) for n in st.output_layers()] == ["fc1", "fc2"]


def test_a_layer_reading_by_keyword_and_a_reshape_that_breaks_the_unit_layout():
    class Keyword(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(3, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.fc2(input=torch.relu(self.fc1(x)))

    st = Structure(Keyword())
    assert st.why_not_group("fc1") == "fc2 reads it as a second argument" and st.groups() == []

    class Split(nn.Module):  # fc1's 4 units become rows of 2 features: no unit of fc1 is a column
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.fc3 = nn.Linear(3, 4), nn.Linear(2, 5), nn.Linear(5, 1)

        def forward(self, x):
            return self.fc3(torch.relu(self.fc2(self.fc1(x).view(-1, 2))))

    st = Structure(Split())
    assert st.why_not_group("fc1") == "it is a group"  # by the path; make_group refuses the shapes
    assert [(g.name, g.next_layers) for g in st.groups()] == [("fc2", (st.module.fc3,))]


def test_forward_walks_visit_each_node_once_through_stacked_diamonds():
    class Diamonds(nn.Module):  # h + relu(h) ten times between two layers: 2^10 paths, 22 nodes
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(3, 3), nn.Linear(3, 3)

        def forward(self, x):
            h = self.fc1(x)
            for _ in range(10):
                h = h + torch.relu(h)
            return self.fc2(h)

    st = Structure(Diamonds())
    fc1, fc2 = node(st, "fc1"), node(st, "fc2")
    seen = []
    kind = st.kind
    st.kind = lambda n: (seen.append(n), kind(n))[1]
    assert st.downstream(fc1) == ({fc2}, False)
    assert len(seen) == len(set(seen)) == 21  # 10 relus, 10 sums and fc2, each classified once
    seen.clear()
    assert st.attached_modules(fc1) == []
    assert len(seen) == len(set(seen)) == 21


def test_forward_walks_go_on_after_meeting_a_node_again():
    class Fork(nn.Module):  # fc1's users, in order: fc3, relu, the sum of fc1 and its relu
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.fc3 = nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 3)

        def forward(self, x):
            h = self.fc1(x)
            y = self.fc3(h)
            return self.fc2(h + torch.relu(h)) + y

    st = Structure(Fork())
    assert {st.name(n) for n in st.downstream(node(st, "fc1"))[0]} == {"fc2", "fc3"}
    assert [st.name(n) for n in st.output_layers()] == ["fc3", "fc2"]  # forward order

    class Join(nn.Module):  # a reshape of fc1's output cast to fc1's output: two paths meet at `to`
        def __init__(self, tail):
            super().__init__()
            self.fc1, self.fc2, self.tail = nn.Linear(3, 4), nn.Linear(4, 2), tail

        def forward(self, x):
            h = self.fc1(x)
            a = h.view(-1, 4)
            y = self.fc2(a.to(h))
            return (y, a.tanh()) if self.tail else y

    st = Structure(Join(tail=False))
    (g,) = st.groups()
    assert (g.name, g.next_layers) == ("fc1", (st.module.fc2,))  # fc2 once, though met on two paths
    st = Structure(Join(tail=True))  # `a` also reaches the output after its user `to` was met
    assert st.why_not_group("fc1") == "it reaches the network's output" and st.groups() == []


@pytest.mark.parametrize("bare", [nn.Linear(4, 3), nn.Conv2d(2, 3, 3), nn.LayerNorm(5)])
def test_a_bare_layer_is_a_network_of_one_layer(bare):
    st = Structure(bare)
    calls = [n for n in st.nodes if n.op == "call_module"]
    assert len(calls) == 1 and st.module_of(calls[0]) is bare
    assert st.kind(calls[0]) == ("norm" if isinstance(bare, nn.LayerNorm) else "layer")
    assert st.layer_nodes == ([] if isinstance(bare, nn.LayerNorm) else calls)


def test_swr_rescales_a_bare_layer_as_the_same_layer_in_a_container():
    from plasticity.swr import SoftWeightRescaling

    torch.manual_seed(0)
    bare = nn.Linear(4, 3)
    boxed = nn.Sequential(nn.Linear(4, 3))
    boxed.load_state_dict({"0." + k: v for k, v in bare.state_dict().items()})
    grown = 3.0 * bare.weight.detach().clone()
    for net in (bare, boxed):
        swr = SoftWeightRescaling(net, lam=0.1)
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(3.0)
        swr.rescale()
    assert torch.equal(bare.weight, boxed[0].weight) and torch.equal(bare.bias, boxed[0].bias)
    assert bare.weight.norm() < 0.95 * grown.norm()  # pulled back toward its initial norm
