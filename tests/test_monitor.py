"""plasticity.Monitor on small networks whose statistics are known by construction."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import plasticity as pl
from plasticity import metrics as M

P = "plasticity"


class FakeWriter:
    """Records add_scalar / add_histogram calls."""

    def __init__(self) -> None:
        self.scalars: list[tuple[str, float, int]] = []
        self.histograms: list[tuple[str, torch.Tensor, int]] = []

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.append((tag, value, step))

    def add_histogram(self, tag: str, values: torch.Tensor, step: int) -> None:
        self.histograms.append((tag, values, step))


def _mlp() -> nn.Sequential:
    """3 -> 4 -> 5 -> 2. On positive inputs x_b = (1 + b/10) * [1, 1, 1], first-layer
    units 0, 1 give mean c, unit 2 gives 0.01 c (score 0.01 / (2.01 / 4) = 0.0199) and
    unit 3 is dead (weights 0, bias -1). Every second-layer unit is positive."""
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([
            [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.01], [0.0, 0.0, 0.0]]))
        net[0].bias.copy_(torch.tensor([0.0, 0.0, 0.0, -1.0]))
        net[2].weight.copy_(torch.arange(20.0).reshape(5, 4) / 20 + 0.05)
        net[2].bias.fill_(0.1)
    return net


def _inputs(batch: int = 6) -> torch.Tensor:
    return (1 + torch.arange(batch, dtype=torch.float32) / 10).unsqueeze(1).repeat(1, 3)


def test_mlp_dead_and_dormant_units_in_the_right_layer():
    net, x = _mlp(), _inputs()
    stats = pl.Monitor(net, tau=0.025).measure(x)
    assert stats[f"{P}/dead_ratio/1"] == 0.25
    assert stats[f"{P}/dead_ratio/3"] == 0.0
    assert stats[f"{P}/dormant_ratio/1"] == 0.5          # dead + the 0.0199 unit
    assert stats[f"{P}/dormant_ratio/3"] == 0.0
    assert stats[f"{P}/dead_ratio"] == pytest.approx(1 / 9)
    assert stats[f"{P}/dormant_ratio"] == pytest.approx(2 / 9)
    assert stats[f"{P}/active_units/1"] == 0.75
    assert stats[f"{P}/active_units"] == pytest.approx(8 / 9)
    # tau is the monitor's: at 0.01 the 0.0199 unit is not dormant
    assert pl.Monitor(net, tau=0.01).measure(x)[f"{P}/dormant_ratio/1"] == 0.25


def test_mlp_features_weights_and_grads():
    net, x = _mlp(), _inputs()
    mon = pl.Monitor(net)
    stats = mon.measure(x)
    with torch.no_grad():
        feats = net[3](net[2](net[1](net[0](x))))     # output of the last activation
    # by hand from the singular values: exp(entropy(σ/Σσ)); fewest σ reaching 99 % of Σσ
    sigma = torch.linalg.svdvals(feats.double())
    p = sigma / sigma.sum()
    erank = math.exp(-sum(float(x) * math.log(float(x)) for x in p if x > 0))
    srank = next(k + 1 for k, c in enumerate(torch.cumsum(p, 0).tolist()) if c >= 0.99 - 1e-12)
    assert stats[f"{P}/effective_rank"] == pytest.approx(erank, rel=1e-5)
    assert stats[f"{P}/srank"] == srank
    assert stats[f"{P}/feature_norm"] == pytest.approx(feats.norm(dim=1).mean().item(), rel=1e-6)
    assert f"{P}/grad_norm" not in stats                 # no backward yet
    # 53 parameters: 12 + 4 + 20 + 5 + 10 + 2
    for p in net.parameters():
        p.grad = torch.full_like(p, 0.5)
    stats = mon.measure(x)
    assert stats[f"{P}/grad_norm"] == pytest.approx(0.5 * math.sqrt(53))
    assert stats[f"{P}/weight_distance_from_init"] == 0.0
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1)
    stats = mon.measure(x)
    assert stats[f"{P}/weight_distance_from_init"] == pytest.approx(0.1 * math.sqrt(53), rel=1e-5)
    mon.reset_reference()
    assert mon.measure(x)[f"{P}/weight_distance_from_init"] == 0.0
    w2 = torch.cat([net[2].weight.flatten(), net[2].bias])
    assert stats[f"{P}/weight_norm/2"] == pytest.approx(w2.norm().item(), rel=1e-6)
    everything = torch.cat([p.flatten() for p in net.parameters()])
    assert stats[f"{P}/weight_norm"] == pytest.approx(everything.norm().item(), rel=1e-6)


def test_cnn_channels_average_over_spatial_positions():
    # channel 0 of the conv fires once (value 4 at one position of one of 2 samples): mean
    # 4 / 8 = 0.5; channel 1 is 1 everywhere. Scores 2/3 and 4/3. Per-position units would
    # make 3 of 8 dead; per-channel units make none.
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3), nn.ReLU(),
                        nn.Linear(3, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([1.0, 0.0]).reshape(2, 1, 1, 1))
        net[0].bias.copy_(torch.tensor([0.0, 1.0]))
        net[3].weight.zero_()
        net[3].bias.fill_(1.0)
    x = torch.zeros(2, 1, 2, 2)
    x[0, 0, 0, 0] = 4.0
    mon = pl.Monitor(net, tau=0.7)
    stats = mon.measure(x)
    assert stats[f"{P}/dead_ratio/1"] == 0.0
    assert stats[f"{P}/dormant_ratio/1"] == 0.5
    assert stats[f"{P}/dormant_ratio/4"] == 0.0
    assert stats[f"{P}/dormant_ratio"] == pytest.approx(1 / 5)
    assert stats[f"{P}/active_units/1"] == pytest.approx((1 / 8 + 1) / 2)
    assert mon.scores["1"].tolist() == pytest.approx([2 / 3, 4 / 3])
    assert stats.keys() >= {f"{P}/weight_norm/0", f"{P}/weight_norm/3", f"{P}/weight_norm/5"}


def test_measure_leaves_model_outputs_grads_and_modes_untouched():
    net = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5),
                        nn.Linear(8, 2))
    x = torch.randn(16, 3)
    net(x).square().sum().backward()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    grads = [p.grad.clone() for p in net.parameters()]
    net.eval()
    before = net(x)
    net.train()
    mon = pl.Monitor(net)
    mon.measure(x)
    assert all(m.training for m in net.modules())
    for k, v in net.state_dict().items():           # incl. BatchNorm running statistics
        assert torch.equal(v, state[k]), k
    for p, g in zip(net.parameters(), grads):
        assert torch.equal(p.grad, g)
    net.eval()
    assert torch.equal(net(x), before)
    for m in net.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    # hooks and modes are cleaned up when the forward pass fails, too
    net.train()
    with pytest.raises(RuntimeError):
        mon.measure(torch.randn(4, 5))
    assert all(m.training for m in net.modules())
    assert all(not m._forward_hooks for m in net.modules())


def test_log_writes_exact_tags_and_histograms():
    net, x = _mlp(), _inputs()
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    mon = pl.Monitor(net, histogram_every=2)
    stats = mon.measure(x)
    writer = FakeWriter()
    mon.log(writer, 123)
    layers = ["1", "3"]
    expected = {
        f"{P}/{k}" for k in ["dormant_ratio", "dead_ratio", "active_units", "effective_rank",
                             "srank", "feature_norm", "weight_norm", "weight_distance_from_init",
                             "grad_norm"]
    } | {f"{P}/{k}/{layer}" for k in ["dormant_ratio", "dead_ratio", "active_units"]
         for layer in layers} | {f"{P}/weight_norm/{n}" for n in ["0", "2", "4"]}
    assert {tag for tag, _, _ in writer.scalars} == expected
    assert len(writer.scalars) == len(expected)
    assert all(step == 123 and value == stats[tag] for tag, value, step in writer.scalars)
    # first call with histogram_every=2 writes histograms: scores of layer 1 by hand
    assert [t for t, _, _ in writer.histograms] == [f"{P}/neuron_scores/1", f"{P}/neuron_scores/3"]
    scores = writer.histograms[0][1].tolist()
    assert scores == pytest.approx([1 / 0.5025, 1 / 0.5025, 0.01 / 0.5025, 0.0], rel=1e-5)
    mon.log(writer, 124)                               # 2nd call: no histograms
    assert len(writer.histograms) == 2
    mon.log(writer, 125)                               # 3rd call: histograms again
    assert len(writer.histograms) == 4
    mon.log(writer, 126, histograms=False)
    pl.Monitor(net).log(writer, 127)                   # nothing measured: nothing written
    assert len(writer.histograms) == 4
    assert len(writer.scalars) == 4 * len(expected)


def test_real_summary_writer_round_trip(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    net, x = _mlp(), _inputs()
    mon = pl.Monitor(net)
    stats = mon.measure(x)
    writer = SummaryWriter(log_dir=str(tmp_path))
    mon.log(writer, 7, histograms=True)
    writer.close()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == set(stats)
    event = acc.Scalars(f"{P}/dormant_ratio/1")[0]
    assert (event.step, event.value) == (7, 0.5)
    assert acc.Scalars(f"{P}/dormant_ratio")[0].value == pytest.approx(2 / 9)
    assert set(acc.Tags()["histograms"]) == {f"{P}/neuron_scores/1", f"{P}/neuron_scores/3"}


class Doubled(nn.Module):
    """A CReLU-like custom activation: [relu(x), relu(-x)], found through its flag only.
    Its inner nn.ReLU must not be counted as a layer of its own."""

    is_activation = True

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.inner(x), self.inner(-x)], dim=1)


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 3), Doubled())


class Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = Encoder()
        self.head = nn.Linear(6, 1)

    def forward(self, x: torch.Tensor, scale: float) -> torch.Tensor:
        return self.head(self.encoder.net(x)) * scale


def test_custom_activation_flag_nested_names_and_tuple_batch():
    model = Model()
    with torch.no_grad():   # pre-activations all positive: the relu(-x) half is dead
        model.encoder.net[0].weight.fill_(0.0)
        model.encoder.net[0].bias.copy_(torch.tensor([1.0, 2.0, 3.0]))
    mon = pl.Monitor(model)
    assert [name for name, _ in mon.layers] == ["encoder.net.1"]
    stats = mon.measure((torch.randn(4, 2), 2.0))
    assert stats[f"{P}/dead_ratio/encoder.net.1"] == 0.5
    assert stats[f"{P}/active_units/encoder.net.1"] == 0.5
    assert stats[f"{P}/feature_norm"] == pytest.approx(math.sqrt(14.0))
    assert not any("inner" in k for k in stats)
    assert set(k for k in stats if "weight_norm/" in k) == {
        f"{P}/weight_norm/encoder.net.0", f"{P}/weight_norm/head"}


def test_tanh_layer_reports_saturation():
    # Linear(2, 4) -> Tanh -> Linear(4, 2) -> ReLU -> Linear(2, 1). Tanh units: 0 at
    # tanh(10), 1 at tanh(-10) (saturated on every input), 2 = tanh(x0) with x0 in
    # {-5, 0.1} (saturated on one input only), 3 = tanh(x1) small (never saturated).
    net = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
        net[0].bias.copy_(torch.tensor([10.0, -10.0, 0.0, 0.0]))
        net[2].weight.zero_()
        net[2].bias.fill_(1.0)
    x = torch.tensor([[-5.0, 0.2], [0.1, 0.3]])
    stats = pl.Monitor(net).measure(x)
    assert stats[f"{P}/saturated_ratio/1"] == 0.5
    assert stats[f"{P}/saturated_ratio"] == 0.5          # over saturating layers only
    assert f"{P}/saturated_ratio/3" not in stats
    assert stats[f"{P}/active_units/1"] == pytest.approx((0 + 0 + 0.5 + 1) / 4)
    assert stats[f"{P}/active_units"] == pytest.approx((1.5 + 2) / 6)
    # dormancy scores see the saturated units as the busiest: none dormant
    assert stats[f"{P}/dormant_ratio/1"] == 0.0


def test_tanh_layer_named_for_hooks_reports_the_traced_saturation():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        net[0].bias.copy_(torch.tensor([10.0, -10.0, 0.0, 0.0]))
    x = torch.randn(8, 2)
    traced = pl.Monitor(net).measure(x)
    hooked = pl.Monitor(net, layers=["1", "3"]).measure(x)
    assert hooked[f"{P}/saturated_ratio/1"] == traced[f"{P}/saturated_ratio/1"] == 0.5
    assert hooked == pytest.approx(traced, rel=1e-6)


def test_layernorm_network_measures_activation_outputs():
    net = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.ReLU(), nn.Linear(4, 1))
    with torch.no_grad():   # unit 3 of the norm outputs -1 on every input: dead after ReLU
        net[1].weight.copy_(torch.tensor([1.0, 1.0, 1.0, 0.0]))
        net[1].bias.copy_(torch.tensor([0.0, 0.0, 0.0, -1.0]))
    mon = pl.Monitor(net)
    assert [n for n, _ in mon.layers] == ["2"]
    stats = mon.measure(torch.randn(32, 3))
    assert stats[f"{P}/dead_ratio/2"] == 0.25
    assert {k for k in stats if "weight_norm/" in k} == {
        f"{P}/weight_norm/0", f"{P}/weight_norm/3"}


class Shared(nn.Module):
    """One ReLU module called twice in forward."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.out = nn.Linear(2, 3), nn.Linear(3, 2), nn.Linear(2, 1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.fc2(self.act(self.fc1(x)))))


