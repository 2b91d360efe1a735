"""The compile folder is the only code using private PyTorch APIs, and when this PyTorch lacks
one of them the agents fall back to the public eager code: one warning, the same numbers."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch
from test_sac import ACT, OBS, make_batch, small_cfg

from agents.compile import internals
from agents.dqn import DQN, DQNConfig
from agents.sac import SAC

ROOT = Path(__file__).resolve().parent.parent
PRIVATE = re.compile(r"torch\._|\._[a-z_]*hooks|_inductor|make_fx")


def test_private_pytorch_apis_are_used_only_in_agents_compile():
    files = [p for d in ("agents", "runner", "envs", "replay") for p in (ROOT / d).rglob("*.py")]
    files.append(ROOT / "train.py")
    assert any(p.parent.name == "compile" for p in files)  # the folder itself is scanned, then skipped
    found = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
             for p in files if "compile" not in p.relative_to(ROOT).parts[:2]
             for i, line in enumerate(p.read_text().splitlines(), 1) if PRIVATE.search(line)]
    assert not found, "\n".join(found)


def test_the_pattern_finds_what_it_should():
    for line in ("torch._fused_adam_(ps)", "opt._optimizer_step_pre_hooks", "m._forward_hooks",
                 "from torch._inductor import config", "make_fx(f)"):
        assert PRIVATE.search(line), line
    assert not PRIVATE.search("torch.func.grad(f)")


@pytest.fixture
def fresh_probe(monkeypatch):
    """Forget which internals were found, so the next check looks again (and may warn again)."""
    monkeypatch.setattr(internals, "_checked", {})


def test_every_internal_is_present_in_this_torch():
    for feature in internals._NEEDS:
        assert internals.missing(feature) is None, feature


def dqn(compile: bool) -> DQN:
    cfg = DQNConfig(hidden=(16, 16), lr=1e-2, compile=compile, target_update_interval=2)
    torch.manual_seed(0)  # DQN's initial weights come from the global generator
    return DQN(cfg, obs_shape=(4,), num_actions=3, action_masks=torch.tensor([[True, True, False]]), seed=0)


def dqn_batch(seed: int):
    from types import SimpleNamespace

    g = torch.Generator().manual_seed(seed)
    return SimpleNamespace(obs=torch.randn(8, 4, generator=g), actions=torch.randint(0, 2, (8,), generator=g),
                           rewards=torch.randn(8, generator=g), next_obs=torch.randn(8, 4, generator=g),
                           discounts=torch.full((8,), 0.99), weights=torch.ones(8),
                           tasks=torch.zeros(8, dtype=torch.long))


def params_of(agent) -> list[torch.Tensor]:
    return [p.detach().clone() for l in agent.learnables.values() for p in l.module.parameters()]


def run(make, batches, caught):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        agent = make()
        for b in batches:
            agent.update(b)
    caught.extend(x for x in w if issubclass(x.category, RuntimeWarning))
    return params_of(agent)


AGENTS = {
    "dqn": (lambda c: (lambda: dqn(c)), [dqn_batch(k) for k in range(4)]),
    "sac": (lambda c: (lambda: SAC(small_cfg(compile=c), (OBS,), ACT, seed=0)), [make_batch(seed=k) for k in range(4)]),
}


@pytest.mark.parametrize("name", AGENTS)
def test_compile_without_inductor_warns_once_and_equals_eager(name, fresh_probe, monkeypatch):
    import torch._inductor.compile_fx as cfx

    monkeypatch.delattr(cfx, "compile_fx")  # as if this torch had no such function
    make, batches = AGENTS[name]
    caught = []
    want = run(make(False), batches, [])
    got = run(make(True), batches, caught)
    run(make(True), batches, caught)  # a second agent: no second warning
    assert [str(w.message) for w in caught] == [
        f"torch {torch.__version__} has no torch._inductor.compile_fx.compile_fx: the compiled update "
        "(--dqn.compile / --sac.compile) runs eager instead (same numbers, slower)"]
    for p, q in zip(want, got):
        assert torch.equal(p, q)


@pytest.mark.parametrize("name", AGENTS)
def test_without_fused_adam_steps_through_optimizer_step(name, fresh_probe, monkeypatch):
    make, batches = AGENTS[name]
    want = run(make(False), batches, [])
    internals._checked.clear()  # the reference run found every op
    caught = []
    # the probe runs while the op is missing; Adam.step itself needs it, so it comes back for the updates
    with monkeypatch.context() as m, warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        m.delattr(torch, "_fused_adam_")
        assert not internals.available("fused_adam") and not internals.available("fused_adam")
    caught.extend(w)
    calls = []
    step = torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a, **k: (calls.append(1), step(self, *a, **k))[1])
    got = run(make(False), batches, caught)
    assert [str(x.message) for x in caught] == [
        f"torch {torch.__version__} has no torch._fused_adam_: Adam steps go through optimizer.step() "
        "(same numbers, slower)"]
    steps_per_update = 1 if name == "dqn" else 3  # SAC: critic, actor and temperature (policy_frequency 1)
    assert len(calls) == steps_per_update * len(batches)  # every step, not only the first
    for p, q in zip(want, got):
        assert torch.equal(p, q)


def test_polyak_without_foreach_lerp_is_the_same(fresh_probe, monkeypatch):
    from agents.compile import lerp_

    g = torch.Generator().manual_seed(0)
    src = [torch.randn(5, 3, generator=g), torch.randn(7, generator=g)]
    a = [torch.randn(5, 3, generator=g), torch.randn(7, generator=g)]
    b = [t.clone() for t in a]
    lerp_(a, src, 0.005)
    internals._checked.clear()
    monkeypatch.delattr(torch, "_foreach_lerp_")
    with pytest.warns(RuntimeWarning, match="one lerp_ per tensor"):
        lerp_(b, src, 0.005)
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and not torch.equal(a[0], src[0])


@pytest.mark.slow
def test_compiled_dqn_matches_eager():
    """--dqn.compile goes through CompiledGrad: the same parameters as eager after 6 updates
    (two target syncs), to float tolerance (Inductor reorders sums)."""
    eager, compiled = dqn(False), dqn(True)
    assert compiled._q_grad is not None and compiled._q_grad.usable()
    for k in range(6):
        me, mc = eager.update(dqn_batch(k)), compiled.update(dqn_batch(k))
        for key in me:
            assert torch.allclose(me[key], mc[key], atol=1e-5), key
    assert len(compiled._q_grad._compiled) == 1
    for p, q in zip(params_of(eager), params_of(compiled)):
        assert torch.allclose(p, q, atol=1e-5)
    assert max((p - q).abs().max() for p, q in zip(params_of(dqn(False)), params_of(eager))) > 1e-3  # it learned


@pytest.mark.parametrize(("feature", "patch", "lacking"), [
    ("compiled_grad", ("nn", "Module", "_forward_hooks"), "nn.Module._forward_hooks"),
    ("compiled_grad", ("nn", "Module", "_forward_pre_hooks"), "nn.Module._forward_pre_hooks"),
    ("fused_adam", ("optim", "Adam", "_optimizer_step_pre_hooks"), "Optimizer._optimizer_step_pre_hooks"),
    ("fused_adam", ("optim", "Adam", "_optimizer_step_post_hooks"), "Optimizer._optimizer_step_post_hooks"),
])
def test_a_missing_instance_attribute_is_named(feature, patch, lacking, monkeypatch):
    """The hook dicts live on instances: a PyTorch whose modules or optimizers lack one is named."""
    package, cls_name, attr = patch
    base = getattr(getattr(torch, package), cls_name)

    class Without(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            object.__delattr__(self, attr)

        def __getattr__(self, name):
            if name == attr:
                raise AttributeError(name)
            return super().__getattr__(name) if hasattr(base, "__getattr__") else object.__getattribute__(self, name)

    monkeypatch.setattr(getattr(torch, package), cls_name, Without)
    assert internals.missing(feature) == lacking
    other = "fused_adam" if feature == "compiled_grad" else "compiled_grad"
    assert internals.missing(other) is None  # each feature checks its own instances only
