"""plasticity.Monitor's options, its two ways of reading a network (traced forward pass or
hooks on named layers), names, dtypes and logging cadence, on networks known by construction."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import plasticity as pl
from test_monitor import FakeWriter, _inputs, _mlp

P = "plasticity"


# --------------------------------------------------------------- arguments and defaults
def test_arguments_are_checked_with_their_bounds_included():
    net = _mlp()
    with pytest.raises(ValueError, match=r"^tau must be >= 0, got -0\.5$"):
        pl.Monitor(net, tau=-0.5)
    with pytest.raises(ValueError, match=r"^histogram_every must be >= 0, got -1$"):
        pl.Monitor(net, histogram_every=-1)
    # the bounds themselves are valid: tau = 0 counts exactly the dead units
    assert pl.Monitor(net, tau=0.0).measure(_inputs())[f"{P}/dormant_ratio"] == pytest.approx(1 / 9)
    assert pl.Monitor(net, tau=0.5, histogram_every=0).tau == 0.5
    with pytest.raises(ValueError, match=r"^layer ReLU is not a module of the model$"):
        pl.Monitor(net, layers=[nn.ReLU()])
    with pytest.raises(ValueError, match=r"^layer 'x' is not a module of the model; "
                                         r"valid names: \['0', '1', '2', '3', '4'\]$"):
        pl.Monitor(net, layers=["x"])
    with pytest.raises(ValueError, match=r"^feature_layer 'x' is not a module of the model$"):
        pl.Monitor(net, feature_layer="x")


def test_defaults_tau_threshold_delta_and_nothing_measured_yet():
    net, x = _mlp(), _inputs()
    mon = pl.Monitor(net)
    assert (mon.stats, mon.scores) == ({}, {})
    assert [n for n, _ in mon.layers] == ["1", "3"]
    stats = mon.measure(x)
    # tau 0.025: the 0.0199 unit is dormant (at tau 0.01 it is not, see above)
    assert stats[f"{P}/dormant_ratio/1"] == 0.5
    # srank delta 0.01: features with singular values 3 and 1 (mass 0.75, 0.25) have srank 2
    # by default and 1 at delta 0.5
    eye = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        eye[0].weight.copy_(torch.eye(2))
        eye[0].bias.zero_()
    xe = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    ranks = pl.Monitor(eye).measure(xe)
    assert ranks[f"{P}/srank"] == 2.0
    assert ranks[f"{P}/effective_rank"] == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))
    assert pl.Monitor(eye, srank_delta=0.5).measure(xe)[f"{P}/srank"] == 1.0
    # saturation threshold 0.99 by default; at 0.5 a tanh output 0.6 counts as saturated
    tanh = nn.Sequential(nn.Linear(1, 2), nn.Tanh(), nn.Linear(2, 1))
    with torch.no_grad():
        tanh[0].weight.zero_()
        tanh[0].bias.copy_(torch.tensor([math.atanh(0.6), math.atanh(0.995)]))
    xs = torch.zeros(3, 1)
    assert pl.Monitor(tanh).measure(xs)[f"{P}/saturated_ratio/1"] == 0.5
    low = pl.Monitor(tanh, saturation_threshold=0.5).measure(xs)
    assert low[f"{P}/saturated_ratio/1"] == 1.0
    assert low[f"{P}/active_units/1"] == 0.0


def test_scores_of_every_layer_by_hand():
    net, x = _mlp(), _inputs()
    mon = pl.Monitor(net)
    stats = mon.measure(x)
    with torch.no_grad():
        h1 = torch.relu(net[0](x))
        h3 = torch.relu(net[2](h1))
    assert list(mon.scores) == ["1", "3"]
    for name, h in (("1", h1), ("3", h3)):
        means = h.abs().mean(0)
        assert mon.scores[name].tolist() == pytest.approx((means / means.mean()).tolist(), rel=1e-6)
    # layer 3: every unit active, none dormant
    assert stats[f"{P}/active_units/3"] == 1.0
    assert stats[f"{P}/dormant_ratio/3"] == 0.0


# ---------------------------------------------------------------- modes and paths
def _bn_net() -> nn.Sequential:
    """Linear(1, 2) -> BatchNorm1d(2) -> ReLU -> Linear(2, 1) with running means +-100: in
    eval mode unit 0 is dead and unit 1 always on; in train mode the batch statistics
    centre both units, so neither is dead on an input with a spread."""
    net = nn.Sequential(nn.Linear(1, 2), nn.BatchNorm1d(2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.zero_()
        net[1].running_mean.copy_(torch.tensor([100.0, -100.0]))
    return net


@pytest.mark.parametrize("layers", [None, ["2"]])
def test_eval_mode_true_measures_in_eval_mode_and_false_keeps_the_current_mode(layers):
    x = torch.tensor([[-1.0], [1.0], [2.0], [3.0]])
    net = _bn_net()
    net.train()
    assert pl.Monitor(net, layers=layers).measure(x)[f"{P}/dead_ratio/2"] == 0.5
    assert all(m.training for m in net.modules())
    kept = pl.Monitor(net, layers=layers, eval_mode=False)
    assert kept.measure(x)[f"{P}/dead_ratio/2"] == 0.0
    assert all(m.training for m in net.modules())
    net.eval()
    assert kept.measure(x)[f"{P}/dead_ratio/2"] == 0.5
    assert not any(m.training for m in net.modules())


def test_named_layers_measured_through_hooks_give_the_traced_statistics():
    net, x = _mlp(), _inputs()
    for p in net.parameters():
        p.grad = torch.full_like(p, 0.25)
    traced = pl.Monitor(net)
    hooked = pl.Monitor(net, layers=["1", net[3]])
    assert hooked.structure is None and hooked.layers == [("1", net[1]), ("3", net[3])]
    stats = hooked.measure(x)
    assert stats == pytest.approx(traced.measure(x), rel=1e-6)
    assert set(stats) == set(traced.stats)
    assert list(hooked.scores) == list(traced.scores) == ["1", "3"]
    for name, scores in traced.scores.items():
        assert hooked.scores[name].tolist() == pytest.approx(scores.tolist(), rel=1e-6)
    # hooks exist only during measure, also when the forward pass fails
    assert all(not m._forward_hooks for m in net.modules())
    with pytest.raises(RuntimeError):
        hooked.measure(torch.randn(2, 5))
    assert all(not m._forward_hooks for m in net.modules())


def test_hooked_feature_layer_measured_or_not_and_a_copy_of_the_features():
    class ZeroAfter(nn.Module):
        def forward(self, x):
            return x.zero_()  # in place: must not change features already kept

    net, x = _mlp(), _inputs()
    model = nn.Sequential(*net, ZeroAfter())
    with torch.no_grad():
        h1 = torch.relu(net[0](x))
        h2 = net[2](h1)
        out = net[4](torch.relu(h2))
    norm = lambda h: h.norm(dim=1).mean().item()  # noqa: E731
    # default: the last measured layer's output (layer 3, then zeroed in place by layer 5)
    assert pl.Monitor(model, layers=["1", "3"]).measure(x)[f"{P}/feature_norm"] == pytest.approx(
        norm(torch.relu(h2)), rel=1e-6)
    # a feature layer that is not measured: its output, and no statistics of its own
    stats = pl.Monitor(model, layers=["1"], feature_layer="2").measure(x)
    assert stats[f"{P}/feature_norm"] == pytest.approx(norm(h2), rel=1e-6)
    assert {k for k in stats if k.startswith(f"{P}/dead_ratio/")} == {f"{P}/dead_ratio/1"}
    # a feature layer that is measured too: both
    stats = pl.Monitor(model, layers=["1", "3"], feature_layer="1").measure(x)
    assert stats[f"{P}/feature_norm"] == pytest.approx(norm(h1), rel=1e-6)
    assert stats[f"{P}/dead_ratio/1"] == 0.25
    assert {k for k in stats if k.startswith(f"{P}/dead_ratio/")} == {f"{P}/dead_ratio/1", f"{P}/dead_ratio/3"}
    # the last module, zeroed in place after the hook: the copy kept is of its output
    stats = pl.Monitor(model, layers=["1"], feature_layer="4").measure(x)
    assert stats[f"{P}/feature_norm"] == pytest.approx(norm(out), rel=1e-6)
    # the whole model as the layer: named "root"
    root = pl.Monitor(net, layers=[net]).measure(x)
    assert f"{P}/dead_ratio/root" in root


def test_hooked_layer_called_twice_and_outputs_that_are_not_measured():
    class Pair(nn.Module):
        def forward(self, x):
            return x, x

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(2, 3), nn.Linear(3, 2)
            self.act, self.pair, self.flat = nn.ReLU(), Pair(), nn.ReLU()

        def forward(self, x):
            h = self.act(self.fc1(x))
            h = self.act(self.fc2(h))
            a, _ = self.pair(h)
            return self.flat(a.sum(1))       # a 1-d output: not a layer

    m = Net()
    with torch.no_grad():
        m.fc1.weight.zero_()
        m.fc1.bias.copy_(torch.tensor([1.0, -1.0, 2.0]))
        m.fc2.weight.zero_()
        m.fc2.bias.copy_(torch.tensor([3.0, -1.0]))
    x = torch.randn(4, 2)
    mon = pl.Monitor(m, layers=["act", "pair", "flat"])
    stats = mon.measure(x)
    assert {k for k in stats if k.startswith(f"{P}/dead_ratio/")} == {f"{P}/dead_ratio/act", f"{P}/dead_ratio/act#2"}
    assert stats[f"{P}/dead_ratio/act"] == pytest.approx(1 / 3)
    assert stats[f"{P}/dead_ratio/act#2"] == 0.5
    assert stats[f"{P}/dead_ratio"] == pytest.approx(2 / 5)
    assert list(mon.scores) == ["act", "act#2"]
    assert mon.scores["act#2"].tolist() == pytest.approx([2.0, 0.0])
    # features: the last 2-d output measured, act's second call, rows [3, 0]
    assert stats[f"{P}/feature_norm"] == pytest.approx(3.0)
    # the same counts twice for a second measure (the call counts start over)
    assert mon.measure(x).keys() == stats.keys()
    # no 2-d output measured: no layer statistics, no features
    none = pl.Monitor(m, layers=["pair", "flat"]).measure(x)
    assert set(none) == {f"{P}/weight_norm", f"{P}/weight_distance_from_init",
                         f"{P}/weight_norm/fc1", f"{P}/weight_norm/fc2"}


def test_untraceable_model_is_refused_with_the_layers_hint_and_measured_by_name():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.act = nn.Linear(2, 2), nn.ReLU()

        def forward(self, x):
            h = self.act(self.fc(x))
            return h if h.sum() > 0 else -h

    m = Branchy()
    with pytest.raises(ValueError, match=r"^monitor: cannot read the structure of Branchy .*"
                                         r"\(layers=\['act1', \.\.\.\] names the activation modules to measure\)$"):
        pl.Monitor(m)
    with torch.no_grad():
        m.fc.weight.zero_()
        m.fc.bias.copy_(torch.tensor([1.0, -1.0]))
    assert pl.Monitor(m, layers=["act"]).measure(torch.randn(3, 2))[f"{P}/dead_ratio/act"] == 0.5


def test_traced_names_of_functional_activations_and_features_of_two_dims_only():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.unused = nn.Linear(2, 3), nn.Linear(3, 2), nn.Linear(1, 1)

        def forward(self, x):
            h = self.fc1(x)
            a = torch.relu(h)
            b = torch.relu(-h)                    # the same producer: fc1.relu#2
            c = torch.relu(x)                     # no layer before it: named after its node
            d = (a + b).relu()                    # a method: fc1.relu#3
            e = torch.relu(self.fc2(d).sum(1))    # 1-d: not a layer, not the features
            return e.unsqueeze(1) + c.sum(1, keepdim=True)

    m = Net()
    with torch.no_grad():
        m.fc1.weight.zero_()
        m.fc1.bias.copy_(torch.tensor([1.0, -2.0, 0.0]))
    mon = pl.Monitor(m)
    assert [n for n, _ in mon.layers] == ["fc1.relu", "fc1.relu#2", "relu_2", "fc1.relu#3", "fc2.relu"]
    x = torch.tensor([[1.0, -1.0], [2.0, 3.0]])
    stats = mon.measure(x)
    assert stats[f"{P}/dead_ratio/fc1.relu"] == pytest.approx(2 / 3)
    assert stats[f"{P}/dead_ratio/fc1.relu#2"] == pytest.approx(2 / 3)
    assert stats[f"{P}/dead_ratio/relu_2"] == 0.0
    assert stats[f"{P}/dead_ratio/fc1.relu#3"] == pytest.approx(1 / 3)
    assert f"{P}/dead_ratio/fc2.relu" not in stats
    assert list(mon.scores) == ["fc1.relu", "fc1.relu#2", "relu_2", "fc1.relu#3"]
    # features: the last 2-d activation output, (a + b).relu() = rows [1, 2, 0]
    assert stats[f"{P}/feature_norm"] == pytest.approx(math.sqrt(5))
    assert stats[f"{P}/srank"] == 1.0
    with pytest.raises(ValueError, match=r"^feature_layer 'unused' is not called in the forward pass$"):
        pl.Monitor(m, feature_layer="unused").measure(x)


def test_no_activation_no_layer_statistics_and_no_features():
    net = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    with torch.no_grad():
        net[0].weight.fill_(0.5)
        net[0].bias.zero_()
        net[1].weight.fill_(2.0)
        net[1].bias.fill_(1.0)
    stats = pl.Monitor(net).measure(torch.randn(4, 2))
    assert set(stats) == {f"{P}/weight_norm", f"{P}/weight_distance_from_init",
                          f"{P}/weight_norm/0", f"{P}/weight_norm/1"}
    assert stats[f"{P}/weight_norm/0"] == pytest.approx(math.sqrt(6 * 0.25))
    assert stats[f"{P}/weight_norm/1"] == pytest.approx(math.sqrt(3 * 4.0 + 1.0))
    assert stats[f"{P}/weight_norm"] == pytest.approx(math.sqrt(1.5 + 13.0))


def test_float64_model_is_measured_in_float64():
    net = _mlp().double()
    with torch.no_grad():
        net[4].weight.fill_(0.1)   # not a float32 number
    x = _inputs().double()
    mon = pl.Monitor(net)
    stats = mon.measure(x)
    everything = torch.cat([p.detach().flatten() for p in net.parameters()])
    assert stats[f"{P}/weight_norm"] == pytest.approx(everything.norm().item(), rel=1e-13, abs=0)
    w4 = torch.cat([net[4].weight.flatten(), net[4].bias]).detach()
    assert stats[f"{P}/weight_norm/4"] == pytest.approx(w4.norm().item(), rel=1e-13, abs=0)
    assert all(s.dtype == torch.float64 for s in mon.scores.values())
    # a float32 model's results stay float32
    assert all(s.dtype == torch.float32 for s in _measured_scores(_mlp()).values())


def _measured_scores(net: nn.Module) -> dict[str, torch.Tensor]:
    mon = pl.Monitor(net)
    mon.measure(_inputs())
    return mon.scores


def test_adalin_alpha_mean_and_abs_mean_and_other_alpha_modules():
    class Scale(nn.Module):   # has a tensor alpha but is no activation: no AdaLin statistics
        def __init__(self):
            super().__init__()
            self.alpha = nn.Parameter(torch.ones(2))

        def forward(self, x):
            return x * self.alpha

    net = nn.Sequential(nn.Linear(2, 2), pl.AdaLin(nn.ReLU(), 2), Scale(), nn.Linear(2, 1))
    with torch.no_grad():
        net[1].alpha.copy_(torch.tensor([-0.5, 0.25]))
    stats = pl.Monitor(net).measure(torch.randn(3, 2))
    assert stats[f"{P}/adalin_alpha_mean/1"] == pytest.approx(-0.125)
    assert stats[f"{P}/adalin_alpha_abs_mean/1"] == pytest.approx(0.375)
    assert not any("/2" in k for k in stats if "adalin" in k)
    assert len([k for k in stats if "adalin" in k]) == 2


# -------------------------------------------------------------------------- logging
def test_histogram_cadence_counts_every_log_call():
    net, x = _mlp(), _inputs()
    writer = FakeWriter()
    default = pl.Monitor(net)
    default.measure(x)
    default.log(writer, 1)
    default.log(writer, 2)
    assert writer.histograms == []                      # histogram_every = 0: only on request
    default.log(writer, 3, histograms=True)
    assert [(t, s) for t, _, s in writer.histograms] == [(f"{P}/neuron_scores/1", 3), (f"{P}/neuron_scores/3", 3)]
    assert writer.histograms[1][1].tolist() == default.scores["3"].tolist()

    writer = FakeWriter()
    mon = pl.Monitor(net, histogram_every=3)
    mon.measure(x)
    mon.log(writer, 0, histograms=False)                # call 0: asked not to, still counted
    for step in range(1, 8):
        mon.log(writer, step)
    assert sorted({s for _, _, s in writer.histograms}) == [3, 6]
    assert len(writer.histograms) == 4

    writer = FakeWriter()
    every = pl.Monitor(net, histogram_every=1)
    every.measure(x)
    for step in range(3):
        every.log(writer, step)
    assert [s for _, _, s in writer.histograms] == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("layers", [None, ["1"]])
def test_sigmoid_saturation_is_judged_on_its_own_range(layers):
    # sigmoid outputs 0.0009 (saturated at its low end 0), 0.5 and 0.9991 (saturated)
    net = nn.Sequential(nn.Linear(1, 3), nn.Sigmoid(), nn.Linear(3, 1))
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].bias.copy_(torch.tensor([-7.0, 0.0, 7.0]))
    stats = pl.Monitor(net, layers=layers).measure(torch.randn(4, 1))
    assert stats[f"{P}/saturated_ratio/1"] == pytest.approx(2 / 3)
    assert stats[f"{P}/active_units/1"] == pytest.approx(1 / 3)


def test_a_replaced_submodule_that_does_not_trace_is_refused_at_the_next_measure():
    class Branchy(nn.Module):   # holds a layer, so torch.fx traces into it
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(5, 5)

        def forward(self, x):
            h = self.fc(x)
            return h if h.sum() > 0 else -h

    net = _mlp()
    mon = pl.Monitor(net)
    net[3] = Branchy()
    with pytest.raises(ValueError, match=r"^monitor: cannot read the structure of Sequential .*"
                                         r"\(layers=\['act1', \.\.\.\] names the activation modules to measure\)$"):
        mon.measure(_inputs())
