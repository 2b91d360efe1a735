"""ReDo (Sokar et al., 2023): scores, which neurons are recycled and how, schedule, hooks."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from plasticity.redo import ReDo, dormancy_scores


def mlp():
    """Layer 0: unit 1 dead, unit 2 weak (score < 0.1), units 0 and 3 live.
    Layer 1: unit 3 dead, the others live. Inputs are positive."""
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2))
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0], [0.01, 0.01, 0.01], [1.0, 0.5, 0.2]]))
        m[0].bias.copy_(torch.tensor([0.1, -1.0, 0.0, 0.1]))
        m[2].weight.copy_(torch.rand(5, 4) * 0.5)
        m[2].bias.fill_(0.1)
        m[2].weight[3] = -1.0
        m[2].bias[3] = -1.0
    return m


def with_adam_state(m, x):
    """An Adam optimizer whose moments are all non-zero (0.5 / 0.25) after one step."""
    opt = torch.optim.Adam(m.parameters(), lr=1e-4)
    opt.zero_grad()
    m(x).pow(2).sum().backward()
    opt.step()
    for p in m.parameters():
        opt.state[p]["exp_avg"].fill_(0.5)
        opt.state[p]["exp_avg_sq"].fill_(0.25)
    return opt


def hand_scores_mlp(m, x):
    with torch.no_grad():
        h0 = torch.relu(x @ m[0].weight.T + m[0].bias)
        h1 = torch.relu(h0 @ m[2].weight.T + m[2].bias)
    return [a / a.mean() for a in (h0.abs().mean(0), h1.abs().mean(0))]


def test_scores_equal_hand_computation():
    m = mlp()
    x = torch.rand(16, 3)
    got = ReDo(m).scores(x)
    want = hand_scores_mlp(m, x)
    for g, w in zip(got, want):
        assert torch.allclose(g, w, atol=1e-6)
    assert got[0][1] == 0 and got[1][3] == 0 and 0 < got[0][2] < 0.1
    assert (got[0][[0, 3]] > 0.1).all() and (got[1][[0, 1, 2, 4]] > 0.1).all()
    x4 = ReDo(m, batch_size=4).scores(x)
    for g, w in zip(x4, hand_scores_mlp(m, x[:4])):
        assert torch.allclose(g, w, atol=1e-6)


def test_dormancy_scores_guard_zero_layer():
    assert torch.equal(dormancy_scores(torch.zeros(3)), torch.zeros(3))
    assert torch.allclose(dormancy_scores(torch.tensor([1.0, 3.0])), torch.tensor([0.5, 1.5]))


def test_recycle_mlp_exact_entries():
    m = mlp()
    x = torch.rand(16, 3)
    opt = with_adam_state(m, x)
    before = copy.deepcopy(m)
    redo = ReDo(m, opt, tau=0.1, every=1)
    fresh = copy.deepcopy(m)
    torch.manual_seed(42)
    fresh[0].reset_parameters()
    fresh[2].reset_parameters()
    torch.manual_seed(42)
    redo.after_step(x)
    assert redo.metrics() == {"redo_recycled": 3.0, "redo_dormant_ratio": pytest.approx(3 / 9)}
    # layer 0: units 1, 2 recycled
    assert torch.equal(m[0].weight[[1, 2]], fresh[0].weight[[1, 2]])
    assert m[0].bias[[1, 2]].eq(0).all()
    assert torch.equal(m[0].weight[[0, 3]], before[0].weight[[0, 3]])
    assert torch.equal(m[0].bias[[0, 3]], before[0].bias[[0, 3]])
    # layer 1: columns 1, 2 zero (outgoing of layer 0's units), unit 3 recycled
    assert m[2].weight[:, [1, 2]].eq(0).all()
    assert torch.equal(m[2].weight[3, [0, 3]], fresh[2].weight[3, [0, 3]])
    assert m[2].bias[3] == 0
    live = [0, 1, 2, 4]
    assert torch.equal(m[2].weight[live][:, [0, 3]], before[2].weight[live][:, [0, 3]])
    assert torch.equal(m[2].bias[live], before[2].bias[live])
    # output layer: only its column 3 (outgoing of layer 1's unit 3) is touched, never its rows
    assert m[4].weight[:, 3].eq(0).all()
    assert torch.equal(m[4].weight[:, [0, 1, 2, 4]], before[4].weight[:, [0, 1, 2, 4]])
    assert torch.equal(m[4].bias, before[4].bias)
    # Adam moments zero for exactly the recycled entries
    zero = {
        id(m[0].weight): (0, [1, 2]), id(m[0].bias): (0, [1, 2]),
        id(m[2].weight): None, id(m[2].bias): (0, [3]), id(m[4].weight): (1, [3]), id(m[4].bias): (0, []),
    }
    mask_w2 = torch.zeros(5, 4, dtype=torch.bool)
    mask_w2[:, [1, 2]] = True
    mask_w2[3] = True
    for p in m.parameters():
        for key, val in (("exp_avg", 0.5), ("exp_avg_sq", 0.25)):
            s = opt.state[p][key]
            if zero[id(p)] is None:
                mask = mask_w2
            else:
                dim, idx = zero[id(p)]
                mask = torch.zeros_like(s, dtype=torch.bool)
                mask.index_fill_(dim, torch.tensor(idx, dtype=torch.long), True)
            assert s[mask].eq(0).all() and s[~mask].eq(val).all(), key


def test_recycling_dead_units_keeps_the_output():
    m = mlp()
    x = torch.rand(16, 3)
    y = m(x).detach()
    redo = ReDo(m, tau=0.0, every=1)
    redo.after_step(x)
    assert redo.recycled == 2  # only the exactly-dead units (layer 0 unit 1, layer 1 unit 3)
    assert m[0].bias[1] == 0 and m[2].bias[3] == 0
    assert torch.allclose(m(x), y, atol=1e-6)


def test_no_recycle_before_every_and_hooks_removed():
    m = mlp()
    x = torch.rand(16, 3)
    redo = ReDo(m, every=3)
    state = copy.deepcopy(m.state_dict())
    redo.after_step(x)
    redo.after_step(x)
    assert all(torch.equal(t, state[n]) for n, t in m.state_dict().items())
    assert redo.metrics()["redo_recycled"] == 0
    redo.after_step(x)
    assert redo.recycled == 3
    assert all(not mod._forward_hooks and not mod._forward_pre_hooks for mod in m.modules())


def test_cnn_to_linear_channel_recycled_with_block_columns():
    m = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        m[0].weight.abs_()
        m[0].bias.fill_(0.1)
        m[0].weight[1] = -1.0
        m[0].bias[1] = -1.0
        m[3].weight.abs_()
        m[3].bias.fill_(0.1)
    x = torch.rand(8, 1, 4, 4)
    opt = with_adam_state(m, x)
    before = copy.deepcopy(m)
    redo = ReDo(m, opt, tau=0.1, every=1)
    with torch.no_grad():
        h = torch.relu(m[0](x))
        a = h.abs().mean(dim=(0, 2, 3))
    assert torch.allclose(redo.scores(x)[0], a / a.mean(), atol=1e-6)
    redo.after_step(x)
    assert redo.recycled == 1
    assert not torch.equal(m[0].weight[1], before[0].weight[1]) and m[0].bias[1] == 0
    assert torch.equal(m[0].weight[[0, 2]], before[0].weight[[0, 2]])
    assert m[3].weight[:, 4:8].eq(0).all()
    assert torch.equal(m[3].weight[:, :4], before[3].weight[:, :4])
    assert torch.equal(m[3].weight[:, 8:], before[3].weight[:, 8:])
    for key in ("exp_avg", "exp_avg_sq"):
        s = opt.state[m[3].weight][key]
        assert s[:, 4:8].eq(0).all() and s[:, :4].ne(0).all() and s[:, 8:].ne(0).all()
        s = opt.state[m[0].weight][key]
        assert s[1].eq(0).all() and s[[0, 2]].ne(0).all()


def test_missing_inputs_at_a_check_warns():
    redo = ReDo(mlp(), every=1)
    with pytest.warns(UserWarning, match="redo: after_step got no inputs"):
        redo.after_step()
    assert redo.recycled == 0


def test_state_dict_round_trip():
    m = mlp()
    redo = ReDo(m, every=1)
    redo.after_step(torch.rand(16, 3))
    r2 = ReDo(mlp(), every=1)
    r2.load_state_dict(redo.state_dict())
    assert r2.metrics() == redo.metrics() and r2.updates == 1


@pytest.mark.parametrize("kwargs, msg", [
    (dict(tau=-1.0), "redo: tau must be >= 0, got -1.0"),
    (dict(every=0), "redo: every must be an int >= 1, got 0"),
    (dict(batch_size=0), "redo: batch_size must be None or an int >= 1, got 0"),
])
def test_bad_values_raise(kwargs, msg):
    with pytest.raises(ValueError) as e:
        ReDo(mlp(), **kwargs)
    assert str(e.value) == msg


class TwoInputs(nn.Module):
    """q(x, scale) = fc2(relu(fc1(x * scale))): a module called with a tuple of arguments."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x, scale):
        return self.fc2(torch.relu(self.fc1(x * scale)))


