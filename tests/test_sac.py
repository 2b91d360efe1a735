"""SAC: each formula against a hand computation on tiny tensors, plus determinism,
checkpoint round trip and a short optimisation sanity check."""

from __future__ import annotations

import copy
import io
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.distributions import Normal, TransformedDistribution
from torch.distributions.transforms import TanhTransform

from agents.sac import (LOG_STD_MAX, LOG_STD_MIN, SAC, GaussianPolicy, SACConfig, TwinQ, soft_update,
                        squashed_sample, tanh_log_det, temperature_grad, temperature_loss)
from plasticity.base import Intervention

LATE = 10**9  # a step long after learning_starts
OBS, ACT = 3, 2


def make_batch(b: int = 8, obs_dim: int = OBS, act_dim: int = ACT, seed: int = 1) -> SimpleNamespace:
    g = torch.Generator().manual_seed(seed)
    return SimpleNamespace(
        obs=torch.randn(b, obs_dim, generator=g),
        actions=torch.rand(b, act_dim, generator=g) * 2 - 1,
        rewards=torch.randn(b, generator=g),
        next_obs=torch.randn(b, obs_dim, generator=g),
        discounts=torch.full((b,), 0.99),
        weights=torch.ones(b),
        indices=torch.arange(b),
        tasks=torch.zeros(b, dtype=torch.long),
    )


def small_cfg(**kw) -> SACConfig:
    return SACConfig(hidden=(16, 16), batch_size=8, **kw)


def set_constant(linear: nn.Linear, value: float) -> None:
    """Make a linear layer output `value` whatever its input."""
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.fill_(value)


# --- formulas ---------------------------------------------------------------------------------


def test_soft_update_matches_hand_computation():
    online, target = nn.Linear(2, 1), nn.Linear(2, 1)
    with torch.no_grad():
        online.weight.copy_(torch.tensor([[1.0, -2.0]]))
        online.bias.fill_(4.0)
        target.weight.copy_(torch.tensor([[3.0, 0.0]]))
        target.bias.fill_(-4.0)
    soft_update(target, online, tau=0.1)
    # 0.1·θ + 0.9·θ'
    assert torch.allclose(target.weight, torch.tensor([[0.1 * 1 + 0.9 * 3, 0.1 * -2 + 0.9 * 0]]))
    assert torch.allclose(target.bias, torch.tensor([0.1 * 4 + 0.9 * -4]))
    assert torch.equal(online.bias, torch.tensor([4.0]))  # the online network is untouched


def test_tanh_log_det_is_log_one_minus_tanh_squared_and_stable():
    u = torch.tensor([-3.0, -0.5, 0.0, 0.7, 2.5], dtype=torch.float64)
    direct = torch.log(1 - torch.tanh(u) ** 2)
    assert torch.allclose(tanh_log_det(u), direct, atol=1e-12)
    # saturated: tanh(20) rounds to 1 in float32, so the direct form is -inf; sech²(u) = 4/(e^u + e^-u)²
    for x in (20.0, -20.0, 50.0):
        hand = 2 * math.log(2) - 2 * math.log(math.exp(x) + math.exp(-x))
        assert math.isinf(torch.log(1 - torch.tanh(torch.tensor(x)) ** 2).item())
        assert tanh_log_det(torch.tensor(x)).item() == pytest.approx(hand, rel=1e-6)


def test_squashed_log_prob_against_normal_and_tanh_transform():
    mean = torch.tensor([[0.3, -1.2], [2.0, 0.0]], dtype=torch.float64)
    log_std = torch.tensor([[-0.5, 0.4], [0.1, -2.0]], dtype=torch.float64)
    eps = torch.tensor([[1.0, -0.3], [0.5, 2.0]], dtype=torch.float64)
    a, log_prob = squashed_sample(mean, log_std, eps)
    u = mean + log_std.exp() * eps
    assert torch.allclose(a, torch.tanh(u))
    normal = Normal(mean, log_std.exp())
    hand = (normal.log_prob(u) - torch.log(1 - torch.tanh(u) ** 2)).sum(-1)
    assert torch.allclose(log_prob, hand, atol=1e-10)
    squashed = TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform()])
    assert torch.allclose(log_prob, squashed.log_prob(a).sum(-1), atol=1e-8)
    # first entry by hand: log N(u; μ, σ) = −ε²/2 − log σ − ½ log 2π
    u00, u01 = 0.3 + math.exp(-0.5) * 1.0, -1.2 + math.exp(0.4) * -0.3
    lp0 = (-0.5 - (-0.5) - 0.5 * math.log(2 * math.pi) - math.log(1 - math.tanh(u00) ** 2)
           + -0.5 * 0.09 - 0.4 - 0.5 * math.log(2 * math.pi) - math.log(1 - math.tanh(u01) ** 2))
    assert log_prob[0].item() == pytest.approx(lp0, abs=1e-10)


