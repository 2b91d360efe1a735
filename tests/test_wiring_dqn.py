"""DQN wiring checked by value: importance weights that do not sum to the batch size, the
gradient-norm clip with a small `max_grad_norm`, and ε-greedy's measured explore rate."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from agents.dqn import DQN, DQNConfig


def huber(x: float) -> float:
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


def linear_dqn(**overrides) -> DQN:
    """Q(s) = W s + b with W = [[1, 0], [0, 1]], b = 0: Q(s, a) = s_a."""
    cfg = DQNConfig(**{"hidden": (), "lr": 0.1, "max_grad_norm": 0.0, "learning_starts": 0, **overrides})
    agent = DQN(cfg, obs_shape=(2,), num_actions=2, action_masks=torch.ones(1, 2, dtype=torch.bool))
    with torch.no_grad():
        for net in (agent.q, agent.q_target):
            net.head.weight.copy_(torch.eye(2))
            net.head.bias.zero_()
    return agent


def weighted_batch():
    # discount 0: the target is the reward alone; Q(s, a) = s_a
    return SimpleNamespace(
        obs=torch.tensor([[0.5, -1.0], [2.0, 0.0], [0.0, 3.0], [1.0, 1.0]]),
        actions=torch.tensor([0, 0, 1, 1]),
        rewards=torch.tensor([0.0, -0.5, 0.5, 1.25]),
        next_obs=torch.zeros(4, 2), discounts=torch.zeros(4),
        weights=torch.tensor([2.0, 0.0, 0.5, 0.25]),  # sums to 2.75, not 4
        tasks=torch.zeros(4, dtype=torch.long), indices=torch.arange(4),
    )


def test_loss_is_the_weighted_huber_sum_over_the_batch_size_not_over_the_weights():
    agent = linear_dqn()
    b = weighted_batch()
    td = [0.5 - 0.0, 2.0 + 0.5, 3.0 - 0.5, 1.0 - 1.25]  # q − y: two inside, two outside the quadratic zone
    w = b.weights.tolist()
    expected = sum(wi * huber(t) for wi, t in zip(w, td)) / 4
    m = agent.update(b)
    assert m["td_loss"].item() == pytest.approx(expected, rel=1e-6)
    assert sum(w) != 4 and m["td_loss"].item() != pytest.approx(expected * 4 / sum(w), rel=1e-3)
    assert m["td_abs"].tolist() == pytest.approx([abs(t) for t in td])
    # its gradient too: ∂L/∂b_a = Σ_{i: a_i = a} w_i · huber'(td_i) / B, huber' = clamp(td, −1, 1)
    grad_b = [(2.0 * 0.5 + 0.0 * 1.0) / 4, (0.5 * 1.0 + 0.25 * -0.25) / 4]
    assert agent.q.head.bias.grad.tolist() == pytest.approx(grad_b, rel=1e-6)


@pytest.mark.parametrize("max_norm", [0.05, 0.2])
def test_small_max_grad_norm_clips_the_global_gradient_norm(max_norm):
    agent = linear_dqn(max_grad_norm=max_norm)
    twin = copy.deepcopy(agent)
    b = weighted_batch()
    loss, _, _ = twin._loss(b.obs, b.actions, b.rewards, b.next_obs, b.discounts, b.weights,
                            twin.action_masks[b.tasks])
    loss.backward()
    raw = torch.cat([p.grad.flatten() for p in twin.q.parameters()])
    assert raw.norm().item() > 0.5  # above both limits
    agent.update(b)
    clipped = torch.cat([p.grad.flatten() for p in agent.q.parameters()])
    assert clipped.norm().item() == pytest.approx(max_norm, rel=1e-5)
    assert torch.allclose(clipped, raw * (max_norm / raw.norm()), atol=1e-7)


def test_no_clip_when_the_norm_is_below_max_grad_norm():
    agent = linear_dqn(max_grad_norm=100.0)
    twin = linear_dqn(max_grad_norm=0.0)
    b = weighted_batch()
    agent.update(b)
    twin.update(b)
    for p, q in zip(agent.q.parameters(), twin.q.parameters()):
        assert torch.equal(p.grad, q.grad)


@pytest.mark.parametrize("epsilon", [0.1, 0.9])
def test_act_explores_at_rate_epsilon(epsilon):
    # ε-greedy over 2 valid actions: a non-greedy action with probability ε/2
    agent = linear_dqn(epsilon_start=epsilon, epsilon_end=epsilon, learning_starts=10)
    n = 20_000
    obs = torch.tensor([[1.0, 0.0]]).expand(n, 2)  # greedy action 0
    assert agent.greedy(obs[:1], 0).item() == 0
    actions = agent.act(obs, 0, step=10)
    rate = (actions != 0).float().mean().item()
    assert rate == pytest.approx(epsilon / 2, abs=0.015)  # 4+ standard errors of the binomial
    # before learning_starts: uniform over the valid actions whatever ε
    early = (agent.act(obs, 0, step=9) != 0).float().mean().item()
    assert early == pytest.approx(0.5, abs=0.02)