def test_shared_activation_gives_one_layer_per_call_and_feature_layer_option():
    model = Shared()
    with torch.no_grad():
        model.fc1.weight.zero_()
        model.fc1.bias.copy_(torch.tensor([1.0, -1.0, 1.0]))   # one of 3 dead
        model.fc2.weight.zero_()
        model.fc2.bias.copy_(torch.tensor([-1.0, -1.0]))       # both dead
    x = torch.randn(5, 2)
    stats = pl.Monitor(model).measure(x)
    assert stats[f"{P}/dead_ratio/act"] == pytest.approx(1 / 3)
    assert stats[f"{P}/dead_ratio/act#2"] == 1.0
    assert stats[f"{P}/dead_ratio"] == pytest.approx(3 / 5)
    assert stats[f"{P}/effective_rank"] == 0.0                 # last call's output is all 0
    stats = pl.Monitor(model, feature_layer="fc1").measure(x)  # fc1 output: rows [1, -1, 1]
    assert stats[f"{P}/feature_norm"] == pytest.approx(math.sqrt(3))
    assert stats[f"{P}/srank"] == 1.0
    assert pl.Monitor(model, layers=["act"]).layers == [("act", model.act)]
    with pytest.raises(ValueError, match="nope"):
        pl.Monitor(model, layers=["nope"])
    with pytest.raises(ValueError, match="nope"):
        pl.Monitor(model, feature_layer="nope")


