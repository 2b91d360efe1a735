"""CompiledGrad: the gradients it writes equal autograd's, only the chosen module gets them,
and a hook sends the caller to its eager path. The compiled SAC update against the eager
one (same numbers, interventions' loss terms included) is in the slow tests at the end."""

from __future__ import annotations

import copy

import pytest
import torch
from test_sac import ACT, OBS, _Probe, make_batch, small_cfg
from torch import nn

from agents.compile import CompiledGrad, has_hooks
from agents.compile.inductor_passes import UnfuseBiasAddmm
from agents.networks import ScalarHead
from agents.sac import SAC

aten = torch.ops.aten


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

    aux = CompiledGrad(f, loss_fn(f, g), compile=compile, watch=[g])(x, y)
    for p, q in zip(f.parameters(), ref_f.parameters()):
        assert p.grad is not None and torch.allclose(p.grad, q.grad, atol=1e-6)
    assert all(p.grad is None for p in g.parameters())
    assert torch.allclose(aux, ref_aux) and not aux.requires_grad


def test_a_tensor_from_outside_the_watched_modules_is_refused_when_compiling():
    f, g = nets()  # the loss calls g, which is not watched: its weights would be frozen into the graph
    with pytest.raises(ValueError) as err:
        CompiledGrad(f, loss_fn(f, g), compile=True)(torch.randn(4, 3), torch.randn(4))
    assert str(err.value) == ("CompiledGrad: the loss reads a tensor that is neither an argument nor a parameter or "
                              "buffer of the module or of a `watch` module; pass its module in `watch`")


@pytest.mark.slow
def test_compiled_gradients_follow_watched_and_structure_changes():
    """The watched module's new weights are seen without recompiling; a new shape compiles again."""
    f, g = nets()
    cg = CompiledGrad(f, loss_fn(f, g), compile=True, watch=[g])
    for step in range(3):
        x, y = torch.randn(16, 3), torch.randn(16)  # new tensors, same shapes: no new compilation
        with torch.no_grad():
            g[0].weight.mul_(1.5)  # an update of the watched module, in place
        if step == 2:
            f[0] = nn.Linear(3, 8)  # a replaced layer (same shapes): still one compiled function
        cg(x, y)
        ref_f = copy.deepcopy(f)
        loss_fn(ref_f, g)(x, y)[0].backward()
        for p, q in zip(f.parameters(), ref_f.parameters()):
            assert torch.allclose(p.grad, q.grad, atol=1e-6)
    assert len(cg._compiled) == 1
    f[2] = nn.Linear(8, 1, bias=False)  # a structure change
    cg(x, y)
    assert len(cg._compiled) == 2 and f[2].weight.grad is not None


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


def test_a_forward_hook_on_a_watched_module_makes_it_unusable():
    f, g = nets()
    cg = CompiledGrad(f, loss_fn(f, g), compile=False, watch=[g])
    assert cg.usable() and not has_hooks(f)
    for hooked in (f[1], g[0]):  # the differentiated module, or another one the loss calls
        handle = hooked.register_forward_hook(lambda m, i, o: None)
        assert not cg.usable()
        handle.remove()
        assert cg.usable()


def test_a_hook_on_a_module_added_later_is_seen():
    f, g = nets()
    cg = CompiledGrad(f, loss_fn(f, g), compile=False, watch=[g])
    assert cg.usable()
    f[2] = nn.Linear(8, 1)  # a new layer (plasticity injection does the like)
    f[2].register_forward_hook(lambda m, i, o: None)
    assert not cg.usable()


def test_sac_with_a_hooked_critic_takes_the_eager_path():
    """compile=True but a hook on the critic, which both losses call: both updates are the
    eager ones (no compilation), and the hook sees every training forward."""
    eager = SAC(small_cfg(), (OBS,), ACT, seed=0)
    compiled = SAC(small_cfg(compile=True), (OBS,), ACT, seed=0)
    seen = []
    compiled.critic.q1[0].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    assert not compiled._critic_grad.usable() and not compiled._actor_grad.usable()
    batch = make_batch()
    me, mc = eager.update(batch), compiled.update(batch)
    assert len(seen) == 2  # critic loss and actor loss forwards
    for k in me:
        assert torch.equal(me[k], mc[k]), k
    for p, q in zip(eager.critic.parameters(), compiled.critic.parameters()):
        assert torch.equal(p, q)


