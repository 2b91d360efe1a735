from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import plasticity as pl
from plasticity.weight_clipping import WeightClipping, fan_in


def test_linear_bounds_by_hand():
    model = nn.Linear(4, 2)  # fan_in 4 -> bound kappa / 2
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.1, 1.0, -1.0, 0.9], [-0.2, 5.0, -0.95, 0.0]]))
        model.bias.copy_(torch.tensor([2.0, -0.3]))
    clip = WeightClipping(model, kappa=1.9)  # bound 0.95
    clip.after_step()
    torch.testing.assert_close(
        model.weight, torch.tensor([[0.1, 0.95, -0.95, 0.9], [-0.2, 0.95, -0.95, 0.0]])
    )
    torch.testing.assert_close(model.bias, torch.tensor([0.95, -0.3]))
    assert clip.updates == 1
    # 0.95 twice, -0.95 twice in the weight (one was already exactly at -0.95), 0.95 in the bias
    assert clip.metrics()["weight_clipping_frac_at_bound"] == pytest.approx(5 / 10)


def test_conv_fan_in_and_bias_option():
    conv = nn.Conv2d(2, 3, kernel_size=(3, 2), groups=1)  # fan_in = 2*3*2 = 12
    grouped = nn.Conv2d(4, 4, kernel_size=3, groups=2)  # fan_in = 2*3*3 = 18
    assert fan_in(conv) == 12 and fan_in(grouped) == 18 and fan_in(nn.Linear(7, 1)) == 7
    model = nn.Sequential(conv, nn.ReLU(), grouped)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.linspace(-5, 5, p.numel()).view_as(p))
    biases = [conv.bias.detach().clone(), grouped.bias.detach().clone()]
    WeightClipping(model, kappa=3.0, clip_bias=False).after_step()
    for layer, bound in [(conv, 3 / math.sqrt(12)), (grouped, 3 / math.sqrt(18))]:
        w = layer.weight
        assert w.max().item() == pytest.approx(bound) and w.min().item() == pytest.approx(-bound)
        expected = torch.linspace(-5, 5, w.numel()).clamp(-bound, bound).view_as(w)
        torch.testing.assert_close(w, expected)
    torch.testing.assert_close(conv.bias, biases[0])  # untouched
    torch.testing.assert_close(grouped.bias, biases[1])


def test_default_init_is_inside_the_bound():
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3))
    before = [p.detach().clone() for p in model.parameters()]
    WeightClipping(model).after_step()  # kappa 3 > 1: default U(+-1/sqrt(fan_in)) init is kept
    for p, q in zip(model.parameters(), before):
        assert torch.equal(p, q)


@pytest.mark.parametrize("kappa", [0.0, -1.0, "3"])
def test_bad_kappa(kappa):
    with pytest.raises(ValueError) as err:
        WeightClipping(nn.Linear(2, 2), kappa=kappa)
    assert str(err.value) == f"weight_clipping: kappa must be > 0, got {kappa!r}"
    assert pl.WeightClipping is WeightClipping


def test_one_name_across_cli_tags_and_file_with_old_spellings_as_aliases():
    from plasticity import registry

    for spelling in ("weight_clipping", "clip", "wclip"):
        assert registry.parse(f"{spelling}:kappa=2").name == "weight_clipping"
    for spelling in ("shrink_perturb", "snp"):
        assert registry.parse(f"{spelling}:every=5").name == "shrink_perturb"
    for name, (file, _) in registry.INTERVENTIONS.items():
        cls = registry.intervention_class(name)
        assert cls.name == name and cls.__module__ == f"plasticity.{file}"
        if name not in ("l2", "l2init"):  # L2 and L2-Init share plasticity/l2.py
            assert file == name
    iv = registry.build(registry.parse("clip"), nn.Linear(2, 2))
    assert list(iv.metrics()) == ["weight_clipping_frac_at_bound"]
    text = registry.help_text()
    assert "weight_clipping" in text and "(alias: clip, wclip)" in text and "(alias: snp)" in text
    assert "hidden task boundaries: acts only with every=N" in text


def test_default_kappa_small_kappa_and_no_layer():
    model = nn.Sequential(nn.Linear(4, 1))
    assert WeightClipping(model).kappa == 3.0 and WeightClipping(model).clip_bias is True
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.5, -0.5, 0.1, 0.2]]))
        model[0].bias.fill_(-0.3)
    clip = WeightClipping(model, kappa=0.5)  # bound 0.5 / sqrt(4) = 0.25
    assert clip.groups[0][0] == pytest.approx(0.25)
    clip.after_step()
    torch.testing.assert_close(model[0].weight, torch.tensor([[0.25, -0.25, 0.1, 0.2]]))
    torch.testing.assert_close(model[0].bias, torch.tensor([-0.25]))
    assert clip.metrics() == {"weight_clipping_frac_at_bound": pytest.approx(3 / 5)}
    with pytest.raises(ValueError) as err:
        WeightClipping(nn.Sequential(nn.ReLU()))
    assert str(err.value) == "weight_clipping: module Sequential has no Linear/Conv layer"