def test_compiled_wrapper_is_measured_through_its_original():
    class Wrapper(nn.Module):   # stands in for torch.compile's OptimizedModule
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self._orig_mod = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self._orig_mod(x)

    net = _mlp()
    stats = pl.Monitor(Wrapper(net)).measure(_inputs())
    assert stats[f"{P}/dead_ratio/1"] == 0.25


def test_monitor_sees_the_layers_and_activations_the_interventions_act_on():
    # one definition (plasticity.layers): the monitor's activations are ReDo's probes and
    # its per-layer weight norms are the Linear/Conv layers (not the embedding)
    net = nn.Sequential(nn.Embedding(4, 3), nn.Flatten(), nn.Linear(6, 5), nn.PReLU(5),
                        nn.Linear(5, 4), nn.ReLU6(), nn.Linear(4, 1))
    mon = pl.Monitor(net)
    redo = pl.ReDo(net, tau=0.1)
    assert [m for _, m in mon.layers] == [g.activation for g in redo.groups] == [net[3], net[5]]
    stats = mon.measure(torch.randint(0, 4, (8, 2)))
    assert {k for k in stats if "weight_norm/" in k} == {f"{P}/weight_norm/{n}" for n in "246"}
    assert f"{P}/saturated_ratio/5" in stats and f"{P}/saturated_ratio/3" not in stats


