from __future__ import annotations

import pytest
import torch
from torch import nn

import plasticity as pl
from plasticity.crelu import CReLU, width_multiplier


def test_values_features():
    x = torch.tensor([[1.5, -2.0, 0.0], [-0.5, 3.0, -1.0]])
    y = CReLU()(x)
    assert y.shape == (2, 6)
    assert y.tolist() == [[1.5, 0.0, 0.0, 0.0, 2.0, 0.0], [0.0, 3.0, 0.0, 0.5, 0.0, 1.0]]


def test_channels_of_feature_map_and_last_dim():
    x = torch.randn(2, 3, 4, 5)
    y = CReLU()(x)
    assert y.shape == (2, 6, 4, 5)
    torch.testing.assert_close(y[:, :3], x.clamp(min=0))
    torch.testing.assert_close(y[:, 3:], (-x).clamp(min=0))
    z = CReLU(dim=-1)(x)
    assert z.shape == (2, 3, 4, 10)
    torch.testing.assert_close(z[..., 5:], (-x).clamp(min=0))
    # no information is lost: relu(x) - relu(-x) == x
    torch.testing.assert_close(y[:, :3] - y[:, 3:], x)


def test_gradient():
    x = torch.tensor([[2.0, -1.0]], requires_grad=True)
    v = torch.tensor([[1.0, 10.0, 100.0, 1000.0]])
    (CReLU()(x) * v).sum().backward()
    # d/dx relu(x) picks v[:2] where x > 0, d/dx relu(-x) gives -v[2:] where x < 0
    assert x.grad.tolist() == [[1.0, -1000.0]]


def test_width_multiplier_and_flags():
    assert CReLU.width_multiplier == 2 and CReLU.is_activation
    assert width_multiplier(CReLU()) == 2 and width_multiplier(nn.ReLU()) == 1
    assert pl.CReLU is CReLU
    net = nn.Sequential(nn.Linear(3, 4), CReLU(), nn.Linear(4 * CReLU.width_multiplier, 2))
    assert net(torch.randn(5, 3)).shape == (5, 2)


def test_bad_dim():
    with pytest.raises(ValueError, match="crelu: dim must be an integer, got 'x'"):
        CReLU(dim="x")
