"""`loss_gradients`: the gradient an agent's step takes, by hand, on both of its paths (the traced
`CompiledGrad`, here without Inductor, and eager), with an intervention's loss term added and
with the gradient restricted to some inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from agents.base import Learnable
from agents.compile import CompiledGrad
from agents.compile.gradients import loss_gradients


class Penalty:
    """An intervention whose only part is a loss term: c · Σ θ² over one layer."""

    def __init__(self, layer: nn.Linear, c: float):
        self.layer, self.c = layer, c

    def loss(self):
        return self.c * self.layer.weight.pow(2).sum()


def setup(path: str, penalty: float | None):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    ivs = [Penalty(net[0], penalty)] if penalty is not None else []
    learnable = Learnable(net, opt, [], inputs=lambda b: b, interventions=ivs)

    def objective(x, y):
        pred = net(x).squeeze(1)
        return (pred - y).pow(2).mean(), pred.detach()

    compiled = CompiledGrad(net, objective, compile=False) if path == "traced" else None
    return net, learnable, objective, compiled


def by_hand(net, x, y, penalty):
    w1, b1, w2, b2 = (p.detach().clone().requires_grad_() for p in net.parameters())
    pred = (torch.tanh(x @ w1.T + b1) @ w2.T + b2).squeeze(1)
    loss = (pred - y).pow(2).mean() + (penalty * w1.pow(2).sum() if penalty is not None else 0.0)
    return torch.autograd.grad(loss, [w1, b1, w2, b2]), pred.detach()


@pytest.mark.parametrize("path", ["traced", "eager"])
@pytest.mark.parametrize("penalty", [None, 0.5])
def test_gradients_are_the_objectives_plus_the_interventions_terms(path, penalty):
    net, learnable, objective, compiled = setup(path, penalty)
    x, y = torch.randn(6, 3), torch.randn(6)
    for p in net.parameters():  # stale gradients from an earlier step must not add up
        p.grad = torch.full_like(p, 100.0)
    want, pred = by_hand(net, x, y, penalty)
    aux = loss_gradients(learnable, compiled, objective, (x, y))
    assert torch.allclose(aux, pred, atol=1e-6)
    for p, g in zip(net.parameters(), want):
        assert torch.allclose(p.grad, g, atol=1e-6)


@pytest.mark.parametrize("path", ["traced", "eager"])
def test_inputs_restricts_the_interventions_gradient_and_the_eager_one(path):
    net, learnable, objective, compiled = setup(path, 0.5)
    x, y = torch.randn(6, 3), torch.randn(6)
    want, _ = by_hand(net, x, y, 0.5)
    for p in net.parameters():  # a gradient left from an earlier step
        p.grad = torch.full_like(p, 100.0)
    only = [net[2].weight, net[2].bias]
    loss_gradients(learnable, compiled, objective, (x, y), inputs=only)
    assert torch.allclose(net[2].weight.grad, want[2], atol=1e-6)
    # the first layer receives the objective's gradient on the traced path (it writes every
    # trainable parameter) and none of the penalty's; on the eager path none at all (set to
    # None, not zero: an optimizer skips a parameter without a gradient, but an Adam step
    # would still move one whose gradient is zero, by its moments)
    objective_only, _ = by_hand(net, x, y, None)
    if path == "traced":
        assert torch.allclose(net[0].weight.grad, objective_only[0], atol=1e-6)
    else:
        assert net[0].weight.grad is None