def test_adalin_is_judged_by_its_base_function_with_alpha_statistics():
    torch.manual_seed(0)
    tanh_net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 2))
    with torch.no_grad():
        tanh_net[0].bias[:5] = 10.0  # saturated units
    ada_net = pl.adalin.convert(__import__("copy").deepcopy(tanh_net), alpha_init=0.0)
    assert isinstance(ada_net[1], pl.AdaLin)
    x = torch.randn(64, 3)
    torch.testing.assert_close(ada_net(x), tanh_net(x))  # the same function
    plain = pl.Monitor(tanh_net).measure(x)
    ada = pl.Monitor(ada_net).measure(x)
    assert plain["plasticity/saturated_ratio"] > 0
    activity = [k for k in plain if k.split("/")[1] in ("dormant_ratio", "dead_ratio", "active_units",
                                                          "saturated_ratio", "effective_rank", "srank")]
    assert len(activity) >= 12 and {k: ada[k] for k in activity} == {k: plain[k] for k in activity}
    assert {k: ada[k] for k in plain} == pytest.approx(plain, rel=1e-6)  # norms: alpha = 0 adds 0
    extra = set(ada) - set(plain)
    assert extra == {f"plasticity/adalin_{s}/{n}" for s in ("alpha_mean", "alpha_abs_mean") for n in ("1", "3")}
    with torch.no_grad():
        ada_net[3].alpha.fill_(-0.5)
    assert pl.Monitor(ada_net).measure(x)["plasticity/adalin_alpha_abs_mean/3"] == 0.5