def test_squashed_log_prob_near_saturation_is_finite_and_exact():
    # u = 12 + 1·0 = 12 in float32: tanh(u) == 1 exactly, the naive correction is +inf
    mean, log_std, eps = torch.tensor([[12.0]]), torch.tensor([[0.0]]), torch.tensor([[0.0]])
    a, log_prob = squashed_sample(mean, log_std, eps)
    assert a.item() == 1.0
    hand = -0.5 * math.log(2 * math.pi) - (2 * math.log(2) - 2 * math.log(math.exp(12) + math.exp(-12)))
    assert log_prob.item() == pytest.approx(hand, rel=1e-6)
    # the reparameterised gradient flows: da/dμ = 1 − tanh²(u)
    mean = torch.tensor([[0.8]], requires_grad=True)
    a, _ = squashed_sample(mean, torch.tensor([[-1.0]]), torch.tensor([[0.5]]))
    a.sum().backward()
    u = 0.8 + math.exp(-1.0) * 0.5
    assert mean.grad.item() == pytest.approx(1 - math.tanh(u) ** 2, rel=1e-5)


def test_temperature_loss_and_gradient_by_hand():
    log_alpha = torch.tensor(math.log(2.0), requires_grad=True)
    log_prob = torch.tensor([-1.0, 0.5, 2.0], requires_grad=True)
    loss = temperature_loss(log_alpha, log_prob, target_entropy=-1.0)
    # −log 2 · mean(−2, −0.5, 1) = log 2 · 0.5
    assert loss.item() == pytest.approx(math.log(2.0) * 0.5)
    loss.backward()
    assert log_alpha.grad.item() == pytest.approx(0.5)  # −mean(log π + H̄)
    assert log_prob.grad is None  # log π is a constant for the temperature
    # the closed form SAC.update uses instead of a backward pass
    assert temperature_grad(log_prob, -1.0).item() == pytest.approx(log_alpha.grad.item())
    # values where a product and a quotient differ: log π + H̄ = (−2, −1)
    other = temperature_loss(torch.tensor(0.5), torch.tensor([0.0, 1.0]), target_entropy=-2.0)
    assert other.item() == pytest.approx(0.5 * 1.5)


def test_policy_clamps_log_std():
    pi = GaussianPolicy(OBS, ACT, hidden=(4,))
    set_constant(pi.log_std, 100.0)
    assert torch.equal(pi(torch.randn(5, OBS))[1], torch.full((5, ACT), LOG_STD_MAX))
    set_constant(pi.log_std, -100.0)
    assert torch.equal(pi(torch.randn(5, OBS))[1], torch.full((5, ACT), LOG_STD_MIN))


def test_twin_q_shapes_and_independence():
    q = TwinQ(OBS, ACT, hidden=(8,))
    q1, q2 = q(torch.randn(5, OBS), torch.rand(5, ACT))
    assert q1.shape == q2.shape == (5,)
    assert not torch.allclose(q1, q2)
    assert not any(p1 is p2 for p1, p2 in zip(q.q1.parameters(), q.q2.parameters()))


# --- agent ------------------------------------------------------------------------------------


def _constant_agent(alpha: float) -> SAC:
    """A = 1; actor: μ = 0.5, σ = 0.5; target Q1' = 3, Q2' = 5; online Q1 = 1, Q2 = 2."""
    agent = SAC(SACConfig(hidden=(4,), alpha_init=alpha, autotune=False), (2,), 1)
    set_constant(agent.actor.mean, 0.5)
    set_constant(agent.actor.log_std, math.log(0.5))
    set_constant(agent.critic_target.q1[-1], 3.0)
    set_constant(agent.critic_target.q2[-1], 5.0)
    set_constant(agent.critic.q1[-1], 1.0)
    set_constant(agent.critic.q2[-1], 2.0)
    return agent