def traced(fn, *args, mode="fake"):
    from torch.fx.experimental.proxy_tensor import make_fx
    return make_fx(fn, tracing_mode=mode)(*args)


def targets(gm):
    return [n.target for n in gm.graph.nodes if n.op == "call_function"]


def test_unfuse_pass_moves_a_bias_out_of_addmm_before_element_wise_ops_only():
    x, w, b, w2 = torch.randn(8, 5), torch.randn(4, 5), torch.randn(4), torch.randn(3, 4)

    def mlp(x, w, b, w2):
        h = torch.relu(nn.functional.linear(x, w, b))  # addmm feeding relu: rewritten
        return nn.functional.linear(nn.functional.linear(x, w, b), w2), h  # addmm feeding a product: kept

    gm = traced(mlp, x, w, b, w2)
    assert targets(gm).count(aten.addmm.default) == 2
    UnfuseBiasAddmm()(gm.graph)
    gm.recompile()
    assert targets(gm).count(aten.addmm.default) == 1 and targets(gm).count(aten.mm.default) == 2
    add = next(n for n in gm.graph.nodes if n.target is aten.add.Tensor)
    assert add.args[0].target is aten.mm.default and add.args[1].name == "b_1"
    assert [u.target for u in add.users] == [aten.relu.default]
    for got, want in zip(gm(x, w, b, w2), mlp(x, w, b, w2)):
        assert torch.allclose(got, want, atol=1e-6)


def test_scalar_head_is_a_one_output_linear():
    torch.manual_seed(0)
    head = ScalarHead(7)
    ref = nn.Linear(7, 1)
    ref.load_state_dict(head.state_dict())
    x = torch.randn(5, 7)
    assert isinstance(head, nn.Linear) and head.state_dict().keys() == ref.state_dict().keys()
    assert torch.equal(head(x), ref(x))


def test_scalar_head_traced_for_compile_is_a_fused_multiply_sum():
    from agents.compile import tracing_for_compile

    head, x = ScalarHead(7), torch.randn(5, 7)
    eager = targets(traced(head, x, mode="real"))
    with tracing_for_compile():
        fused = targets(traced(head, x, mode="real"))
    assert aten.addmm.default in eager
    assert not {aten.addmm.default, aten.mm.default} & set(fused) and aten.sum.dim_IntList in fused
    assert torch.allclose(head(x), (x * head.weight).sum(-1, keepdim=True) + head.bias, atol=1e-6)


@pytest.mark.slow
def test_scalar_head_compiled_matches_eager_forward_and_backward():
    torch.manual_seed(0)
    head = ScalarHead(7)
    x = torch.randn(64, 7)
    eager = torch.func.grad(lambda p, x: torch.func.functional_call(head, p, (x,)).pow(2).mean())
    params = {k: v.detach() for k, v in head.named_parameters()}
    compiled = torch.compile(eager)
    for k, g in compiled(params, x).items():
        assert torch.allclose(g, eager(params, x)[k], atol=1e-6), k


@pytest.mark.slow
@pytest.mark.parametrize("specs", [
    ["l2:on=critic", "injection:on=actor,head=mean", "swr:on=actor"],  # penalty, recompile, rewrite
    ["cbp:on=critic,maturity=10", "l2:on=actor"],  # a hook on the critic: both losses go eager
])
def test_compiled_sac_runs_interventions_through_train_py(tmp_path, specs):
    import train
    from test_train import SAC_ARGS, events, scalars

    run_dir = tmp_path / "run"
    args = [*SAC_ARGS, "--env.steps-per-visit", "100", "--sac.compile", "--plasticity", *specs,
            "--run-dir", str(run_dir)]
    assert train.main(args) == 0
    assert scalars(events(run_dir), "task/index")[-1][1] == 1


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