def test_functional_activations_are_measured_and_named_after_their_layer():
    class Critic(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.fc3 = nn.Linear(3, 6), nn.Linear(6, 5), nn.Linear(5, 1)

        def forward(self, x):
            x = torch.relu(self.fc1(x))
            return self.fc3(torch.tanh(self.fc2(x)))

    m = Critic()
    with torch.no_grad():
        m.fc1.bias[2] = -100.0  # dead
    stats = pl.Monitor(m).measure(torch.randn(32, 3))
    assert stats["plasticity/dead_ratio/fc1.relu"] == pytest.approx(1 / 6)
    assert "plasticity/saturated_ratio/fc2.tanh" in stats and "plasticity/saturated_ratio/fc1.relu" not in stats


def test_monitor_reads_the_structure_again_after_an_injection():
    m = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 2)))
    opt = torch.optim.Adam(m.parameters())
    mon = pl.Monitor(m)
    x = torch.randn(16, 3)
    assert set(k for k in mon.measure(x) if k.startswith("plasticity/dead_ratio/")) == {
        "plasticity/dead_ratio/1", "plasticity/dead_ratio/2.1"}
    inj = pl.PlasticityInjection(m, opt, head="2", at_step=1)
    inj.after_step()
    stats = mon.measure(x)
    assert {k for k in stats if k.startswith("plasticity/dead_ratio/")} == {
        "plasticity/dead_ratio/1", "plasticity/dead_ratio/2.frozen.1", "plasticity/dead_ratio/2.fresh.1",
        "plasticity/dead_ratio/2.fresh_init.1"}