def _hand_log_prob(eps: float) -> float:
    u = 0.5 + 0.5 * eps
    return -0.5 * eps**2 - math.log(0.5) - 0.5 * math.log(2 * math.pi) - math.log(1 - math.tanh(u) ** 2)


def test_critic_target_and_losses_by_hand():
    agent = _constant_agent(alpha=0.2)
    batch = SimpleNamespace(obs=torch.randn(2, 2), actions=torch.tensor([[0.1], [-0.4]]),
                            rewards=torch.tensor([1.0, 2.0]), next_obs=torch.randn(2, 2),
                            discounts=torch.tensor([0.99, 0.0]), weights=torch.tensor([1.0, 0.5]))
    v = 3.0 - 0.2 * _hand_log_prob(0.0)  # min(3, 5) − α log π, ε = 0
    y = [1.0 + 0.99 * v, 2.0]  # the second transition is terminal: no bootstrap
    qf1, qf2, q1, td_abs = agent._critic_loss(
        batch.obs, batch.actions, batch.rewards, batch.next_obs, batch.discounts, batch.weights,
        torch.tensor(0.2), torch.zeros(2, 1))
    assert qf1.item() == pytest.approx(((1 - y[0]) ** 2 + 0.5 * (1 - y[1]) ** 2) / 2, rel=1e-5)
    assert qf2.item() == pytest.approx(((2 - y[0]) ** 2 + 0.5 * (2 - y[1]) ** 2) / 2, rel=1e-5)
    assert torch.allclose(q1, torch.tensor([1.0, 1.0]))
    assert td_abs.tolist() == pytest.approx([(abs(1 - y[0]) + abs(2 - y[0])) / 2, 0.5], rel=1e-5)

    # through `update`: the critic's noise is the generator's first draw
    gen = torch.Generator().manual_seed(0)
    gen.set_state(agent.generator.get_state())
    eps = torch.randn(2, 1, generator=gen)[:, 0].tolist()
    v = [3.0 - 0.2 * _hand_log_prob(e) for e in eps]
    y = [1.0 + 0.99 * v[0], 2.0]
    m = agent.update(batch)
    assert m["qf1_loss"].item() == pytest.approx(((1 - y[0]) ** 2 + 0.5 * (1 - y[1]) ** 2) / 2, rel=1e-5)
    assert m["q_values"].item() == pytest.approx(1.0)


def test_actor_and_temperature_step_by_hand():
    cfg = small_cfg(alpha_init=0.5, lr_alpha=0.01)
    agent = SAC(cfg, (OBS,), ACT, seed=3)
    batch = make_batch()
    actor0 = copy.deepcopy(agent.actor)
    gen = torch.Generator().manual_seed(0)
    gen.set_state(agent.generator.get_state())
    torch.randn(8, ACT, generator=gen)  # the critic's draw
    eps = torch.randn(8, ACT, generator=gen)
    with torch.no_grad():  # log π by hand: a Normal's log-density and the tanh change of variables
        mean, log_std = actor0(batch.obs)
        u = mean + log_std.exp() * eps
        log_prob = (Normal(mean, log_std.exp()).log_prob(u) - torch.log(1 - torch.tanh(u) ** 2)).sum(-1)
    m = agent.update(batch)
    h = -ACT
    assert m["entropy"].item() == pytest.approx(-log_prob.mean().item(), rel=1e-5)
    assert m["alpha_loss"].item() == pytest.approx(-math.log(0.5) * (log_prob + h).mean().item(), rel=1e-5)
    # first Adam step moves log α by lr·g/(|g| + eps), g = −mean(log π + H̄)
    g = -(log_prob + h).mean().item()
    assert agent.log_alpha.item() == pytest.approx(math.log(0.5) - 0.01 * g / (abs(g) + 1e-8), rel=1e-5)
    assert m["alpha"].item() == pytest.approx(math.exp(agent.log_alpha.item()))


