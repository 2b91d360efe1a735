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
