"""SAC wiring checked by value: the actor's gradient, entropy term included, against a hand
computation on a tiny batch; the per-network gradient-norm clip."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from torch.distributions import Normal

from agents.sac import SAC, SACConfig

OBS, ACT, B = 3, 2, 4


def tiny_batch(seed: int = 1) -> SimpleNamespace:
    g = torch.Generator().manual_seed(seed)
    return SimpleNamespace(
        obs=torch.randn(B, OBS, generator=g), actions=torch.rand(B, ACT, generator=g) * 2 - 1,
        rewards=torch.randn(B, generator=g), next_obs=torch.randn(B, OBS, generator=g),
        discounts=torch.full((B,), 0.99), weights=torch.ones(B), indices=torch.arange(B),
        tasks=torch.zeros(B, dtype=torch.long))


def hand_actor_loss(actor, critic, obs, eps, alpha, entropy=True):
    """mean_i [α log π(ã_i|s_i) − min(Q1, Q2)(s_i, ã_i)], ã = tanh(μ + σε), with log π from
    torch.distributions.Normal and the naive tanh change of variables log(1 − tanh(u)²)."""
    mean, log_std = actor(obs)
    std = log_std.exp()
    u = mean + std * eps
    log_prob = (Normal(mean, std).log_prob(u) - torch.log(1 - torch.tanh(u) ** 2)).sum(-1)
    q1, q2 = critic(obs, torch.tanh(u))
    return ((alpha * log_prob if entropy else 0.0) - torch.min(q1, q2)).mean()


def noise_draws(agent: SAC, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The critic's and then the actor's noise of the agent's next update."""
    gen = torch.Generator().manual_seed(0)
    gen.set_state(agent.generator.get_state())
    return torch.randn(n, ACT, generator=gen), torch.randn(n, ACT, generator=gen)


def test_actor_gradient_with_entropy_term_by_hand():
    alpha = 0.7
    agent = SAC(SACConfig(hidden=(8,), batch_size=B, alpha_init=alpha), (OBS,), ACT, seed=3)
    batch = tiny_batch()
    actor0 = copy.deepcopy(agent.actor)  # the actor as the update sees it
    _, eps = noise_draws(agent, B)
    agent.update(batch)
    # the actor's loss is taken after the critic's step: agent.critic is that critic
    params = list(actor0.parameters())
    expected = torch.autograd.grad(hand_actor_loss(actor0, agent.critic, batch.obs, eps, alpha), params)
    without_entropy = torch.autograd.grad(
        hand_actor_loss(actor0, agent.critic, batch.obs, eps, alpha, entropy=False), params)
    got = [p.grad for p in agent.actor.parameters()]
    for g, e, w in zip(got, expected, without_entropy):
        assert torch.allclose(g, e, rtol=1e-4, atol=1e-6)
    # the entropy term moves the gradient well beyond the tolerance (the check can tell)
    assert max((e - w).abs().max().item() for e, w in zip(expected, without_entropy)) > 1e-2


@pytest.mark.parametrize("max_norm", [0.01, 0.05])
def test_small_max_grad_norm_clips_each_network(max_norm):
    cfg = dict(hidden=(8,), batch_size=B)
    agent = SAC(SACConfig(max_grad_norm=max_norm, **cfg), (OBS,), ACT, seed=3)
    free = SAC(SACConfig(**cfg), (OBS,), ACT, seed=3)
    batch = tiny_batch()
    agent.update(batch)
    free.update(batch)
    for name in ("actor", "critic"):
        raw = torch.cat([p.grad.flatten() for p in free.learnables[name].module.parameters() if p.grad is not None])
        clipped = torch.cat([p.grad.flatten() for p in agent.learnables[name].module.parameters()
                             if p.grad is not None])
        assert raw.norm().item() > 4 * max_norm, name
        assert clipped.norm().item() == pytest.approx(max_norm, rel=1e-4), name
        if name == "critic":  # the critic's step comes first: same inputs, so the same direction
            assert torch.allclose(clipped, raw * (max_norm / raw.norm()), atol=1e-6)
