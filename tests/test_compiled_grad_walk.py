"""CompiledGrad's walk over its modules on the traced path without Inductor (`compile=False`):
which tensors it differentiates, when it walks again (a registration anywhere, a shape or
`requires_grad` change, a train/eval switch) and the registration counter behind that."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from agents.compile import CompiledGrad
from agents.compile import compiled_grad as cg_module
from agents.compile import internals


def mse(net, watched=None):
    def fn(x, y):
        h = net(x)
        if watched is not None:
            h = watched(h)
        return (h.squeeze(1) - y).pow(2).mean(), h.mean()
    return fn


def autograd_grads(net, fn_of, x, y):
    ref = copy.deepcopy(net)
    loss, _ = fn_of(ref)(x, y)
    params = [p for p in ref.parameters() if p.requires_grad]
    return dict(zip([n for n, p in ref.named_parameters() if p.requires_grad], torch.autograd.grad(loss, params)))


def assert_grads(net, want):
    for name, p in net.named_parameters():
        if name in want:
            assert p.grad is not None and torch.allclose(p.grad, want[name], atol=1e-6), name
        else:
            assert p.grad is None, name


def test_a_bare_layer_is_differentiated_itself():
    torch.manual_seed(0)
    lin = nn.Linear(3, 1)
    x, y = torch.randn(5, 3), torch.randn(5)
    CompiledGrad(lin, mse(lin), compile=False)(x, y)
    assert_grads(lin, autograd_grads(lin, mse, x, y))


def test_a_tied_weight_is_listed_once_and_gets_both_uses_gradients():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
    net[2].weight = net[0].weight  # tied
    x, y = torch.randn(6, 4), torch.randn(6)
    cg = CompiledGrad(net, mse(net), compile=False)
    cg(x, y)
    names = [n for n, _ in cg._current().diff]
    assert names.count("nets.0.0.weight") == 1 and "nets.0.2.weight" not in names
    ref = copy.deepcopy(net)
    loss, _ = mse(ref)(x, y)
    loss.backward()
    assert torch.allclose(net[0].weight.grad, ref[0].weight.grad, atol=1e-6)
    assert torch.allclose(net[4].bias.grad, ref[4].bias.grad, atol=1e-6)
    assert net[2].bias.grad is not None and torch.allclose(net[2].bias.grad, ref[2].bias.grad, atol=1e-6)


def test_buffers_and_watched_parameters_are_inputs_not_differentiated():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    head = nn.Linear(1, 1)
    cg = CompiledGrad(net, mse(net, head), compile=False, watch=[head])
    walk = cg._current()
    diff = {n for n, _ in walk.diff}
    rest = {n for n, _ in walk.rest}
    assert "nets.0.1.running_mean" in rest and "nets.0.1.weight" in diff
    assert {"nets.1.weight", "nets.1.bias"} <= rest and not any(n.startswith("nets.1") for n in diff)
    assert walk.tensors[:len(walk.diff)] == [t for _, t in walk.diff]


def test_each_registration_anywhere_counts_once_and_sends_the_next_call_to_walk_again():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    cg = CompiledGrad(net, mse(net), compile=False)
    CompiledGrad(nn.Linear(2, 2), lambda x: (x.sum(), None), compile=False)  # a second one installs nothing more
    x, y = torch.randn(5, 3), torch.randn(5)
    cg(x, y)
    walk = cg._current()
    assert cg._current() is walk  # nothing changed: the same walk
    before = cg_module._registrations[0]
    unrelated = nn.Module()
    unrelated.register_buffer("b", torch.zeros(1))  # a buffer on any module
    assert cg_module._registrations[0] == before + 1
    unrelated.p = nn.Parameter(torch.zeros(1))  # a parameter
    unrelated.sub = nn.Identity()  # a submodule
    assert cg_module._registrations[0] == before + 3
    assert cg._current() is not walk
    for step in range(2):  # two replacements in a row: each is seen
        net[2] = nn.Linear(4, 1)
        cg(x, y)
        assert_grads(net, autograd_grads(net, mse, x, y))


@pytest.mark.parametrize("change", ["diff_shape", "rest_shape", "freeze", "freeze_rest", "eval"])
def test_a_changed_tensor_or_mode_is_walked_again(change):
    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    head = nn.Linear(1, 1)
    cg = CompiledGrad(net, mse(net, head), compile=False, watch=[head])
    walk = cg._current()
    with torch.no_grad():
        net[2].weight.data = torch.zeros(1, 4)  # new values, same shapes: the same walk
        head.bias.data = torch.zeros(1)
    assert cg._current() is walk
    with torch.no_grad():
        if change == "diff_shape":  # a differentiated tensor given another shape in place
            net[2].weight.data = torch.zeros(2, 4)
        elif change == "rest_shape":  # a watched tensor given another shape
            head.bias.data = torch.zeros(2)
        elif change == "freeze":
            net[2].bias.requires_grad_(False)
        elif change == "freeze_rest":
            head.bias.requires_grad_(False)
        else:
            head.eval()
    assert cg._current() is not walk


def test_a_second_walk_keeps_the_same_key_when_nothing_that_matters_changed():
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    cg = CompiledGrad(net, mse(net), compile=False)
    key = cg._current().key
    nn.Module().register_buffer("b", torch.zeros(1))  # walks again, finds the same tensors
    walk = cg._current()
    assert walk.key == key and [n for n, _ in walk.diff] == ["nets.0.0.weight", "nets.0.0.bias",
                                                             "nets.0.2.weight", "nets.0.2.bias"]
    assert walk.key[2] == (True,)


def test_without_the_internals_it_is_not_usable(monkeypatch):
    monkeypatch.setattr(internals, "_checked", {"compiled_grad": False})
    net = nn.Linear(2, 1)
    assert CompiledGrad(net, mse(net), compile=True).usable() is False
    assert CompiledGrad(net, mse(net), compile=False).usable() is True


def test_the_registration_hooks_are_installed_once_per_process_by_the_first_instance():
    """In a fresh interpreter: nothing is counted before the first CompiledGrad; after it, each
    registration once, however many instances there are (a subprocess, since the hooks are
    global and this process installed them long ago)."""
    import subprocess
    import sys
    from pathlib import Path

    code = """
import torch
from torch import nn
from agents.compile import CompiledGrad
from agents.compile import compiled_grad as cg
counts = []
nn.Module().register_buffer("b", torch.zeros(1))
counts.append(cg._registrations[0])
CompiledGrad(nn.Linear(2, 1), lambda x: (x.sum(), None), compile=False)
CompiledGrad(nn.Linear(2, 1), lambda x: (x.sum(), None), compile=False)
m = nn.Module()
base = cg._registrations[0]
m.register_buffer("b", torch.zeros(1))
m.p = nn.Parameter(torch.zeros(1))
m.sub = nn.Identity()
counts.append(cg._registrations[0] - base)
print(counts)
"""
    # (one instance here too, so that mutation testing counts this test as reaching the installer)
    CompiledGrad(nn.Linear(2, 1), lambda x: (x.sum(), None), compile=False)
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "PYTHONPATH": str(root)})
    # a buffer, a parameter and a submodule: 3 (6 if the second instance had installed the hooks again)
    assert out.stdout.strip() == "[0, 3]"
