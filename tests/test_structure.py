"""The interventions on networks as people write them: structure from the traced forward pass.

CleanRL's DQN `QNetwork`, its SAC `SoftQNetwork` and `Actor` (functional `F.relu`), a dueling
head, an IMPALA residual block, a twin critic, a network sharing one `nn.ReLU` module between
layers and one registering its layers out of forward order.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import plasticity as pl
from plasticity.layers import neuron_groups


class CleanRLQNetwork(nn.Module):  # cleanrl/dqn.py
    def __init__(self, obs=4, n=2):
        super().__init__()
        self.network = nn.Sequential(nn.Linear(obs, 12), nn.ReLU(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, n))

    def forward(self, x):
        return self.network(x)


class SoftQNetwork(nn.Module):  # cleanrl/sac_continuous_action.py
    def __init__(self, obs=3, act=2, h=10):
        super().__init__()
        self.fc1 = nn.Linear(obs + act, h)
        self.fc2 = nn.Linear(h, h)
        self.fc3 = nn.Linear(h, 1)

    def forward(self, x, a):
        x = torch.cat([x, a], 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class Actor(nn.Module):  # cleanrl/sac_continuous_action.py
    def __init__(self, obs=3, act=2, h=10):
        super().__init__()
        self.fc1 = nn.Linear(obs, h)
        self.fc2 = nn.Linear(h, h)
        self.fc_mean = nn.Linear(h, act)
        self.fc_logstd = nn.Linear(h, act)
        self.register_buffer("action_scale", torch.ones(act))

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        mean = self.fc_mean(x)
        log_std = torch.tanh(self.fc_logstd(x))
        log_std = -5 + 0.5 * (2 - -5) * (log_std + 1)
        return mean, log_std


class Dueling(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 9)
        self.a1, self.a2 = nn.Linear(9, 6), nn.Linear(6, 3)
        self.v1, self.v2 = nn.Linear(9, 5), nn.Linear(5, 1)

    def forward(self, x):
        z = F.relu(self.fc(x))
        v = self.v2(F.relu(self.v1(z)))
        a = self.a2(F.relu(self.a1(z)))
        return v + a - a.mean(dim=1, keepdim=True)


class Twin(nn.Module):
    def __init__(self):
        super().__init__()
        self.q1, self.q2 = SoftQNetwork(), SoftQNetwork()

    def forward(self, x, a):
        return self.q1(x, a), self.q2(x, a)


class SharedReLU(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(4, 10), nn.Linear(10, 8), nn.Linear(8, 2)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.fc3(self.act(self.fc2(self.act(self.fc1(x)))))


class OutOfOrder(nn.Module):
    def __init__(self):
        super().__init__()
        self.out = nn.Linear(8, 2)   # registered first, called last
        self.fc2 = nn.Linear(10, 8)
        self.fc1 = nn.Linear(4, 10)

    def forward(self, x):
        return self.out(F.relu(self.fc2(F.relu(self.fc1(x)))))


class Residual(nn.Module):  # an IMPALA block between a conv stem and a linear head
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, padding=1)
        self.conv0 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Linear(4 * 5 * 5, 3)

    def forward(self, x):
        x = self.stem(x)
        y = self.conv1(F.relu(self.conv0(F.relu(x))))
        return self.head(F.relu(x + y).flatten(1))


def inputs_for(m, n=256):
    if isinstance(m, (SoftQNetwork, Twin)):
        return (torch.randn(n, 3), torch.randn(n, 2))
    if isinstance(m, Actor):
        return torch.randn(n, 3)
    if isinstance(m, Residual):
        return torch.randn(n, 2, 5, 5)
    return torch.randn(n, 4)


def call(m, x):
    return m(*x) if isinstance(x, tuple) else m(x)


def first(out):
    return out[0] if isinstance(out, tuple) else out


# name of each hidden layer -> names of the layers reading it
READERS = {
    CleanRLQNetwork: {"network.0": ["network.2"], "network.2": ["network.4"]},
    SoftQNetwork: {"fc1": ["fc2"], "fc2": ["fc3"]},
    Actor: {"fc1": ["fc2"], "fc2": ["fc_mean", "fc_logstd"]},
    Dueling: {"fc": ["a1", "v1"], "a1": ["a2"], "v1": ["v2"]},
    Twin: {"q1.fc1": ["q1.fc2"], "q1.fc2": ["q1.fc3"], "q2.fc1": ["q2.fc2"], "q2.fc2": ["q2.fc3"]},
    SharedReLU: {"fc1": ["fc2"], "fc2": ["fc3"]},
    OutOfOrder: {"fc1": ["fc2"], "fc2": ["out"]},
    Residual: {"conv0": ["conv1"]},  # stem and conv1 feed the residual sum: not recyclable
}
NETS = list(READERS)


@pytest.mark.parametrize("cls", NETS, ids=lambda c: c.__name__)
def test_groups_follow_the_forward_pass(cls):
    m = cls()
    names = {id(mod): n for n, mod in m.named_modules()}
    got = {g.name: sorted(names[id(r)] for r in g.next_layers) for g in neuron_groups(m)}
    assert got == {k: sorted(v) for k, v in READERS[cls].items()}


def kill(layer, unit):
    with torch.no_grad():
        layer.weight[unit] = 0.0
        layer.bias[unit] = -1.0


@pytest.mark.parametrize("cls", NETS, ids=lambda c: c.__name__)
def test_redo_recycles_exactly_the_dead_units_rows_columns_and_adam_entries(cls):
    torch.manual_seed(0)
    m = cls()
    named = dict(m.named_modules())
    hidden = list(READERS[cls])
    with torch.no_grad():  # every other unit alive on some input
        for h in hidden:
            named[h].bias.fill_(0.5)
    target = hidden[-1]
    kill(named[target], 1)
    x = inputs_for(m)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    opt.zero_grad()
    out = call(m, x)
    sum(o.pow(2).mean() for o in (out if isinstance(out, tuple) else (out,))).backward()
    opt.step()
    kill(named[target], 1)  # the step moved it: dead again, with non-zero Adam moments
    before = copy.deepcopy(m.state_dict())
    moments = {p: opt.state[p]["exp_avg"].clone() for p in m.parameters()}
    out_before = first(call(m, x)).detach()
    redo = pl.ReDo(m, opt, tau=0.0, every=1)
    redo.after_step(x)
    assert redo.recycled == 1
    layer, readers = named[target], [named[r] for r in READERS[cls][target]]
    for name, p in m.named_parameters():
        mod = named[name.rsplit(".", 1)[0]]
        changed = (p.detach() != before[name])
        zeroed = (opt.state[p]["exp_avg"] == 0) & (moments[p] != 0)
        expect = torch.zeros_like(changed)
        if mod is layer:
            expect[1] = True  # fresh incoming row, zero bias
        elif mod in readers and name.endswith("weight"):
            expect[:, 1] = before[name][:, 1] != 0  # outgoing column zeroed
        if mod is layer or (mod in readers and name.endswith("weight")):
            slot = torch.zeros_like(changed)
            if mod is layer:
                slot[1] = True
            else:
                slot[:, 1] = True
            assert torch.equal(zeroed, slot & (moments[p] != 0)), name
            assert (opt.state[p]["exp_avg"][~slot] == moments[p][~slot]).all(), name
        else:
            assert not zeroed.any(), name
        assert torch.equal(changed, expect), name
    # a dead unit contributed nothing: the output is exactly unchanged
    assert torch.equal(first(call(m, x)).detach(), out_before)


@pytest.mark.parametrize("cls", [Actor, Dueling, SharedReLU, SoftQNetwork], ids=lambda c: c.__name__)
def test_cbp_utilities_use_the_real_outgoing_weights(cls):
    torch.manual_seed(1)
    m = cls()
    named = dict(m.named_modules())
    cbp = pl.ContinualBackprop(m, None, decay=0.9, maturity=1000)
    x = inputs_for(m, 16)
    cbp.after_step(x)
    for i, g in enumerate(cbp.groups):
        h = g.structure.probe([g.probe_node])
        with torch.no_grad():
            a = call(h, x)[0].abs().mean(0)
        w_out = sum(named[r].weight.abs().sum(0) for r in READERS[cls][g.name])
        assert torch.allclose(cbp.utility[i], 0.1 * a * w_out, atol=1e-6), g.name


RESETS = {
    Actor: {1: {"fc_mean", "fc_logstd"}, 2: {"fc_mean", "fc_logstd", "fc2"}},
    Dueling: {1: {"a2", "v2"}, 2: {"a1", "a2", "v1", "v2"}},
    OutOfOrder: {1: {"out"}, 2: {"out", "fc2"}},
    Twin: {1: {"q1.fc3", "q2.fc3"}},
    Residual: {1: {"head"}, 2: {"head", "conv1", "stem"}},
}


@pytest.mark.parametrize("cls", list(RESETS), ids=lambda c: c.__name__)
def test_reset_last_k_follows_the_data_flow(cls):
    for k, names in RESETS[cls].items():
        r = pl.Reset(cls(), None, layers=k, every=1)
        assert {n for n, _ in r.chosen} == names, k


def norms(*layers):
    return [torch.linalg.vector_norm(layer.weight.detach()) for layer in layers]


def c_of(now, init, lam):
    return lam * init / now + (1 - lam)


def test_swr_twin_critic_each_branch_is_its_own_scaled_copy():
    torch.manual_seed(2)
    m = Twin()
    swr = pl.SWR(m, lam=0.3)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(1.7)
    x = inputs_for(m, 8)
    q1, q2 = (t.detach() for t in m(*x))
    c1 = [c_of(n, n / 1.7, 0.3) for n in norms(m.q1.fc1, m.q1.fc2, m.q1.fc3)]
    c2 = [c_of(n, n / 1.7, 0.3) for n in norms(m.q2.fc1, m.q2.fc2, m.q2.fc3)]
    swr.after_step(x)
    n1, n2 = m(*x)
    torch.testing.assert_close(n1, c1[0] * c1[1] * c1[2] * q1)
    torch.testing.assert_close(n2, c2[0] * c2[1] * c2[2] * q2)


def test_swr_dueling_streams_and_policy_heads_and_head_lam_on_every_output():
    torch.manual_seed(3)
    m = Dueling()
    swr = pl.SWR(m, lam=0.2, head_lam=0.5)
    assert {layer.name: layer.lam for layer in swr.layers} == {"fc": 0.2, "v1": 0.2, "v2": 0.5, "a1": 0.2, "a2": 0.5}
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(2.0)
    x = torch.randn(6, 4)
    with torch.no_grad():
        z = F.relu(m.fc(x))
        v, a = m.v2(F.relu(m.v1(z))), m.a2(F.relu(m.a1(z)))
    cf, cv1, cv2, ca1, ca2 = (c_of(n, n / 2, lam) for n, lam in
                              zip(norms(m.fc, m.v1, m.v2, m.a1, m.a2), (0.2, 0.2, 0.5, 0.2, 0.5)))
    swr.rescale()
    with torch.no_grad():
        z2 = F.relu(m.fc(x))
        torch.testing.assert_close(m.v2(F.relu(m.v1(z2))), cf * cv1 * cv2 * v)
        torch.testing.assert_close(m.a2(F.relu(m.a1(z2))), cf * ca1 * ca2 * a)

    pol = Actor()
    swr = pl.SWR(pol, lam=0.1, head_lam=0.4)
    assert {layer.name: layer.lam for layer in swr.layers} == {"fc1": 0.1, "fc2": 0.1, "fc_mean": 0.4,
                                                               "fc_logstd": 0.4}
    with torch.no_grad():
        for p in pol.parameters():
            p.mul_(3.0)
    x = torch.randn(5, 3)
    mean = pol(x)[0].detach()
    b = pol.fc_logstd.bias.detach().clone()
    c = [c_of(n, n / 3, lam) for n, lam in zip(norms(pol.fc1, pol.fc2, pol.fc_mean, pol.fc_logstd),
                                               (0.1, 0.1, 0.4, 0.4))]
    swr.rescale()
    torch.testing.assert_close(pol(x)[0], c[0] * c[1] * c[2] * mean)
    torch.testing.assert_close(pol.fc_logstd.bias, c[0] * c[1] * c[3] * b)


def test_swr_after_a_residual_sum_continues_with_the_skip_paths_product():
    torch.manual_seed(4)
    m = Residual()
    swr = pl.SWR(m, lam=0.5)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(2.0)
    b_head, b_conv1 = m.head.bias.detach().clone(), m.conv1.bias.detach().clone()
    cs, c0, c1, ch = (c_of(n, n / 2, 0.5) for n in norms(m.stem, m.conv0, m.conv1, m.head))
    swr.rescale()
    torch.testing.assert_close(m.conv1.bias, cs * c0 * c1 * b_conv1)  # the branch: its own product
    torch.testing.assert_close(m.head.bias, cs * ch * b_head)        # after x + y: the skip path's


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(3, 4), nn.Linear(4, 1)

    def forward(self, x):
        if x.sum() > 0:
            x = -x
        return self.fc2(F.relu(self.fc1(x)))


@pytest.mark.parametrize("build, hint", [
    (lambda m: pl.ReDo(m, None), "pairs=[(layer, next_layers, activation, norm), ...]"),
    (lambda m: pl.ContinualBackprop(m, None), "pairs="),
    (lambda m: pl.SWR(m), "chain=True"),
    (lambda m: pl.Reset(m, None, layers=1, every=1), "layers=['name', ...]"),
    (lambda m: pl.Monitor(m), "layers=['act1', ...]"),
])
def test_unreadable_networks_are_refused_in_one_line(build, hint):
    with pytest.raises(ValueError) as err:
        build(DataDependent())
    msg = str(err.value)
    assert "\n" not in msg and "cannot read the structure of DataDependent" in msg and hint in msg
    m = DataDependent()
    redo = pl.ReDo(m, None, pairs=[(m.fc1, m.fc2)])  # the explicit grouping works
    assert redo.groups[0].next_layers == (m.fc2,)
    pl.SWR(m, chain=True).rescale()


def project_networks():
    from agents.networks import QNetwork, make_encoder
    from agents.sac import GaussianPolicy, TwinQ

    return [
        ("twin_q", TwinQ(3, 2, (16, 16)), (torch.randn(8, 3), torch.randn(8, 2))),
        ("gaussian_policy", GaussianPolicy(3, 2, (16, 16)), torch.randn(8, 3)),
        ("dueling", QNetwork(make_encoder("mlp", (4,), hidden=(16, 16)), 3, dueling=True), torch.randn(8, 4)),
        ("impala", QNetwork(make_encoder("impala_cnn", (2, 12, 12)), 3),
         torch.randint(0, 255, (4, 2, 12, 12), dtype=torch.uint8)),
        ("nature_crelu_layernorm", QNetwork(make_encoder("nature_cnn", (4, 36, 36), activation="crelu",
                                                         norm="layer"), 3), torch.rand(4, 4, 36, 36)),
    ]


@pytest.mark.parametrize("index", range(5))
def test_the_projects_networks_attach_and_step(index):
    from plasticity import registry

    torch.manual_seed(6)
    name, m, x = project_networks()[index]
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    specs = registry.parse_all(["swr:lam=0.01", "redo:every=1,tau=0.5", "cbp:maturity=0,replacement_rate=0.1",
                                "reset:layers=1,every=2", "weight_clipping", "shrink_perturb:every=3"])
    ivs = [registry.build(s, m, opt) for s in specs]
    mon = pl.Monitor(m)
    for _ in range(3):
        opt.zero_grad()
        out = call(m, x)
        sum(o.float().pow(2).mean() for o in (out if isinstance(out, tuple) else (out,))).backward()
        opt.step()
        for iv in ivs:
            iv.after_step(x)
    assert ivs[1].recycled > 0 and ivs[2].replaced > 0 and ivs[3].count == 1
    stats = mon.measure(x)
    assert stats["plasticity/active_units"] > 0 and all(v == v for v in stats.values()), name
    outs = call(m, x)
    assert all(torch.isfinite(o).all() for o in (outs if isinstance(outs, tuple) else (outs,)))
