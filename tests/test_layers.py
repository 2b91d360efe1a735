"""plasticity.layers: structure discovery, fresh init, optimizer-state surgery, recycling."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from plasticity import layers as L
from plasticity import reinit as R


class Doubler(nn.Module):
    """A CReLU-like activation: [relu(x), relu(-x)] on the feature/channel dim."""

    is_activation = True
    width_multiplier = 2

    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return torch.cat([x.relu(), (-x).relu()], dim=self.dim)


def adam_step(model, x, opt):
    opt.zero_grad()
    model(x).pow(2).sum().backward()
    opt.step()


def test_weight_layers_in_registration_order():
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 4), nn.Conv1d(1, 1, 1))
    assert [n for n, _ in L.weight_layers(m)] == ["0", "3", "4"]


def test_weight_layers_are_linear_and_conv_only():
    # own a >= 2-D weight but have no Linear/Conv in/out layout: not layers
    m = nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 4), nn.ConvTranspose1d(4, 2, 1), nn.Bilinear(2, 2, 1))
    assert [n for n, _ in L.weight_layers(m)] == ["1"]


def test_is_activation_builtins_and_flags():
    for act in (nn.ReLU(), nn.LeakyReLU(), nn.PReLU(), nn.ELU(), nn.GELU(), nn.SiLU(), nn.Mish(),
                nn.Tanh(), nn.Sigmoid(), nn.Hardtanh(), nn.ReLU6(), nn.Softsign(), Doubler()):
        assert L.is_activation(act), act
    flagged = nn.Identity()
    flagged.is_activation = True                     # an instance flag counts too
    assert L.is_activation(flagged)
    for other in (nn.Linear(2, 2), nn.LayerNorm(2), nn.Identity(), nn.Softmax(dim=-1)):
        assert not L.is_activation(other), other
    truthy = nn.Identity()
    truthy.is_activation = nn.ReLU()                 # a submodule of that name is no flag
    assert not L.is_activation(truthy)


def test_find_activations_does_not_descend_into_a_found_one():
    class Wrapped(nn.Module):
        is_activation = True

        def __init__(self):
            super().__init__()
            self.inner = nn.ReLU()

    m = nn.Sequential(nn.Linear(2, 3), Wrapped(), nn.Linear(3, 3), nn.Sequential(nn.PReLU(3)), nn.Linear(3, 1))
    assert [n for n, _ in L.find_activations(m)] == ["1", "3.0"]


def test_prelu_is_the_activation_of_its_group_and_reset_per_unit():
    m = nn.Sequential(nn.Linear(2, 3), nn.PReLU(3), nn.Linear(3, 1))
    g = L.neuron_groups(m)[0]
    assert g.activation is m[1]
    with torch.no_grad():
        m[1].weight.fill_(0.5)
    R.reinit_incoming(g, torch.tensor([1]), None)
    assert m[1].weight.tolist() == [0.5, 0.25, 0.5]  # PReLU's fresh slope is 0.25


def test_mlp_groups_find_activation_and_norm():
    m = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Tanh(), nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2))
    gs = L.neuron_groups(m)
    assert [g.name for g in gs] == ["0", "3"]          # the output layer is not a group
    assert gs[0].norm is m[1] and gs[0].activation is m[2] and gs[0].probe is m[2]
    assert gs[1].norm is None and gs[1].activation is m[4]
    assert gs[0].next_layers == (m[3],) and gs[1].next_layers == (m[5],)
    assert (gs[0].multiplier, gs[0].spatial) == (1, 1)


def test_conv_to_linear_block_columns_and_outgoing_sum():
    m = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4, 2))  # 4x4 input -> 2x2
    g = L.neuron_groups(m)[0]
    assert g.spatial == 4 and g.n_units == 3
    assert g.outgoing_columns(torch.tensor([1])).tolist() == [4, 5, 6, 7]
    assert g.outgoing_columns(torch.tensor([0, 2])).tolist() == [0, 1, 2, 3, 8, 9, 10, 11]
    w = m[3].weight.detach()
    expected = torch.stack([w[:, 0:4].abs().sum(), w[:, 4:8].abs().sum(), w[:, 8:12].abs().sum()])
    assert torch.allclose(g.outgoing_abs_sum()[0], expected)


def test_conv_to_conv_outgoing_sum_includes_kernel():
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 3, 2))
    g = L.neuron_groups(m)[0]
    w = m[2].weight.detach()
    assert torch.allclose(g.outgoing_abs_sum()[0], w.abs().sum(dim=(0, 2, 3)))
    assert g.outgoing_columns(torch.tensor([1])).tolist() == [1]


def test_widening_activation_reads_unit_through_k_channels():
    m = nn.Sequential(nn.Linear(3, 4), Doubler(), nn.Linear(8, 2))
    g = L.neuron_groups(m)[0]
    assert g.multiplier == 2
    assert g.outgoing_columns(torch.tensor([1, 3])).tolist() == [1, 3, 5, 7]
    w = m[2].weight.detach().abs().sum(0)
    assert torch.allclose(g.outgoing_abs_sum(), torch.stack([w[:4], w[4:]]))
    c = nn.Sequential(nn.Conv2d(1, 2, 3), Doubler(dim=1), nn.Flatten(), nn.Linear(2 * 2 * 4, 1))
    gc = L.neuron_groups(c)[0]
    assert (gc.multiplier, gc.spatial) == (2, 4)
    assert gc.outgoing_columns(torch.tensor([1])).tolist() == [4, 5, 6, 7, 12, 13, 14, 15]


class Dueling(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(3, 6), nn.ReLU())
        self.value = nn.Linear(6, 1)
        self.adv = nn.Linear(6, 4)

    def forward(self, x):
        z = self.enc(x)
        return self.value(z) + self.adv(z)


class Twin(nn.Module):
    def __init__(self):
        super().__init__()
        self.q1 = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 1))
        self.q2 = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 1))

    def forward(self, x):
        return self.q1(x), self.q2(x)


def test_parallel_heads_are_both_readers_and_outputs():
    m = Dueling()
    gs = L.neuron_groups(m)
    assert len(gs) == 1 and gs[0].layer is m.enc[0]
    assert gs[0].next_layers == (m.value, m.adv)
    w = torch.cat([m.value.weight, m.adv.weight]).detach().abs().sum(0)
    assert torch.allclose(gs[0].outgoing_abs_sum()[0], w)


def test_twin_networks_do_not_chain():
    m = Twin()
    gs = L.neuron_groups(m)
    assert [g.layer for g in gs] == [m.q1[0], m.q2[0]]
    assert [g.next_layers for g in gs] == [(m.q1[2],), (m.q2[2],)]


def test_a_module_without_forward_is_refused_in_one_line():
    m = nn.Module()
    m.a, m.b = nn.Linear(2, 3), nn.Linear(3, 1)
    with pytest.raises(ValueError) as err:
        L.neuron_groups(m, who="redo")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("redo: cannot read the structure of Module")
    assert "pairs=[(layer, next_layers, activation, norm), ...]" in msg


def test_no_activation_module_probes_layer_output_and_explicit_pairs():
    m = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2), nn.Linear(2, 1))
    assert L.neuron_groups(m)[0].probe is m[0]
    gs = L.neuron_groups(m, pairs=[(m[1], m[2])])
    assert len(gs) == 1 and gs[0].layer is m[1] and gs[0].next_layers == (m[2],)
    with pytest.raises(ValueError):
        L.neuron_groups(m, pairs=[(m[0], m[2])])  # 4 units cannot feed 2 inputs


def test_fresh_state_is_the_default_init_and_leaves_module_alone():
    layer = nn.Linear(5, 3)
    before = {n: p.detach().clone() for n, p in layer.named_parameters()}
    torch.manual_seed(7)
    fresh = R.fresh_state(layer)
    ref = nn.Linear(5, 3)
    torch.manual_seed(7)
    ref.reset_parameters()
    assert torch.equal(fresh["weight"], ref.weight) and torch.equal(fresh["bias"], ref.bias)
    for n, p in layer.named_parameters():
        assert torch.equal(p, before[n])
    bound = 1 / 5 ** 0.5
    assert fresh["weight"].abs().max() <= bound and fresh["bias"].abs().max() <= bound


def test_zero_optimizer_entries_rows_and_columns_only():
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    opt = torch.optim.Adam(m.parameters(), amsgrad=True)
    adam_step(m, torch.randn(6, 3), opt)
    w = m[2].weight
    st = {k: v.clone() for k, v in opt.state[w].items()}
    R.zero_optimizer_entries(opt, w, torch.tensor([1, 3]), dim=1)
    for k in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
        v = opt.state[w][k]
        assert v[:, [1, 3]].eq(0).all() and torch.equal(v[:, [0, 2]], st[k][:, [0, 2]])
        assert st[k][:, [1, 3]].ne(0).any()  # there was something to clear
    assert torch.equal(opt.state[w]["step"], st["step"])


def test_clear_optimizer_state_restarts_adam():
    m = nn.Linear(3, 2)
    opt = torch.optim.Adam(m.parameters())
    x = torch.randn(4, 3)
    adam_step(m, x, opt)
    adam_step(m, x, opt)
    R.clear_optimizer_state(opt, [m.weight])
    assert m.weight not in opt.state and float(opt.state[m.bias]["step"]) == 2
    adam_step(m, x, opt)
    assert float(opt.state[m.weight]["step"]) == 1


def test_measure_activity_hand_computed_hooks_removed_bn_restored():
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3), nn.ReLU(),
                      nn.Linear(3, 1))
    m.train()
    x = torch.randn(5, 1, 4, 4)
    gs = L.neuron_groups(m)
    bn_before = [b.clone() for b in m[1].buffers()]
    acts = L.measure_activity(m, gs, x)
    with torch.no_grad():
        h0 = m[2](m[1](m[0](x)))
        h1 = m[5](m[4](m[3](h0)))
    assert torch.allclose(acts[0][0], h0.abs().mean(dim=(0, 2, 3)))
    assert torch.allclose(acts[1][0], h1.abs().mean(0))
    for b, before in zip(m[1].buffers(), bn_before):
        if b.dtype.is_floating_point:
            assert not torch.equal(b, before)  # our own reference forward moved them
    snap = [b.clone() for b in m[1].buffers()]
    L.measure_activity(m, gs, x)
    assert all(torch.equal(b, s) for b, s in zip(m[1].buffers(), snap))
    assert all(not mod._forward_hooks for mod in m.modules())


def test_recycle_zeroes_outgoing_even_when_next_units_recycled_too():
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    g0, g1 = L.neuron_groups(m)
    n = R.recycle([(g0, torch.tensor([2])), (g1, torch.tensor([0]))], None)
    assert n == 2
    assert m[2].weight[:, 2].eq(0).all()          # incl. row 0, which was re-initialised
    assert m[4].weight[:, 0].eq(0).all()
    assert m[0].bias[2] == 0 and m[2].bias[0] == 0


def test_recycle_resets_per_unit_norm_params():
    m = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        m[1].weight.fill_(2.0)
        m[1].bias.fill_(0.5)
    opt = torch.optim.Adam(m.parameters())
    adam_step(m, torch.randn(64, 3), opt)
    g = L.neuron_groups(m)[0]
    w_before = m[1].weight.detach().clone()
    m_before = opt.state[m[1].weight]["exp_avg"].clone()
    assert m_before.ne(0).all()
    R.recycle([(g, torch.tensor([1]))], opt)
    assert m[1].weight[1] == 1.0 and m[1].bias[1] == 0.0
    assert torch.equal(m[1].weight[[0, 2, 3]], w_before[[0, 2, 3]])
    m_after = opt.state[m[1].weight]["exp_avg"]
    assert m_after[1] == 0 and torch.equal(m_after[[0, 2, 3]], m_before[[0, 2, 3]])


class Slope(nn.Module):
    """An AdaLin-like activation with a per-unit learnable parameter."""

    is_activation = True

    def __init__(self, n: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(n))

    def reset_parameters(self):
        with torch.no_grad():
            self.alpha.zero_()

    def forward(self, x):
        return torch.relu(x) + self.alpha * x


def test_recycle_resets_per_unit_activation_params():
    m = nn.Sequential(nn.Linear(3, 4), Slope(4), nn.Linear(4, 2))
    with torch.no_grad():
        m[1].alpha.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))
    g = L.neuron_groups(m)[0]
    assert g.activation is m[1]
    R.recycle([(g, torch.tensor([2]))], None)
    assert m[1].alpha.tolist() == pytest.approx([0.1, 0.2, 0.0, 0.4])


def test_factories_copy_into_and_missing_initialisers_by_message():
    acts = {n: L.make_activation(n, 3) for n in L.ACTIVATION_NAMES}
    assert [type(a).__name__ for a in acts.values()] == ["ReLU", "LeakyReLU", "Tanh", "GELU", "AdaLin", "CReLU"]
    assert acts["leaky_relu"].negative_slope == 0.01 and (acts["adalin"].kind, acts["adalin"].num_features) == ("relu", 3)
    with pytest.raises(ValueError) as e:
        L.make_activation("swish", 3)
    assert str(e.value) == "unknown activation 'swish'; valid: relu, leaky_relu, tanh, gelu, adalin, crelu"
    g, ln = L.make_norm("layer", 4, conv=True), L.make_norm("layer", 4, conv=False)
    assert (type(g), g.num_groups, g.num_channels, type(ln), ln.normalized_shape) == (nn.GroupNorm, 1, 4, nn.LayerNorm, (4,))
    assert L.make_norm(None, 4, conv=False) is None
    with pytest.raises(ValueError) as e:
        L.make_norm("batch", 4, conv=False)
    assert str(e.value) == "unknown norm 'batch'; valid: none, layer"
    src, dst = nn.Linear(2, 3), nn.Linear(2, 3)
    R.copy_into(src, dst)
    assert torch.equal(dst.weight, src.weight) and torch.equal(dst.bias, src.bias)
    for other, msg in [(nn.Linear(2, 4), "copy_into: weight (3, 2) does not match weight (4, 2)"),
                       (nn.LayerNorm(2), "copy_into: weight (3, 2) does not match weight (2,)")]:
        with pytest.raises(ValueError) as e:
            R.copy_into(src, other)
        assert str(e.value) == msg
    with pytest.raises(ValueError) as e:
        R.copy_into(nn.Linear(2, 3, bias=False), nn.Sequential(nn.Linear(2, 3)))
    assert str(e.value) == "copy_into: weight (3, 2) does not match 0.weight (3, 2)"
    for fn, what in [(R.fresh_state, "cannot draw a fresh init"), (R.reinit_, "cannot re-initialise it")]:
        with pytest.raises(TypeError) as e:
            fn(nn.ReLU())
        assert str(e.value) == f"ReLU has no reset_parameters(); {what}"


def test_find_activations_of_an_activation_root_and_activity_checks():
    class Act(nn.Module):
        is_activation = True

        def __init__(self):
            super().__init__()
            self.inner = nn.ReLU()

    act = Act()
    assert L.find_activations(act) == [("", act)]
    g = L.make_group("fc", nn.Linear(3, 4), [nn.Linear(4, 2)], None, None)
    h = torch.randn(2, 5, 4)  # (B, T, F): the units are on the last dim
    torch.testing.assert_close(g.activity(h), h.abs().mean(dim=(0, 1)).view(1, 4))
    with pytest.raises(TypeError) as e:
        g.activity((h,))
    assert str(e.value) == "fc: activity needs a tensor output, got tuple"
    with pytest.raises(RuntimeError) as e:
        g.activity(torch.zeros(2, 3))
    assert str(e.value) == "fc: expected 4 units on dim 1 of the activation, got shape (2, 3); pass explicit pairs"
    c = L.make_group("c", nn.Conv2d(1, 2, 3), [nn.Linear(4, 1)], None, None)  # S = 2 columns per channel
    assert c.spatial == 2 and c.outgoing_columns(torch.tensor([1], dtype=torch.int32)).tolist() == [2, 3]
    assert L.make_group("fc", nn.Linear(3, 4), [], None, None).spatial == 1
    assert L.make_group("fc", nn.Linear(3, 4), [nn.Conv2d(4, 2, 1)], None, None) is None  # a Linear feeds no conv
    assert L.make_group("c", nn.Conv2d(1, 4, 3), [nn.Conv2d(4, 4, 3, groups=2)], None, None) is None


def test_traced_signed_activity_and_optimizer_state_edge_cases():
    m = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x = torch.randn(6, 3)
    absolute, signed = L.measure_activity(m, L.neuron_groups(m), x, signed=True)
    with torch.no_grad():
        h = torch.tanh(m[0](x))
    torch.testing.assert_close(signed[0], h.mean(0).view(1, 4))
    assert not torch.allclose(signed[0], absolute[0])
    p = nn.Parameter(torch.ones(3, 2))
    opt = torch.optim.SGD([p], lr=0.1)
    R.clear_optimizer_state(opt, [p])  # no state yet: nothing to delete
    opt.state[p] = {"exp_avg": torch.ones(3, 2), "custom": torch.ones(3, 2), "momentum_buffer": None,
                    "step": torch.tensor(3.0)}
    R.zero_optimizer_entries(opt, p, torch.tensor([1]))  # dim 0 by default
    assert opt.state[p]["exp_avg"].sum(1).tolist() == [2.0, 0.0, 2.0]
    assert opt.state[p]["custom"].eq(1).all() and opt.state[p]["step"].item() == 3.0


def test_recycling_through_a_batchnorm_an_affine_free_norm_and_a_parameter_without_initialiser():
    from plasticity.adalin import AdaLin

    class Slope(nn.Module):  # a per-unit parameter but no reset_parameters(): left alone
        is_activation = True

        def __init__(self):
            super().__init__()
            self.a = nn.Parameter(torch.full((4,), 2.0))

        def forward(self, x):
            return x * self.a

    for norm, act in [(nn.BatchNorm1d(4), nn.ReLU()), (nn.LayerNorm(4, elementwise_affine=False), AdaLin("relu", 4)),
                      (None, Slope())]:
        m = nn.Sequential(nn.Linear(3, 4), *(x for x in (norm, act) if x is not None), nn.Linear(4, 2))
        with torch.no_grad():
            for t in [*(norm.parameters() if norm is not None else []), *act.parameters()]:
                t.fill_(3.0)
        (g,) = L.neuron_groups(m)
        R.recycle([(g, torch.tensor([1]))], None)
        if isinstance(norm, nn.BatchNorm1d):
            assert norm.weight.tolist() == [3.0, 1.0, 3.0, 3.0] and norm.num_batches_tracked.item() == 0
        if isinstance(act, AdaLin):
            assert act.alpha.tolist() == [3.0, 0.0, 3.0, 3.0]  # reached past the affine-free norm
        if isinstance(act, Slope):
            assert act.a.tolist() == [3.0, 3.0, 3.0, 3.0]
