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


def test_critic_step_by_hand_takes_the_twin_minimum_per_sample():
    """The soft target y = r + γ_n (min(Q1', Q2')(s', ã') − α log π(ã'|s')) with the minimum taken
    sample by sample, on real (not constant) networks; every returned metric by name and value."""
    alpha = 0.3
    agent = SAC(SACConfig(hidden=(8,), batch_size=B, alpha_init=alpha, policy_frequency=2), (OBS,), ACT, seed=6)
    batch = tiny_batch(seed=2)
    batch.weights = torch.tensor([1.0, 0.5, 2.0, 0.25])
    actor0, critic0, target0 = (copy.deepcopy(m) for m in (agent.actor, agent.critic, agent.critic_target))
    eps_next, _ = noise_draws(agent, B)
    with torch.no_grad():
        mean, log_std = actor0(batch.next_obs)
        u = mean + log_std.exp() * eps_next
        log_prob = (Normal(mean, log_std.exp()).log_prob(u) - torch.log(1 - torch.tanh(u) ** 2)).sum(-1)
        q1n, q2n = target0(batch.next_obs, torch.tanh(u))
        # the networks disagree on which twin is lower, so a batch-wide minimum would differ
        assert (q1n < q2n).any() and (q2n < q1n).any()
        y = batch.rewards + batch.discounts * (torch.where(q1n < q2n, q1n, q2n) - alpha * log_prob)
    q1, q2 = critic0(batch.obs, batch.actions)
    qf1 = (batch.weights * (q1 - y) ** 2).mean()
    qf2 = (batch.weights * (q2 - y) ** 2).mean()
    expected = torch.autograd.grad(qf1 + qf2, list(critic0.parameters()))
    m = agent.update(batch)
    for p, e in zip(agent.critic.parameters(), expected):
        assert torch.allclose(p.grad, e, rtol=1e-5, atol=1e-7)
    assert set(m) == {"qf1_loss", "qf2_loss", "q_values", "alpha", "td_abs", "actor_loss", "alpha_loss", "entropy"}
    assert m["qf1_loss"].item() == pytest.approx(qf1.item(), rel=1e-5)
    assert m["qf2_loss"].item() == pytest.approx(qf2.item(), rel=1e-5)
    assert m["q_values"].item() == pytest.approx(q1.mean().item(), rel=1e-5)
    assert torch.allclose(m["td_abs"], 0.5 * ((q1 - y).abs() + (q2 - y).abs()).detach(), rtol=1e-5)
    assert m["actor_loss"].item() != 0.0  # the actor stepped on critic step 0
    # `updates` counts critic steps (it is checkpointed and seeds the monitoring noise)
    assert agent.updates == 1
    agent.update(batch)  # critic step 1: the actor is skipped, its last metrics are returned again
    assert agent.updates == 2 and agent.state_dict()["updates"] == 2


def test_network_options_reach_the_actor_and_both_critics():
    from torch import nn

    from agents.sac import GaussianPolicy, QNetworkSA, TwinQ

    widths = lambda m: [(l.in_features, l.out_features) for l in m.modules() if isinstance(l, nn.Linear)]  # noqa: E731
    pi = GaussianPolicy(3, 2, hidden=(5, 4), activation="tanh", norm="layer")
    assert widths(pi) == [(3, 5), (5, 4), (4, 2), (4, 2)]
    assert sum(isinstance(m, nn.Tanh) for m in pi.modules()) == 2
    assert sum(isinstance(m, nn.LayerNorm) for m in pi.modules()) == 2
    q = QNetworkSA(3, 2, hidden=(6,), activation="gelu", norm="layer")
    assert widths(q) == [(5, 6), (6, 1)]
    assert any(isinstance(m, nn.GELU) for m in q.modules()) and any(isinstance(m, nn.LayerNorm) for m in q.modules())
    twin = TwinQ(3, 2, hidden=(7,), activation="leaky_relu", norm="layer")
    for net in (twin.q1, twin.q2):
        assert widths(net) == [(5, 7), (7, 1)]
        assert any(isinstance(m, nn.LeakyReLU) for m in net.modules())
        assert any(isinstance(m, nn.LayerNorm) for m in net.modules())
    assert not torch.equal(twin.q1[0][1].weight, twin.q2[0][1].weight)  # independent initialisations
    assert widths(GaussianPolicy(3, 2)) == [(3, 256), (256, 256), (256, 2), (256, 2)]


def test_default_networks_are_relu_mlps_of_256_units():
    from torch import nn

    from agents.sac import GaussianPolicy, QNetworkSA, TwinQ

    for net in (GaussianPolicy(3, 2), QNetworkSA(3, 2), TwinQ(3, 2)):
        relus = sum(isinstance(m, nn.ReLU) for m in net.modules())
        linears = [m.out_features for m in net.modules() if isinstance(m, nn.Linear)]
        assert relus == (4 if isinstance(net, TwinQ) else 2), type(net).__name__
        assert linears.count(256) == relus and not any(isinstance(m, nn.LayerNorm) for m in net.modules())


def test_build_gives_a_seeded_sac_for_continuous_tasks_and_refuses_discrete_ones():
    from agents.sac import build

    schedule = SimpleNamespace(discrete=False, obs_shape=(OBS,), action_dim=ACT)
    cfg = SACConfig(hidden=(8,))
    a, b = (build(cfg, schedule, torch.device("cpu"), seed=9) for _ in range(2))
    c = build(cfg, schedule, torch.device("cpu"), seed=10)
    assert a.action_dim == ACT and a.actor.mean.out_features == ACT
    assert torch.equal(a.actor.mean.weight, b.actor.mean.weight)
    assert torch.equal(a.generator.get_state(), b.generator.get_state())
    assert not torch.equal(a.generator.get_state(), c.generator.get_state())
    discrete = SimpleNamespace(discrete=True, tasks=[SimpleNamespace(id="CartPole-v1"), SimpleNamespace(id="x")])
    with pytest.raises(ValueError) as err:
        build(cfg, discrete, torch.device("cpu"), seed=0)
    assert str(err.value) == "--agent sac needs continuous actions; CartPole-v1 is discrete: use --agent dqn"


def test_compiled_gradients_are_wired_to_their_networks_and_objectives():
    """With --sac.compile each loss' CompiledGrad differentiates its own network, reads the others
    the loss calls as inputs (so their updates are seen), and traces the agent's objective;
    without it there is none."""
    agent = SAC(SACConfig(hidden=(8,), compile=True), (OBS,), ACT, seed=1)
    critic, actor = agent._critic_grad, agent._actor_grad
    assert critic.watch == [agent.critic, agent.actor, agent.critic_target]
    assert actor.watch == [agent.actor, agent.critic]
    assert critic._objective.fn == agent._critic_objective and actor._objective.fn == agent._actor_objective
    assert critic.compile and actor.compile
    plain = SAC(SACConfig(hidden=(8,)), (OBS,), ACT, seed=1)
    assert plain._critic_grad is None and plain._actor_grad is None
