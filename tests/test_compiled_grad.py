"""CompiledGrad: the gradients it writes equal autograd's, only the chosen module gets them,
and a hook sends the caller to its eager path. The compiled SAC update against the eager
one (same numbers, interventions' loss terms included) is in the slow tests at the end."""

from __future__ import annotations

import copy

import pytest
import torch
from test_sac import ACT, OBS, _Probe, make_batch, small_cfg
from torch import nn

from agents.compiled_grad import CompiledGrad, has_hooks
from agents.sac import SAC


def nets():
    torch.manual_seed(0)
    f = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
    g = nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 1))
    return f, g


def loss_fn(f, g):
    def fn(x, y):
        pred = g(f(x))  # g is used but not differentiated
        loss = (pred.squeeze(1) - y).pow(2).mean()
        return loss, pred.mean()
    return fn


@pytest.mark.parametrize("compile", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_gradients_equal_autograd_and_land_on_the_module_only(compile):
    f, g = nets()
    x, y = torch.randn(16, 3), torch.randn(16)
    ref_f, ref_g = copy.deepcopy(f), copy.deepcopy(g)
    ref_loss, ref_aux = loss_fn(ref_f, ref_g)(x, y)
    ref_loss.backward()

    aux = CompiledGrad(f, loss_fn(f, g), compile=compile)(x, y)
    for p, q in zip(f.parameters(), ref_f.parameters()):
        assert p.grad is not None and torch.allclose(p.grad, q.grad, atol=1e-6)
    assert all(p.grad is None for p in g.parameters())
    assert torch.allclose(aux, ref_aux) and not aux.requires_grad


def test_gradients_replace_old_ones_and_a_later_backward_adds():
    f, g = nets()
    x, y = torch.randn(16, 3), torch.randn(16)
    ref_f = copy.deepcopy(f)
    for p in f.parameters():
        p.grad = torch.full_like(p, 123.0)  # stale gradient: must be replaced, not added to
    CompiledGrad(f, loss_fn(f, g), compile=False)(x, y)
    (0.5 * sum(p.pow(2).sum() for p in f.parameters())).backward()  # a penalty's backward accumulates
    loss, _ = loss_fn(ref_f, copy.deepcopy(g))(x, y)
    (loss + 0.5 * sum(p.pow(2).sum() for p in ref_f.parameters())).backward()
    for p, q in zip(f.parameters(), ref_f.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6)


def test_frozen_parameters_get_no_gradient():
    f, g = nets()
    f[0].weight.requires_grad_(False)
    CompiledGrad(f, loss_fn(f, g), compile=False)(torch.randn(4, 3), torch.randn(4))
    assert f[0].weight.grad is None and f[0].bias.grad is not None


def test_a_forward_hook_makes_it_unusable():
    f, g = nets()
    cg = CompiledGrad(f, loss_fn(f, g), compile=False)
    assert cg.usable() and not has_hooks(f)
    handle = f[1].register_forward_hook(lambda m, i, o: None)
    assert not cg.usable()
    handle.remove()
    assert cg.usable()


def test_sac_with_a_hooked_critic_takes_the_eager_path():
    """compile=True but a hook on the critic: that network's update is the eager one (no compilation)."""
    eager = SAC(small_cfg(), (OBS,), ACT, seed=0)
    compiled = SAC(small_cfg(compile=True), (OBS,), ACT, seed=0)
    seen = []
    compiled.critic.q1[0].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    compiled._actor_grad = None  # keep this test free of compilation: actor eager as well
    batch = make_batch()
    me, mc = eager.update(batch), compiled.update(batch)
    assert seen  # the hook saw the training forward
    for k in me:
        assert torch.equal(me[k], mc[k]), k
    for p, q in zip(eager.critic.parameters(), compiled.critic.parameters()):
        assert torch.equal(p, q)


@pytest.mark.slow
def test_compiled_sac_matches_eager_with_interventions_loss_terms():
    plain = SAC(small_cfg(policy_frequency=2), (OBS,), ACT, seed=0)
    compiled = SAC(small_cfg(policy_frequency=2, compile=True), (OBS,), ACT, seed=0)
    for agent in (plain, compiled):
        agent.learnables["critic"].interventions.append(_Probe(agent.critic.q2[-1].bias, 3.0))
        agent.learnables["actor"].interventions.append(_Probe(agent.actor.mean.bias, 3.0))
    batch = make_batch()
    for _ in range(3):
        me, mc = plain.update(batch), compiled.update(batch)
        for k in me:
            assert torch.allclose(me[k], mc[k], atol=1e-5), k
    for p, q in zip([*plain.critic.parameters(), *plain.actor.parameters()],
                    [*compiled.critic.parameters(), *compiled.actor.parameters()]):
        assert torch.allclose(p, q, atol=1e-5)