def test_actor_step_leaves_critic_gradients_alone():
    agent = SAC(small_cfg(), (OBS,), ACT)
    batch = make_batch()
    twin = copy.deepcopy(agent)
    agent.update(batch)
    qf1, qf2, _, _ = twin._critic_loss(batch.obs, batch.actions, batch.rewards, batch.next_obs,
                                       batch.discounts, batch.weights, twin.alpha, twin._noise(8))
    (qf1 + qf2).backward()
    for p, q in zip(agent.critic.parameters(), twin.critic.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-7)


def test_delayed_policy_and_target_updates():
    agent = SAC(small_cfg(policy_frequency=2, target_network_frequency=3, tau=0.5), (OBS,), ACT)
    batch = make_batch()

    def actor_w() -> torch.Tensor:
        return agent.actor.mean.weight.detach().clone()

    w0, t0 = actor_w(), agent.critic_target.q1[-1].weight.detach().clone()
    agent.update(batch)  # step 0: actor updated
    w1 = actor_w()
    agent.update(batch)  # step 1: actor skipped
    w2 = actor_w()
    agent.update(batch)  # step 2: actor updated; after the 3rd critic step the target moves
    assert not torch.equal(w0, w1) and torch.equal(w1, w2) and not torch.equal(w2, actor_w())
    online = agent.critic.q1[-1].weight.detach()
    assert torch.allclose(agent.critic_target.q1[-1].weight, 0.5 * online + 0.5 * t0)


def test_target_follows_polyak_each_step():
    agent = SAC(small_cfg(tau=0.005), (OBS,), ACT)
    before = [p.detach().clone() for p in agent.critic_target.parameters()]
    agent.update(make_batch())
    for t, p, b in zip(agent.critic_target.parameters(), agent.critic.parameters(), before):
        assert torch.allclose(t, 0.005 * p + 0.995 * b, atol=1e-7)


def test_fixed_alpha_when_not_autotuned():
    agent = SAC(small_cfg(autotune=False, alpha_init=0.2), (OBS,), ACT)
    for _ in range(3):
        m = agent.update(make_batch())
    assert m["alpha"].item() == pytest.approx(0.2) and m["alpha_loss"].item() == 0.0


def test_actions_in_bounds_and_deterministic_mode_is_tanh_mean():
    agent = SAC(small_cfg(), (OBS,), ACT)
    obs = torch.randn(64, OBS) * 100  # large inputs push the policy to saturation
    for a in (agent.act(obs, 0, step=LATE), agent.greedy(obs, 0)):
        assert a.shape == (64, ACT) and a.dtype == torch.float32
        assert a.abs().max() <= 1.0
    with torch.no_grad():
        assert torch.equal(agent.greedy(obs, 0), torch.tanh(agent.actor(obs)[0]))
    a1, a2 = agent.act(obs[:4] / 100, 0, LATE), agent.act(obs[:4] / 100, 0, LATE)
    assert not torch.equal(a1, a2)  # exploration samples


def test_act_is_uniform_before_learning_starts_then_follows_the_policy():
    agent = SAC(small_cfg(learning_starts=100), (OBS,), ACT)
    obs = torch.zeros(4000, OBS)
    early = agent.act(obs, 0, step=99)
    # uniform on [-1, 1]: mean 0, variance 1/3, whatever the policy says
    assert early.mean().abs() < 0.03 and abs(early.var().item() - 1 / 3) < 0.02
    with torch.no_grad():
        agent.actor.mean.bias.fill_(3.0)  # policy mode tanh(3) = 0.995
        agent.actor.log_std.bias.fill_(-10.0)
    late = agent.act(obs, 0, step=100)
    assert torch.allclose(late, torch.full_like(late, torch.tanh(torch.tensor(3.0)).item()), atol=1e-3)


