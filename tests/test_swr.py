from __future__ import annotations

import pytest
import torch
from torch import nn

import plasticity as pl
from plasticity.swr import SWR, SoftWeightRescaling


def _fro(t: torch.Tensor) -> float:
    return float(t.detach().pow(2).sum().sqrt())


def _drift(model: nn.Module, seed: int = 1) -> None:
    """Stand-in for training: move every parameter away from its initial value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            p.mul_(1.5 + 0.5 * i).add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def test_alias_and_lazy_export():
    assert SWR is SoftWeightRescaling
    assert pl.SWR is SoftWeightRescaling and pl.SoftWeightRescaling is SoftWeightRescaling


def test_explicit_numbers_two_layers():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))  # norm sqrt(2)
        model[0].bias.copy_(torch.tensor([1.0, -2.0]))
        model[2].weight.copy_(torch.tensor([[3.0, 4.0]]))  # norm 5
        model[2].bias.fill_(1.0)
    swr = SWR(model, lam=0.5, head_lam=0.25)
    with torch.no_grad():
        model[0].weight.mul_(2.0)  # norm 2*sqrt(2) -> c1 = 0.5*sqrt2/(2*sqrt2) + 0.5 = 0.75
        model[2].weight.mul_(2.0)  # norm 10 -> c2 = 0.25*5/10 + 0.75 = 0.875
    swr.after_step()
    torch.testing.assert_close(
        model[0].weight, torch.tensor([[1.5, 0.0], [0.0, 1.5]], dtype=torch.double)
    )
    torch.testing.assert_close(model[0].bias, torch.tensor([0.75, -1.5], dtype=torch.double))
    torch.testing.assert_close(model[2].weight, torch.tensor([[5.25, 7.0]], dtype=torch.double))
    torch.testing.assert_close(model[2].bias, torch.tensor([0.75 * 0.875], dtype=torch.double))
    assert swr.metrics()["swr_scale"] == pytest.approx(0.75 * 0.875)
    assert swr.metrics()["swr_weight_norm"] == pytest.approx((1.5**2 * 2 + 5.25**2 + 7.0**2) ** 0.5)
    assert swr.updates == 1


def _check_chain(model: nn.Module, layers: list[nn.Module], lams: list[float], x: torch.Tensor):
    """Reference SWR step for a chain without normalisation layers, computed by hand."""
    init = [_fro(m.weight) for m in layers]
    swr = SWR(model, lam=lams[0], head_lam=lams[-1])
    _drift(model)
    old_w = [m.weight.detach().clone() for m in layers]
    old_b = [m.bias.detach().clone() for m in layers]
    with torch.no_grad():
        old_out = model(x)
    swr.after_step()
    product = 1.0
    for m, n0, w, b, lam in zip(layers, init, old_w, old_b, lams):
        c = lam * n0 / _fro(w) + (1.0 - lam)
        product *= c
        torch.testing.assert_close(m.weight, c * w, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(m.bias, product * b, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(model(x), product * old_out, rtol=1e-10, atol=1e-10)
    assert swr.metrics()["swr_scale"] == pytest.approx(product, rel=1e-12)
    assert product < 0.95  # the drift made the weights larger: the test exercises real scaling


def test_relu_mlp_matches_reference_and_output_scales():
    model = nn.Sequential(
        nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2)
    ).double()
    layers = [model[0], model[2], model[4]]
    # head = last Linear by default, so it gets head_lam
    _check_chain(model, layers, [0.3, 0.3, 0.6], torch.randn(7, 3, dtype=torch.double))


def test_small_cnn_matches_reference_and_output_scales():
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 2 * 2, 5),
    ).double()
    layers = [model[0], model[2], model[5]]
    _check_chain(model, layers, [0.2, 0.2, 0.2], torch.randn(6, 2, 7, 7, dtype=torch.double))


def test_product_restarts_after_layernorm():
    model = nn.Sequential(
        nn.Linear(3, 6), nn.ReLU(), nn.LayerNorm(6, eps=1e-30), nn.Linear(6, 2)
    ).double()
    lin1, ln, lin2 = model[0], model[2], model[3]
    init = [_fro(lin1.weight), _fro(ln.weight), _fro(lin2.weight)]
    assert init[1] == pytest.approx(6**0.5)  # gamma starts at ones
    lam = 0.4
    swr = SWR(model, lam=lam)
    _drift(model)
    old = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(5, 3, dtype=torch.double)
    with torch.no_grad():
        old_out = model(x)
    swr.after_step()
    c1 = lam * init[0] / _fro(old["0.weight"]) + 1 - lam
    c_ln = lam * init[1] / _fro(old["2.weight"]) + 1 - lam
    c2 = lam * init[2] / _fro(old["3.weight"]) + 1 - lam
    torch.testing.assert_close(lin1.weight, c1 * old["0.weight"])
    torch.testing.assert_close(lin1.bias, c1 * old["0.bias"])
    torch.testing.assert_close(ln.weight, c_ln * old["2.weight"])
    torch.testing.assert_close(ln.bias, c_ln * old["2.bias"])  # restarted: not c1 * c_ln
    torch.testing.assert_close(lin2.weight, c2 * old["3.weight"])
    torch.testing.assert_close(lin2.bias, c_ln * c2 * old["3.bias"])
    with torch.no_grad():
        torch.testing.assert_close(model(x), c_ln * c2 * old_out, rtol=1e-9, atol=1e-9)
    assert abs(c1 - 1) > 0.05 and abs(c_ln * c2 - c1 * c_ln * c2) > 0.01


def test_lam_one_restores_initial_norms():
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 3 * 3, 4), nn.LayerNorm(4),
        nn.ReLU(), nn.Linear(4, 3),
    ).double()
    weighted = [m for m in model if getattr(m, "weight", None) is not None]
    init = [_fro(m.weight) for m in weighted]
    swr = SWR(model, lam=1.0)
    _drift(model)
    assert all(abs(_fro(m.weight) - n0) > 1e-3 for m, n0 in zip(weighted, init))
    swr.after_step()
    for m, n0 in zip(weighted, init):
        assert _fro(m.weight) == pytest.approx(n0, rel=1e-12)


def test_named_head_gets_head_lam():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
            self.head = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.encoder(x))

    model = Net().double()
    layers = [model.encoder[0], model.head[0], model.head[2]]
    init = [_fro(m.weight) for m in layers]
    swr = SWR(model, lam=0.1, head_lam=0.9, head="head")
    _drift(model)
    old = [_fro(m.weight) for m in layers]
    swr.after_step()
    for m, n0, n, lam in zip(layers, init, old, [0.1, 0.9, 0.9]):
        assert _fro(m.weight) == pytest.approx((lam * n0 / n + 1 - lam) * n, rel=1e-12)
    # the module object works too
    SWR(model, head=model.head)


def test_every_n_steps():
    model = nn.Sequential(nn.Linear(3, 3))
    swr = SWR(model, lam=1.0, every=3)
    with torch.no_grad():
        model[0].weight.mul_(2)
    before = model[0].weight.detach().clone()
    swr.after_step()
    swr.after_step()
    torch.testing.assert_close(model[0].weight, before)
    swr.after_step()
    torch.testing.assert_close(model[0].weight, before / 2)


def test_state_dict_restores_initial_norms():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    init = [_fro(model[0].weight), _fro(model[2].weight)]
    swr = SWR(model, lam=1.0)
    swr.after_step()
    state = swr.state_dict()
    _drift(model)
    fresh = SWR(model, lam=1.0)  # would record the drifted norms as "initial"
    fresh.load_state_dict(state)
    assert fresh.updates == 1
    fresh.after_step()
    assert _fro(model[0].weight) == pytest.approx(init[0], rel=1e-12)
    assert _fro(model[2].weight) == pytest.approx(init[1], rel=1e-12)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lam": 2.0}, "swr: lam must be in (0, 1], got 2.0"),
        ({"lam": 0.0}, "swr: lam must be in (0, 1], got 0.0"),
        ({"lam": -1e-3}, "swr: lam must be in (0, 1], got -0.001"),
        ({"head_lam": 1.5}, "swr: head_lam must be in (0, 1], got 1.5"),
        ({"every": 0}, "swr: every must be an integer >= 1, got 0"),
        ({"head": "nope"}, "swr: head 'nope' is not a submodule of Sequential"),
    ],
)
def test_bad_parameters_raise(kwargs, message):
    model = nn.Sequential(nn.Linear(3, 3))
    with pytest.raises(ValueError) as err:
        SWR(model, **kwargs)
    assert str(err.value) == message


def test_frozen_layers_are_left_alone():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    n0 = _fro(model[0].weight)
    swr = SWR(model, lam=1.0)
    _drift(model)
    model[2].requires_grad_(False)
    frozen = [p.detach().clone() for p in model[2].parameters()]
    swr.after_step()
    assert all(torch.equal(p, q) for p, q in zip(model[2].parameters(), frozen))
    assert _fro(model[0].weight) == pytest.approx(n0, rel=1e-12)  # the trainable one is rescaled


def test_chain_mode_rescales_in_registration_order_restarts_at_norms_and_gives_head_lam_to_the_last_layer():
    model = nn.Sequential(
        nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.LayerNorm(4), nn.ReLU(), nn.Linear(4, 2)
    ).double()
    lin1, lin2, ln, lin3 = model[0], model[2], model[3], model[5]
    init = [_fro(m.weight) for m in (lin1, lin2, ln, lin3)]
    swr = SWR(model, lam=0.3, head_lam=0.7, chain=True)
    assert [layer.lam for layer in swr.layers] == [0.3, 0.3, 0.3, 0.7]
    assert [layer.src for layer in swr.layers] == [None, 0, 1, 2]
    assert [layer.name for layer in swr.layers] == ["0", "2", "3", "5"] and swr.module is model
    _drift(model)
    old = {k: v.clone() for k, v in model.state_dict().items()}
    swr.after_step()
    c = [lam * n0 / _fro(old[f"{i}.weight"]) + 1 - lam
         for i, n0, lam in zip((0, 2, 3, 5), init, (0.3, 0.3, 0.3, 0.7))]
    torch.testing.assert_close(lin1.bias, c[0] * old["0.bias"])
    torch.testing.assert_close(lin2.bias, c[0] * c[1] * old["2.bias"])
    torch.testing.assert_close(ln.weight, c[2] * old["3.weight"])
    torch.testing.assert_close(ln.bias, c[2] * old["3.bias"])  # the product restarts at the norm
    torch.testing.assert_close(lin3.weight, c[3] * old["5.weight"])
    torch.testing.assert_close(lin3.bias, c[2] * c[3] * old["5.bias"])
    assert swr.metrics()["swr_scale"] == pytest.approx(c[2] * c[3])


def test_metrics_before_the_first_rescale_and_layers_without_bias():
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 1)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 4.0]]))  # norm 5
        model[2].weight.copy_(torch.tensor([[0.0, 12.0]]))  # norm 12
        model[2].bias.fill_(2.0)
    swr = SWR(model, lam=0.5)
    assert swr.metrics() == {"swr_weight_norm": pytest.approx(13.0)}  # no scale before a rescale
    with torch.no_grad():
        model[0].weight.mul_(2.0)  # c0 = 0.5 * 5 / 10 + 0.5 = 0.75
    swr.rescale()  # layer 2 unchanged: c2 = 1
    torch.testing.assert_close(model[2].bias, torch.tensor([2.0 * 0.75], dtype=torch.double))
    assert swr.metrics()["swr_scale"] == pytest.approx(0.75)
    assert swr.updates == 0  # rescale() is not an update


def test_a_zero_weight_is_left_alone_and_its_product_is_one():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1)).double()
    swr = SWR(model, lam=0.5)
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.fill_(3.0)
        model[2].weight.copy_(2.0 * model[2].weight)
    b2 = model[2].bias.detach().clone()
    swr.rescale()
    assert model[0].weight.eq(0).all() and model[0].bias.eq(3.0).all()  # c = 1, not inf/nan
    torch.testing.assert_close(model[2].bias, 0.75 * b2)  # c2 = 0.5 * n / 2n + 0.5


def test_initial_norms_follow_the_module_to_another_dtype():
    model = nn.Sequential(nn.Linear(3, 3))
    n0 = _fro(model[0].weight)
    swr = SWR(model, lam=1.0)
    model.double()
    with torch.no_grad():
        model[0].weight.mul_(3.0)
    swr.rescale()
    assert model[0].weight.dtype == torch.float64
    assert swr.layers[0].scaled_init.dtype == torch.float64
    assert _fro(model[0].weight) == pytest.approx(n0, rel=1e-6)


def test_a_norm_called_twice_is_rescaled_once_and_its_second_call_feeds_its_product_on():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.ln, self.fc2 = nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 4)
            self.fc3 = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc3(self.ln(self.fc2(torch.relu(self.ln(self.fc1(x))))))

    model = Twice().double()
    swr = SWR(model, lam=0.5)
    assert [layer.name for layer in swr.layers] == ["fc1", "ln", "fc2", "fc3"]
    assert [layer.src for layer in swr.layers] == [None, 0, 1, 1]  # fc3 reads the second call of ln
    with torch.no_grad():
        model.ln.weight.mul_(2.0)  # c = 0.5 * sqrt4 / (2 sqrt4) + 0.5 = 0.75, once
        model.fc3.weight.mul_(2.0)  # c3 = 0.75 as well
    b3 = model.fc3.bias.detach().clone()
    swr.rescale()
    torch.testing.assert_close(model.ln.weight, torch.full((4,), 1.5, dtype=torch.double))
    torch.testing.assert_close(model.fc3.bias, 0.75 * 0.75 * b3)


def test_norms_without_affine_parameters_pass_the_product_on_and_checkpoint_as_none():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4, elementwise_affine=False), nn.ReLU(),
                          nn.Linear(4, 2)).double()
    swr = SWR(model, lam=0.5)
    assert [layer.restart for layer in swr.layers] == [False, True, False]
    state = swr.state_dict()
    assert state["init_norms"][1] is None and state["init_norms"][0] == pytest.approx(_fro(model[0].weight))
    fresh = SWR(model, lam=0.5)
    fresh.load_state_dict({"init_norms": [None, None, 2.0]})  # None keeps the recorded norm
    assert float(fresh.layers[0].init_norm) == pytest.approx(_fro(model[0].weight))
    assert fresh.layers[1].init_norm is None and float(fresh.layers[2].init_norm) == 2.0
    assert fresh.layers[2].init_norm.dtype == torch.float64


def test_untraceable_network_refusal_names_swr_and_the_chain_option():
    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(-x if x.sum() > 0 else x)

    with pytest.raises(ValueError) as err:
        SWR(DataDependent())
    msg = str(err.value)
    assert msg.startswith("swr: cannot read the structure of DataDependent from its forward pass with torch.fx (")
    assert msg.endswith("; pass the structure explicitly (chain=True rescales in registration order as one chain)")
    with pytest.raises(ValueError) as err:
        SWR(nn.Sequential(nn.LayerNorm(3)), chain=True)
    assert str(err.value) == "swr: module Sequential has no Linear/Conv layer"


def test_state_dict_of_another_module_is_refused_and_an_old_state_keeps_the_norms():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    swr = SWR(model, lam=1.0)
    n0 = [float(layer.init_norm) for layer in swr.layers]
    assert swr.state_dict() == {"updates": 0, "init_norms": n0}
    other = SWR(nn.Sequential(nn.Linear(3, 2)), lam=1.0)
    with pytest.raises(ValueError) as err:
        other.load_state_dict(swr.state_dict())
    assert str(err.value) == "swr: checkpoint has 2 layers, this module has 1"
    swr.load_state_dict({"updates": 4})  # a state without init_norms keeps the recorded ones
    assert swr.updates == 4 and [float(layer.init_norm) for layer in swr.layers] == n0


def test_bad_heads_are_refused_in_one_line():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 1))
    cases = [
        ({"head": nn.Linear(3, 1)}, "swr: head Linear is not a submodule of the module"),
        ({"head": 3}, "swr: head must be a submodule, a dotted name or None, got 3"),
        ({"head": "1"}, "swr: head '1' contains no Linear/Conv/normalisation layer"),
        ({"head": model[1]}, "swr: head ReLU() contains no Linear/Conv/normalisation layer"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError) as err:
            SWR(model, **kwargs)
        assert str(err.value) == message, kwargs
    with pytest.raises(ValueError) as err:
        SWR(nn.Sequential(nn.ReLU(), nn.LayerNorm(3)))
    assert str(err.value) == "swr: module Sequential has no Linear/Conv layer"
    for bad in (True, 1.5):
        with pytest.raises(ValueError, match="swr: every must be an integer >= 1"):
            SWR(model, every=bad)
    for bad in (True, "0.1"):
        with pytest.raises(ValueError, match="swr: lam must be in"):
            SWR(model, lam=bad)
    assert SWR(model, lam=1).lam == 1.0 and type(SWR(model, lam=1).lam) is float


def test_a_frozen_layer_passes_its_input_product_on_and_later_layers_are_still_rescaled():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1)).double()
    swr = SWR(model, lam=0.5)
    with torch.no_grad():
        for i in (0, 2, 4):
            model[i].weight.mul_(2.0)  # c = 0.5 * n / 2n + 0.5 = 0.75 for every trainable layer
    model[2].requires_grad_(False)
    b2, b4, w4 = model[2].bias.detach().clone(), model[4].bias.detach().clone(), model[4].weight.detach().clone()
    swr.rescale()
    torch.testing.assert_close(model[2].bias, b2)  # frozen: untouched
    torch.testing.assert_close(model[4].weight, 0.75 * w4)
    torch.testing.assert_close(model[4].bias, 0.75 * 0.75 * b4)  # c0 (through the frozen layer) * c4
    assert [None if p is None else float(p) for p in swr.products] == [0.75, 0.75, pytest.approx(0.5625)]


def test_weight_norm_metric_counts_linear_and_conv_weights_only():
    model = nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2), nn.Linear(2, 1)).double()
    swr = SWR(model, lam=0.5)
    with torch.no_grad():
        model[1].weight.fill_(10.0)
    want = (_fro(model[0].weight) ** 2 + _fro(model[2].weight) ** 2) ** 0.5
    assert swr.metrics()["swr_weight_norm"] == pytest.approx(want)
