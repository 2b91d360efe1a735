"""Every `--plasticity` spec checked for its effect in the agent `runner.build` builds: an
architecture option puts its activation or norm in every hidden layer of every network, and
an intervention is attached, built on that network, to exactly the networks it names."""

from __future__ import annotations

import pytest
from torch import nn

from plasticity import registry
from plasticity.adalin import AdaLin
from plasticity.crelu import CReLU
from runner.build import build
from runner.cli import parse_args

DQN = ["--env.tasks", "gym:CartPole-v1", "--env.steps-per-visit", "10", "--dqn.hidden", "8", "8"]
SAC = ["--agent", "sac", "--env.tasks", "gym:Pendulum-v1", "--env.steps-per-visit", "10", "--sac.hidden", "8", "8"]
NETWORKS = {"dqn": ["q"], "sac": ["actor", "critic"]}
HIDDEN_LAYERS = {"q": 2, "actor": 2, "critic": 4}  # the critic is two Q networks


def built(agent: str, *specs: str, tmp_path):
    argv = (DQN if agent == "dqn" else SAC) + ["--run-dir", str(tmp_path / "run"), "--no-progress"]
    if specs:
        argv += ["--plasticity", *specs]
    cfg, _ = parse_args(argv)
    parts = build(cfg)
    parts.close()
    return parts.agent


def count(module: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in module.modules())


@pytest.mark.parametrize("agent", ["dqn", "sac"])
@pytest.mark.parametrize(("spec", "kind", "absent"), [
    ("adalin", AdaLin, nn.ReLU), ("crelu", CReLU, nn.ReLU), ("layernorm", nn.LayerNorm, None)])
def test_architecture_spec_is_in_every_hidden_layer_of_every_network(tmp_path, agent, spec, kind, absent):
    plain = built(agent, tmp_path=tmp_path)
    with_spec = built(agent, spec, tmp_path=tmp_path)
    for name in NETWORKS[agent]:
        module = with_spec.learnables[name].module
        assert count(plain.learnables[name].module, kind) == 0
        assert count(module, kind) == HIDDEN_LAYERS[name], (name, spec)
        if absent is not None:  # replaced, not added
            assert count(module, absent) == 0 and count(plain.learnables[name].module, absent) > 0
        assert not with_spec.learnables[name].interventions  # a network option, not an intervention
        target = with_spec.learnables[name].targets
        assert all(count(t, kind) == HIDDEN_LAYERS[name] for t in target)


def test_crelu_doubles_the_width_feeding_the_next_layer(tmp_path):
    q = built("dqn", "crelu", tmp_path=tmp_path).learnables["q"].module
    linears = [m for m in q.modules() if isinstance(m, nn.Linear)]
    assert [m.in_features for m in linears] == [4, 16, 16]


INTERVENTION_SPECS = {"swr": "", "l2": "", "l2init": "", "weight_clipping": "", "reset": ":every=100",
                      "shrink_perturb": ":every=100",
                      "redo": ":every=10", "cbp": ":maturity=10", "injection": ""}


def _held(obj, depth: int = 4):
    """The objects an intervention holds: its attributes, inside lists, tuples and dicts."""
    if depth == 0:
        return
    items = vars(obj).values() if hasattr(obj, "__dict__") and not isinstance(obj, nn.Module) else (
        obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else ())
    for v in items:
        yield v
        yield from _held(v, depth - 1)


def _on_module(iv, module: nn.Module) -> bool:
    """Whether the intervention acts on this module: holds it, or holds its parameters."""
    mine = {id(module)} | {id(p) for p in module.parameters()}
    return any(id(v) in mine for v in _held(iv))


@pytest.mark.parametrize("name", sorted(registry.INTERVENTIONS))
def test_intervention_is_attached_to_every_network_by_default(tmp_path, name):
    assert set(INTERVENTION_SPECS) == set(registry.INTERVENTIONS)
    cls = registry.intervention_class(name)
    agents = ["dqn", "sac"] if name != "injection" else ["dqn"]  # SAC's networks have no `head`
    for agent in agents:
        a = built(agent, name + INTERVENTION_SPECS[name], tmp_path=tmp_path)
        for net in NETWORKS[agent]:
            ivs = a.learnables[net].interventions
            assert [type(iv) for iv in ivs] == [cls], (agent, net)
            assert _on_module(ivs[0], a.learnables[net].module), (agent, net)


@pytest.mark.parametrize(("spec", "attached"), [
    ("redo:every=10,on=critic", {"critic"}), ("swr:on=actor", {"actor"}), ("l2:on=actor+critic", {"actor", "critic"}),
    ("injection:on=actor,head=mean", {"actor"})])
def test_on_attaches_only_to_the_named_networks(tmp_path, spec, attached):
    a = built("sac", spec, "layernorm", tmp_path=tmp_path)
    cls = registry.intervention_class(spec.split(":")[0])
    for net in NETWORKS["sac"]:
        ivs = a.learnables[net].interventions
        assert [type(iv) for iv in ivs] == ([cls] if net in attached else []), net
        assert count(a.learnables[net].module, nn.LayerNorm) == HIDDEN_LAYERS[net]  # both specs applied


def test_interventions_are_attached_in_the_order_given(tmp_path):
    a = built("dqn", "l2", "redo:every=10", "swr", tmp_path=tmp_path)
    assert [type(iv).__name__ for iv in a.learnables["q"].interventions] == ["L2", "ReDo", "SoftWeightRescaling"]
