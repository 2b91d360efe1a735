from __future__ import annotations

import pytest
import torch
from torch import nn

import plasticity as pl
from plasticity.l2 import L2, L2Init


def _model() -> nn.Module:
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 0.5]]))
        model.bias.copy_(torch.tensor([2.0, -1.0]))
    return model


def test_l2_value_and_gradient():
    model = _model()
    reg = L2(model, coef=0.1)
    value = reg.loss()
    # 0.1/2 * (1 + 4 + 9 + 0.25 + 4 + 1) = 0.05 * 19.25
    assert value.item() == pytest.approx(0.9625)
    value.backward()
    # d/dtheta coef/2 * theta^2 = coef * theta
    torch.testing.assert_close(model.weight.grad, torch.tensor([[0.1, -0.2], [0.3, 0.05]]))
    torch.testing.assert_close(model.bias.grad, torch.tensor([0.2, -0.1]))
    assert reg.metrics()["l2_param_norm"] == pytest.approx(19.25**0.5)


def test_l2_weights_only_skips_biases():
    model = _model()
    reg = L2(model, coef=0.1, weights_only=True)
    assert reg.loss().item() == pytest.approx(0.05 * 14.25)
    reg.loss().backward()
    assert model.bias.grad is None


def test_l2init_value_gradient_and_zero_at_init():
    model = _model()
    reg = L2Init(model, lam=0.25)  # lam * ||theta - theta_0||^2, the paper's lambda
    assert reg.loss().item() == 0.0
    with torch.no_grad():
        model.weight.add_(torch.tensor([[1.0, 0.0], [0.0, -2.0]]))
        model.bias.add_(torch.tensor([0.0, 3.0]))
    value = reg.loss()
    assert value.item() == pytest.approx(0.25 * (1 + 4 + 9))
    value.backward()
    torch.testing.assert_close(model.weight.grad, torch.tensor([[0.5, 0.0], [0.0, -1.0]]))
    torch.testing.assert_close(model.bias.grad, torch.tensor([0.0, 1.5]))
    assert reg.metrics()["l2init_distance"] == pytest.approx(14**0.5)
    # theta_0 is a copy, not a view and not a parameter
    assert not any(t is p for t in reg.init for p in model.parameters())
    assert len(list(model.parameters())) == 2


def test_l2init_state_dict_keeps_initial_point():
    model = _model()
    reg = L2Init(model, lam=0.5)
    state = reg.state_dict()
    with torch.no_grad():
        model.bias.add_(1.0)
    fresh = L2Init(model, lam=0.5)  # would take the moved parameters as theta_0
    assert fresh.loss().item() == 0.0
    fresh.load_state_dict(state)
    assert fresh.loss().item() == pytest.approx(0.5 * 2)


def test_exports_and_bad_coef():
    assert pl.L2 is L2 and pl.L2Init is L2Init
    with pytest.raises(ValueError) as err:
        L2(_model(), coef=-1.0)
    assert str(err.value) == "l2: coef must be >= 0, got -1.0"
    with pytest.raises(ValueError) as err:
        L2Init(_model(), lam=float("nan"))
    assert str(err.value) == "l2init: lam must be >= 0, got nan"


def test_l2init_is_the_papers_lambda_and_refuses_the_old_coef():
    model = _model()
    reg = L2Init(model, lam=1e-2)
    with torch.no_grad():
        model.weight.add_(3.0)  # ||theta - theta_0||^2 = 4 * 9 = 36
    assert reg.loss().item() == pytest.approx(1e-2 * 36)
    with pytest.raises(TypeError):
        L2Init(model, coef=1e-2)
    from plasticity import registry
    with pytest.raises(ValueError, match="unknown parameter 'coef' for l2init"):
        registry.parse("l2init:coef=1e-2")


def test_defaults_zero_coefficients_and_refused_values():
    model = _model()
    assert L2(model).coef == 1e-4 and L2(model).factor == pytest.approx(0.5e-4)
    assert L2Init(model).lam == 1e-3
    assert L2(model, coef=0).loss().item() == 0.0 and L2Init(model, lam=0).loss().item() == 0.0
    for bad in (True, "1", -1.0):
        with pytest.raises(ValueError) as err:
            L2(model, coef=bad)
        assert str(err.value) == f"l2: coef must be >= 0, got {bad!r}"
        with pytest.raises(ValueError) as err:
            L2Init(model, lam=bad)
        assert str(err.value) == f"l2init: lam must be >= 0, got {bad!r}"


def test_nothing_to_regularise_is_refused_by_name():
    with pytest.raises(ValueError) as err:
        L2(nn.ReLU())
    assert str(err.value) == "l2: module ReLU has no parameter to regularise"
    with pytest.raises(ValueError) as err:
        L2Init(nn.LayerNorm(3), weights_only=True)  # gain and shift are 1-d
    assert str(err.value) == "l2init: module LayerNorm has no parameter to regularise"


def test_l2init_weights_only_and_its_checkpoint():
    model = _model()
    reg = L2Init(model, lam=0.5, weights_only=True)
    assert reg.params == [model.weight] and len(reg.init) == 1
    with torch.no_grad():
        model.weight.add_(1.0)
        model.bias.add_(5.0)  # not regularised
    assert reg.loss().item() == pytest.approx(0.5 * 4)
    state = reg.state_dict()
    assert list(state) == ["updates", "init"] and state["updates"] == 0
    full = L2Init(_model(), lam=0.5)
    for bad in ({"init": state["init"]}, {"init": [torch.zeros(2, 2), torch.zeros(3)]}):
        with pytest.raises(ValueError) as err:
            full.load_state_dict(bad)  # one tensor short / a wrong shape
        assert str(err.value) == "l2init: checkpoint's initial parameters do not match this module"
