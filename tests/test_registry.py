"""plasticity/registry.py: the `--plasticity` spec grammar (name, aliases, values, `on=`),
the architecture options, building an intervention from a spec, and the help text."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from plasticity import registry
from plasticity.registry import InterventionSpec, architecture, build, help_text, parse, parse_all


@pytest.mark.parametrize(("text", "value"), [
    ("true", True), ("TRUE", True), ("False", False), ("none", None), ("None", None),
    ("3", 3), ("-2", -2), ("1e-3", 1e-3), ("0.5", 0.5), ("head", "head"), ("1e", "1e")])
def test_values_are_read_as_bool_none_int_float_or_kept_as_text(text, value):
    got = registry._value(text)
    assert got == value and type(got) is type(value)


def test_name_is_stripped_lowercased_and_aliases_map_to_the_intervention():
    assert parse(" SWR ").name == "swr"
    assert parse("SNP").name == "shrink_perturb"
    assert parse("wclip").name == "weight_clipping"
    assert parse("clip").params == {} and parse("clip").on is None


def test_parameters_are_parsed_with_dashes_and_spaces():
    spec = parse("redo: tau = 0.25 , every=10,batch-size=64,")
    assert spec == InterventionSpec("redo", {"tau": 0.25, "every": 10, "batch_size": 64}, None)
    assert type(spec.params["every"]) is int


def test_a_value_is_everything_after_the_first_equals_sign():
    assert parse("reset:every==3").params == {"every": "=3"}  # kept as text; the constructor refuses it
    assert parse("swr:head=fc=out").params == {"head": "fc=out"}
    assert parse("redo:on=critic=1").on == ("critic=1",)


def test_on_names_networks_joined_by_plus_and_is_not_a_parameter():
    spec = parse("swr:on=actor++critic,lam=0.5")
    assert spec.on == ("actor", "critic") and spec.params == {"lam": 0.5}
    assert parse("redo:on=critic").on == ("critic",)
    arch = parse("adalin:on=actor")
    assert arch == InterventionSpec("adalin", {}, ("actor",)) and arch.is_architecture
    assert not parse("swr").is_architecture


@pytest.mark.parametrize(("spec", "message"), [
    ("swrr", "unknown intervention 'swrr' in --plasticity 'swrr'; valid: adalin, cbp, crelu, injection, l2, "
             "l2init, layernorm, redo, reset, shrink_perturb, swr, weight_clipping"),
    ("swr:lam", "--plasticity 'swr:lam': expected key=value, got 'lam'"),
    ("crelu:dim=2", "--plasticity 'crelu:dim=2': crelu takes no parameters (it is a network option)"),
    ("l2:lam=1", "unknown parameter 'lam' for l2 in --plasticity 'l2:lam=1'; valid: coef, weights_only, on"),
    ("swr:targets=1", "unknown parameter 'targets' for swr in --plasticity 'swr:targets=1'; "
                      "valid: chain, every, head, head_lam, lam, on"),
    ("redo:module=1", "unknown parameter 'module' for redo in --plasticity 'redo:module=1'; "
                      "valid: batch_size, every, pairs, tau, on"),
])
def test_bad_specs_are_refused_in_one_line(spec, message):
    with pytest.raises(ValueError) as err:
        parse(spec)
    assert str(err.value) == message


def test_parse_all_keeps_the_order():
    assert [s.name for s in parse_all(["l2", "swr:lam=0.1", "layernorm"])] == ["l2", "swr", "layernorm"]
    assert parse_all([]) == []


def test_architecture_collects_the_network_options_and_refuses_two_activations():
    specs = parse_all(["swr", "adalin", "layernorm", "adalin"])
    assert architecture(specs) == {"activation": "adalin", "norm": "layer"}
    assert architecture(parse_all(["crelu"])) == {"activation": "crelu"}
    assert architecture(parse_all(["redo"])) == {}
    with pytest.raises(ValueError) as err:
        architecture(parse_all(["adalin", "crelu"]))
    assert str(err.value) == "--plasticity asks for two activations: adalin and crelu"


def test_build_passes_the_parameters_optimizer_and_targets():
    model, target = nn.Linear(3, 2), nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    iv = build(parse("reset:every=7,at_task_switch=false"), model, opt, [target])
    assert type(iv).__name__ == "Reset" and iv.every == 7 and iv.at_task_switch is False
    assert iv.optimizer is opt and iv.targets == [target] and iv.module is model
    sw = build(parse("swr:lam=0.5,head_lam=0.25"), nn.Sequential(model))
    assert (sw.lam, sw.head_lam, sw.every) == (0.5, 0.25, 1)
    assert registry.intervention_class("l2init").__name__ == "L2Init"


def test_help_text_lists_every_intervention_with_defaults_aliases_and_options():
    lines = help_text().splitlines()
    assert lines[:2] == ["Interventions (--plasticity NAME[:key=value,...] ...; applied in the order given;",
                         "  on=NET[+NET] attaches to some of the agent's networks: q for DQN, actor/critic for SAC):"]
    swr = lines.index("  swr             Rescale every layer towards its initial norm after each update "
                      "(see module doc).")
    assert lines[swr + 1] == ("                    lam=0.001, head_lam=None, head=None, every=1, chain=False")
    clip = next(i for i, line in enumerate(lines) if line.startswith("  weight_clipping "))
    assert lines[clip].endswith(" (alias: clip, wclip)")
    assert lines[clip + 1] == "                    kappa=3.0, clip_bias=True"
    reset = next(i for i, line in enumerate(lines) if line.startswith("  reset "))
    assert lines[reset + 2] == ("                    hidden task boundaries: acts only with every=N "
                                "(every=None needs announced switches)")
    assert not lines[swr + 2].strip().startswith("hidden")  # only where the class says so
    net = lines.index("Network options (change how the networks are built):")
    assert lines[net + 1:] == ["  adalin          activation=adalin", "  crelu           activation=crelu",
                               "  layernorm       norm=layer"]
    assert sum(line.startswith("  ") and not line.startswith("   ") for line in lines[2:net]) == len(
        registry.INTERVENTIONS)


def test_help_and_refusals_for_a_missing_intervention_and_an_undocumented_one_without_parameters(monkeypatch):
    real = registry.intervention_class

    class Bare:
        def __init__(self, module, optimizer=None, targets=()):
            pass

    def fake(name):
        if name == "l2init":
            raise ImportError("no module named fake")
        return Bare if name == "l2" else real(name)

    monkeypatch.setattr(registry, "intervention_class", fake)
    lines = help_text().splitlines()
    l2 = lines.index("  l2              ")  # no docstring: the name alone, then no parameters
    assert lines[l2 + 1:l2 + 3] == ["                    ", "  l2init          unavailable (no module named fake)"]
    assert lines[l2 + 3].startswith("  weight_clipping ")  # the interventions after it are still listed
    assert sum(line.startswith("  ") and not line.startswith("   ") for line in lines[2:]) == len(
        registry.INTERVENTIONS) + len(registry.ARCHITECTURE)
    with pytest.raises(ValueError) as err:
        parse("l2:coef=1")
    assert str(err.value) == "unknown parameter 'coef' for l2 in --plasticity 'l2:coef=1'; valid: none, on"