def test_deterministic_given_seed():
    def run(seed: int) -> list[torch.Tensor]:
        agent = SAC(small_cfg(), (OBS,), ACT, seed=seed)
        out = [agent.act(torch.ones(2, OBS), 0, LATE)]
        for _ in range(3):
            out.append(agent.update(make_batch())["qf1_loss"])
        return out + [p.detach() for p in agent.actor.parameters()]

    a, b, c = run(7), run(7), run(8)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_critic_loss_decreases_on_a_fixed_batch():
    # the target stays noisy (a' is sampled), so compare the first loss with the mean of the last 20
    agent = SAC(SACConfig(hidden=(32, 32), lr_critic=1e-3, autotune=False, alpha_init=0.01), (OBS,), ACT)
    batch = make_batch(b=32)
    batch.discounts = torch.full((32,), 0.5)
    losses = [agent.update(batch)["qf1_loss"] for _ in range(300)]
    assert torch.stack(losses[-20:]).mean().item() < 0.25 * losses[0].item()


def test_state_dict_round_trip_gives_identical_next_update():
    cfg = small_cfg(policy_frequency=2, target_network_frequency=2)
    a = SAC(cfg, (OBS,), ACT, seed=0)
    batch = make_batch()
    a.update(batch)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = SAC(cfg, (OBS,), ACT, seed=123)
    b.load_state_dict(torch.load(buf, weights_only=False))
    ma, mb = a.update(batch), b.update(batch)
    for k in ma:
        assert torch.equal(ma[k], mb[k]), k
    for x, y in zip(a.state_dict()["critic"]["targets"][0].values(),
                    b.state_dict()["critic"]["targets"][0].values()):
        assert torch.equal(x, y)
    for p, q in zip(list(a.actor.parameters()) + [a.log_alpha], list(b.actor.parameters()) + [b.log_alpha]):
        assert torch.equal(p, q)
    assert torch.equal(a.act(batch.obs, 0, LATE), b.act(batch.obs, 0, LATE))


class _Probe(Intervention):
    """Records its calls; its loss adds c·Σ(param) so the gradient of `param` grows by c."""

    def __init__(self, param: torch.Tensor, c: float) -> None:
        super().__init__()
        self.param, self.c, self.inputs = param, c, []

    def loss(self) -> torch.Tensor:
        return self.c * self.param.sum()

    def after_step(self, inputs=None) -> None:
        super().after_step(inputs)
        self.inputs.append(inputs)


def test_interventions_extra_loss_and_after_step_are_called():
    plain = SAC(small_cfg(policy_frequency=2), (OBS,), ACT)
    agent = copy.deepcopy(plain)
    cp = _Probe(agent.critic.q2[-1].bias, 100.0)
    ap = _Probe(agent.actor.mean.bias, 100.0)
    agent.learnables["critic"].interventions.append(cp)
    agent.learnables["actor"].interventions.append(ap)
    batch = make_batch()
    plain.update(batch)
    agent.update(batch)
    assert torch.allclose(agent.critic.q2[-1].bias.grad, plain.critic.q2[-1].bias.grad + 100.0)
    assert torch.allclose(agent.actor.mean.bias.grad, plain.actor.mean.bias.grad + 100.0)
    agent.update(batch)  # actor skipped on the second step
    assert cp.updates == 2 and ap.updates == 1
    assert cp.inputs[0][0] is batch.obs and cp.inputs[0][1] is batch.actions and ap.inputs[0] is batch.obs


@pytest.mark.parametrize("field,value,msg", [
    ("tau", 0.0, "--sac.tau must be in (0, 1], got 0.0"),
    ("policy_frequency", 0, "--sac.policy-frequency must be > 0, got 0"),
    ("activation", "swish", "--sac.activation must be one of"),
    ("alpha_init", -1.0, "--sac.alpha-init must be > 0, got -1.0"),
])
def test_validate_names_the_bad_value(field, value, msg):
    cfg = SACConfig(**{field: value})
    with pytest.raises(ValueError, match=msg.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        cfg.validate()


@pytest.mark.slow
def test_compiled_update_matches_eager():
    cfg = small_cfg()
    eager = SAC(cfg, (OBS,), ACT, seed=0)
    compiled = SAC(SACConfig(**{**cfg.__dict__, "compile": True}), (OBS,), ACT, seed=0)
    batch = make_batch()
    for _ in range(3):
        me, mc = eager.update(batch), compiled.update(batch)
    for k in me:
        assert torch.allclose(me[k], mc[k], atol=1e-5), k
