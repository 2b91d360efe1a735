"""Continual Backprop (Dohare et al., 2024): utility, maturity, selection, replacement."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from plasticity.cbp import ContinualBackprop


def mlp():
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def step(m, opt, x, cbp):
    opt.zero_grad()
    m(x).pow(2).sum().backward()
    opt.step()
    cbp.after_step()


def test_utility_equals_hand_computation_over_three_steps():
    m = mlp()
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    cbp = ContinualBackprop(m, opt, decay=0.9, maturity=1000)
    u = torch.zeros(4)
    for t in range(3):
        x = torch.randn(6, 3)
        with torch.no_grad():
            h = torch.relu(m[0](x)).abs().mean(0)  # the training forward's activations
            m(torch.randn(50, 3) * 10)              # a no-grad forward: must be ignored
        opt.zero_grad()
        m(x).pow(2).sum().backward()
        opt.step()
        cbp.after_step()
        w_out = m[2].weight.detach().abs().sum(0)  # outgoing weights after the update
        u = 0.9 * u + 0.1 * h * w_out
        assert torch.allclose(cbp.utility[0], u, atol=1e-6), t
    assert cbp.age[0].tolist() == [3, 3, 3, 3]
    corrected = cbp.bias_corrected_utility(0)
    assert torch.allclose(corrected, u / (1 - 0.9 ** 3), atol=1e-6)


def test_two_training_forwards_are_averaged():
    m = mlp()
    cbp = ContinualBackprop(m, None, decay=0.5, maturity=1000)
    x1, x2 = torch.randn(4, 3), torch.randn(7, 3)
    m(x1).sum()
    m(x2).sum()
    cbp.after_step()
    with torch.no_grad():
        h = (torch.relu(m[0](x1)).mean(0) + torch.relu(m[0](x2)).mean(0)) / 2
    assert torch.allclose(cbp.utility[0], 0.5 * h * m[2].weight.abs().sum(0), atol=1e-6)


def test_lowest_utility_mature_unit_is_replaced():
    m = mlp()
    with torch.no_grad():
        m[2].weight.copy_(torch.tensor([[1.0, 0.8, 0.001, 0.5], [1.0, -0.9, 0.001, 0.6]]))
    opt = torch.optim.SGD(m.parameters(), lr=0.0, momentum=0.9)
    x = torch.randn(32, 3)
    # maturity 2, rate 0.25 with 4 eligible units: exactly one replacement, at step 3
    cbp = ContinualBackprop(m, opt, replacement_rate=0.25, decay=0.99, maturity=2)
    step(m, opt, x, cbp)
    step(m, opt, x, cbp)
    assert cbp.replaced == 0
    u_before = cbp.utility[0].clone()
    with torch.no_grad():
        h = torch.relu(m[0](x)).mean(0)
    u_expected = 0.99 * u_before + 0.01 * h * m[2].weight.abs().sum(0)
    victim = int(torch.argmin(u_expected / (1 - 0.99 ** 3)))
    assert victim == 2 and (h > 0).all()  # unit 2: live, but tiny outgoing weights
    before = copy.deepcopy(m)
    opt.zero_grad()
    m(x).pow(2).sum().backward()
    opt.step()  # lr 0: the weights stay put, the momentum buffers fill
    for p in m.parameters():
        opt.state[p]["momentum_buffer"].fill_(0.5)
    cbp.after_step()
    assert cbp.replaced == 1
    others = [i for i in range(4) if i != victim]
    assert cbp.age[0].tolist() == [0 if i == victim else 3 for i in range(4)]
    assert cbp.utility[0][victim] == 0
    assert torch.allclose(cbp.utility[0][others], u_expected[others], atol=1e-7)
    assert not torch.equal(m[0].weight[victim], before[0].weight[victim]) and m[0].bias[victim] == 0
    assert torch.equal(m[0].weight[others], before[0].weight[others])
    assert m[2].weight[:, victim].eq(0).all()
    assert torch.equal(m[2].weight[:, others], before[2].weight[:, others])
    mb = opt.state[m[2].weight]["momentum_buffer"]
    assert mb[:, victim].eq(0).all() and mb[:, others].eq(0.5).all()
    mb = opt.state[m[0].weight]["momentum_buffer"]
    assert mb[victim].eq(0).all() and mb[others].eq(0.5).all()


def test_immature_units_are_never_replaced():
    m = mlp()
    cbp = ContinualBackprop(m, None, replacement_rate=1.0, maturity=5)
    x = torch.randn(8, 3)
    for _ in range(5):
        m(x).sum()
        cbp.after_step()
    assert cbp.replaced == 0  # age 5 is not > 5
    m(x).sum()
    cbp.after_step()
    assert cbp.replaced == 4 and cbp.age[0].eq(0).all()
    m(x).sum()
    cbp.after_step()
    assert cbp.replaced == 4  # the new units are immature again


def test_fractional_replacements_accumulate():
    m = mlp()
    cbp = ContinualBackprop(m, None, replacement_rate=0.375, maturity=0)  # 4 eligible -> 1.5 a step
    x = torch.randn(8, 3)
    counts = []
    for _ in range(4):
        r = cbp.replaced
        m(x).sum()
        cbp.after_step()
        counts.append(cbp.replaced - r)
    assert counts == [1, 2, 1, 2]


def test_cnn_utility_sums_the_block_of_columns():
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
    cbp = ContinualBackprop(m, None, decay=0.0, maturity=100)
    x = torch.randn(5, 1, 4, 4)
    m(x).sum()
    cbp.after_step()
    with torch.no_grad():
        h = torch.relu(m[0](x)).mean(dim=(0, 2, 3))
        w = m[3].weight.abs()
        w_out = torch.stack([w[:, :4].sum(), w[:, 4:].sum()])
    assert torch.allclose(cbp.utility[0], h * w_out, atol=1e-6)


def test_hooks_persist_until_removed_and_inputs_fallback():
    m = mlp()
    cbp = ContinualBackprop(m, None, decay=0.0, maturity=100)
    assert len(m[1]._forward_hooks) == 1
    cbp.remove_hooks()
    assert all(not mod._forward_hooks for mod in m.modules())
    x = torch.randn(6, 3)
    cbp.after_step(x)  # no recorded forward: one no-grad forward on the inputs
    with torch.no_grad():
        h = torch.relu(m[0](x)).mean(0)
    assert torch.allclose(cbp.utility[0], h * m[2].weight.abs().sum(0), atol=1e-6)
    with pytest.warns(UserWarning, match="cbp: no activations recorded"):
        cbp.after_step()


def test_state_dict_round_trip():
    m = mlp()
    cbp = ContinualBackprop(m, None, replacement_rate=0.3, maturity=0)
    m(torch.randn(4, 3)).sum()
    cbp.after_step()
    c2 = ContinualBackprop(mlp(), None, replacement_rate=0.3, maturity=0)
    c2.load_state_dict(cbp.state_dict())
    assert torch.equal(c2.utility[0], cbp.utility[0]) and torch.equal(c2.age[0], cbp.age[0])
    assert c2.to_replace == cbp.to_replace and c2.replaced == cbp.replaced == 1


@pytest.mark.parametrize("kwargs, msg", [
    (dict(replacement_rate=-0.1), "cbp: replacement_rate must be in [0, 1], got -0.1"),
    (dict(decay=1.0), "cbp: decay must be in [0, 1), got 1.0"),
    (dict(maturity=-1), "cbp: maturity must be an int >= 0, got -1"),
])
def test_bad_values_raise(kwargs, msg):
    with pytest.raises(ValueError) as e:
        ContinualBackprop(mlp(), **kwargs)
    assert str(e.value) == msg


def _replace_one(bias_correction, constant_unit):
    torch.manual_seed(5)
    m = mlp()
    with torch.no_grad():
        m[0].bias.fill_(0.3)
        m[2].weight[:, 2] = torch.tensor([0.01, -0.02])  # unit 2: the lowest utility
        if constant_unit:
            m[0].weight[2] = 0.0  # h_2 = relu(0.3) = 0.3 on every input
    opt = torch.optim.SGD(m.parameters(), lr=0.0)
    x = torch.randn(64, 3)
    cbp = ContinualBackprop(m, opt, replacement_rate=0.25, decay=0.0, maturity=2,
                            bias_correction=bias_correction)
    step(m, opt, x, cbp)
    step(m, opt, x, cbp)
    with torch.no_grad():
        before = m(x)
    step(m, opt, x, cbp)  # replaces unit 2 (checked below)
    assert cbp.replaced == 1 and cbp.age[0][2] == 0 and m[2].weight[:, 2].eq(0).all()
    with torch.no_grad():
        return before, m(x)


def test_bias_correction_keeps_the_output_of_a_constant_mature_unit():
    before, after = _replace_one(True, constant_unit=True)
    torch.testing.assert_close(after, before, atol=1e-6, rtol=0)
    before, after = _replace_one(False, constant_unit=True)  # without: its 0.3*w is lost
    torch.testing.assert_close(after - before, -0.3 * torch.tensor([[0.01, -0.02]]).expand_as(after))


def test_bias_correction_keeps_the_mean_output_of_a_varying_unit():
    before, after = _replace_one(True, constant_unit=False)
    assert not torch.allclose(after, before, atol=1e-4)  # the input-dependent part is gone
    torch.testing.assert_close(after.mean(0), before.mean(0), atol=1e-6, rtol=0)  # its mean is kept


def test_signed_mean_activation_and_utility_of_a_tanh_layer_over_two_forwards():
    torch.manual_seed(1)
    m = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    cbp = ContinualBackprop(m, None, decay=0.25, maturity=1000)
    x1, x2 = torch.randn(5, 3), torch.randn(9, 3)
    m(x1).sum()
    m(x2).sum()
    cbp.after_step()
    with torch.no_grad():
        h1, h2 = torch.tanh(m[0](x1)), torch.tanh(m[0](x2))
        signed = (h1.mean(0) + h2.mean(0)) / 2
        absolute = (h1.abs().mean(0) + h2.abs().mean(0)) / 2
    assert not torch.allclose(signed, absolute, atol=1e-2)  # tanh: the sign matters here
    torch.testing.assert_close(cbp.mean_activation[0], 0.75 * signed.view(1, 4))
    torch.testing.assert_close(cbp.utility[0], 0.75 * absolute * m[2].weight.abs().sum(0))
    torch.testing.assert_close(cbp.bias_corrected_utility(0), cbp.utility[0] / 0.75)  # age 1: 1 - 0.25^1
    assert cbp.updates == 1 and cbp.age[0].dtype == torch.long


def test_replaced_units_restart_their_statistics_and_the_metrics_count_them():
    torch.manual_seed(2)
    m = mlp()
    cbp = ContinualBackprop(m, None, replacement_rate=0.5, decay=0.5, maturity=0)
    assert cbp.metrics() == {"cbp_replaced": 0.0, "cbp_mature_fraction": 0.0}
    m(torch.randn(8, 3)).sum()
    cbp.after_step()  # 4 eligible units, 0.5 * 4 = 2 replaced
    new = (cbp.age[0] == 0).nonzero().flatten()
    assert cbp.replaced == 2 and new.numel() == 2 and cbp.updates == 1
    assert cbp.metrics() == {"cbp_replaced": 2.0, "cbp_mature_fraction": 0.5}  # ages 0, 0, 1, 1 > 0
    assert cbp.mean_activation[0][:, new].eq(0).all() and cbp.utility[0][new].eq(0).all()
    assert cbp.bias_corrected_utility(0)[new].eq(0).all()  # age 0: 0, not 0 / 0


def test_a_single_eligible_unit_is_replaced_and_a_layer_with_none_due_does_not_stop_the_next():
    lone = nn.Sequential(nn.Linear(3, 1), nn.ReLU(), nn.Linear(1, 2))
    cbp = ContinualBackprop(lone, None, replacement_rate=1.0, maturity=0)
    lone(torch.randn(4, 3)).sum()
    cbp.after_step()
    assert cbp.replaced == 1
    two = nn.Sequential(nn.Linear(3, 1), nn.ReLU(), nn.Linear(1, 4), nn.ReLU(), nn.Linear(4, 2))
    cbp = ContinualBackprop(two, None, replacement_rate=0.25, maturity=0)
    two(torch.randn(4, 3)).sum()
    cbp.after_step()  # layer 0: 0.25 due, none replaced; layer 1: 1.0 due, one replaced
    assert cbp.replaced == 1 and cbp.to_replace == [0.25, 0.0]
    assert cbp.age[0].tolist() == [1] and sorted(cbp.age[1].tolist()) == [0, 1, 1, 1]


def test_defaults_checkpoint_keys_and_a_partial_checkpoint():
    m = mlp()
    target = copy.deepcopy(m)
    cbp = ContinualBackprop(m, None, targets=[target])
    assert (cbp.replacement_rate, cbp.decay, cbp.maturity, cbp.bias_correction) == (1e-4, 0.99, 10_000, True)
    assert cbp.targets == [target]
    m(torch.randn(4, 3)).sum()
    cbp.after_step()
    state = cbp.state_dict()
    assert list(state) == ["updates", "replaced", "to_replace", "utility", "age", "mean_activation"]
    c2 = ContinualBackprop(mlp(), None)
    c2.load_state_dict(state)
    assert c2.updates == 1 and torch.equal(c2.mean_activation[0], cbp.mean_activation[0])
    assert torch.equal(c2.utility[0], cbp.utility[0]) and c2.age[0].tolist() == [1, 1, 1, 1]
    c3 = ContinualBackprop(mlp(), None)
    c3.load_state_dict({})  # nothing saved: everything stays at its start
    assert (c3.updates, c3.replaced, c3.to_replace) == (0, 0, [0.0])
    assert c3.utility[0].eq(0).all() and c3.age[0].eq(0).all() and c3.mean_activation[0].eq(0).all()


def test_warning_only_without_activations_and_once():
    import warnings

    m = mlp()
    cbp = ContinualBackprop(m, None, maturity=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m(torch.randn(4, 3)).sum()
        cbp.after_step()  # activations were recorded: no warning
    with pytest.warns(UserWarning) as record:
        cbp.after_step()
        cbp.after_step()
    assert len(record) == 1
    assert str(record[0].message) == ("cbp: no activations recorded (no grad-enabled forward) and no inputs; "
                                      "utilities are not updated this step")
    cbp.remove_hooks()
    cbp.remove_hooks()  # a second call is harmless
    assert cbp._handles == []


def test_explicit_pairs_more_bad_values_and_refusals():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.act, self.fc2 = nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)

        def forward(self, x):
            return self.fc2(self.act(self.fc1(-x if x.sum() > 0 else x)))

    m = DataDependent()
    with pytest.raises(ValueError) as e:
        ContinualBackprop(m, None)
    assert str(e.value).startswith("cbp: cannot read the structure of DataDependent")
    cbp = ContinualBackprop(m, None, pairs=[(m.fc1, m.fc2, m.act)])
    assert [g.layer for g in cbp.groups] == [m.fc1]
    with pytest.raises(ValueError) as e:
        ContinualBackprop(nn.Sequential(nn.Linear(3, 2)), None)
    assert str(e.value) == "cbp: the module has no hidden layer (a Linear/Conv followed by another)"
    for kwargs, msg in [(dict(replacement_rate=1.5), "cbp: replacement_rate must be in [0, 1], got 1.5"),
                        (dict(maturity=True), "cbp: maturity must be an int >= 0, got True"),
                        (dict(maturity=2.0), "cbp: maturity must be an int >= 0, got 2.0")]:
        with pytest.raises(ValueError) as e:
            ContinualBackprop(mlp(), **kwargs)
        assert str(e.value) == msg
    for rate in (0.0, 1.0):
        assert ContinualBackprop(mlp(), None, replacement_rate=rate, decay=0.0, maturity=0).replacement_rate == rate


def test_next_layer_bias_correction_by_hand_with_decay_readers_without_bias_and_conv_blocks():
    class Fork(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2, bias=False), nn.Linear(4, 2)

        def forward(self, x):
            h = torch.relu(self.fc1(x))
            return self.a(h) + self.b(h)

    m = Fork()
    cbp = ContinualBackprop(m, None, decay=0.5, maturity=1000)
    cbp.mean_activation[0][0, 2] = 0.3
    cbp.age[0][2] = 2  # f^ = 0.3 / (1 - 0.5^2) = 0.4
    b = m.b.bias.detach().clone()
    cbp._correct_next_bias(0, torch.tensor([2]))
    torch.testing.assert_close(m.b.bias, b + 0.4 * m.b.weight[:, 2].detach())  # the reader after a bias-free one
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))  # S = 4 columns a channel
    cbp = ContinualBackprop(conv, None, decay=0.5, maturity=1000)
    cbp.mean_activation[0][0, 1] = 0.3
    cbp.age[0][1] = 1  # f^ = 0.3 / 0.5 = 0.6
    b = conv[3].bias.detach().clone()
    cbp._correct_next_bias(0, torch.tensor([1]))
    torch.testing.assert_close(conv[3].bias, b + 0.6 * conv[3].weight[:, 4:8].detach().sum(1))
    for _ in range(3):
        conv(torch.randn(2, 1, 4, 4)).sum()
        cbp.after_step()
    assert cbp.updates == 3