def test_batch_size_takes_the_first_rows_of_each_tensor_argument_and_passes_others_whole():
    torch.manual_seed(0)
    m = TwoInputs()
    x = torch.randn(10, 3)
    got = ReDo(m, batch_size=4).scores((x, 2.0))[0]
    with torch.no_grad():
        a = torch.relu(m.fc1(x[:4] * 2.0)).mean(0)
        whole = torch.relu(m.fc1(x * 2.0)).mean(0)
    torch.testing.assert_close(got, a / a.mean())
    assert not torch.allclose(got, whole / whole.mean(), atol=1e-3)  # the cap really changes the scores
    torch.testing.assert_close(ReDo(m).scores([x, 2.0])[0], whole / whole.mean())


def test_defaults_counters_and_checkpoint_keys():
    m = mlp()
    target = copy.deepcopy(m)
    t_before = copy.deepcopy(target.state_dict())
    redo = ReDo(m, targets=[target])
    assert (redo.tau, redo.every, redo.batch_size, redo.targets) == (0.1, 1000, None, [target])
    assert redo.metrics() == {"redo_recycled": 0.0, "redo_dormant_ratio": 0.0}
    assert redo.state_dict() == {"updates": 0, "recycled": 0, "recycled_total": 0, "dormant_ratio": 0.0}
    x = torch.rand(16, 3)
    n1 = redo.check(x)
    n2 = redo.check(x)  # the second check finds whatever the fresh units do
    assert n1 == 3
    assert all(torch.equal(t, t_before[n]) for n, t in target.state_dict().items())  # targets left alone
    assert redo.state_dict() == {"updates": 0, "recycled": n2, "recycled_total": 3 + n2,
                                 "dormant_ratio": n2 / 9}
    r2 = ReDo(mlp())
    r2.load_state_dict({"updates": 7, "recycled": 2, "recycled_total": 9, "dormant_ratio": 0.25})
    assert r2.state_dict() == {"updates": 7, "recycled": 2, "recycled_total": 9, "dormant_ratio": 0.25}
    r2.load_state_dict({})
    assert r2.state_dict() == {"updates": 0, "recycled": 0, "recycled_total": 0, "dormant_ratio": 0.0}


def test_missing_inputs_warn_once():
    redo = ReDo(mlp(), every=1)
    with pytest.warns(UserWarning) as record:
        redo.after_step()
        redo.after_step()
    assert len(record) == 1
    assert str(record[0].message) == ("redo: after_step got no inputs at a check; skipping it "
                                      "(pass the batch's module inputs to after_step)")
    assert redo.updates == 2


def test_more_bad_values_and_refusals():
    for kwargs, msg in [(dict(every=True), "redo: every must be an int >= 1, got True"),
                        (dict(every=2.0), "redo: every must be an int >= 1, got 2.0"),
                        (dict(batch_size=True), "redo: batch_size must be None or an int >= 1, got True"),
                        (dict(batch_size=4.0), "redo: batch_size must be None or an int >= 1, got 4.0")]:
        with pytest.raises(ValueError) as e:
            ReDo(mlp(), **kwargs)
        assert str(e.value) == msg
    assert ReDo(mlp(), batch_size=1, tau=0.0).batch_size == 1
    with pytest.raises(ValueError) as e:
        ReDo(nn.Sequential(nn.Linear(3, 2)))
    assert str(e.value) == "redo: the module has no hidden layer (a Linear/Conv followed by another)"

    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(3, 4), nn.Linear(4, 1)

        def forward(self, x):
            return self.fc2(torch.relu(self.fc1(-x if x.sum() > 0 else x)))

    with pytest.raises(ValueError) as e:
        ReDo(DataDependent())
    assert str(e.value).startswith("redo: cannot read the structure of DataDependent")
