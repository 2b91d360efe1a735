"""optimizer_step: the same parameters and optimizer state as `optimizer.step()`, bit for bit,
on its direct path and on every case it hands to `step()`."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from agents.base import make_adam
from agents.compile.optimizer_step import _fast_adam_ok, optimizer_step


def twins(make_opt):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))
    other = copy.deepcopy(net)
    return (net, make_opt(net)), (other, make_opt(other))


def set_grads(net, k):
    g = torch.Generator().manual_seed(k)
    for p in net.parameters():
        p.grad = torch.randn(p.shape, generator=g)


def assert_same(a, b):
    (na, oa), (nb, ob) = a, b
    for p, q in zip(na.parameters(), nb.parameters()):
        assert torch.equal(p, q)
    sa, sb = oa.state_dict()["state"], ob.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        for name in sa[k]:
            assert torch.equal(sa[k][name], sb[k][name]), (k, name)


def two_groups(net):
    return torch.optim.Adam([{"params": net[0].parameters()},
                             {"params": net[2].parameters(), "lr": 1e-2, "weight_decay": 0.1}],
                            lr=3e-4, betas=(0.8, 0.95), eps=1e-6, fused=True)


@pytest.mark.parametrize("make_opt", [lambda n: make_adam(n.parameters(), lr=1e-3), two_groups])
def test_equals_step_bit_for_bit(make_opt):
    ref, fast = twins(make_opt)
    for k in range(6):
        set_grads(ref[0], k)
        set_grads(fast[0], k)
        if k == 3:  # a parameter without a gradient this step is left alone
            ref[0][2].bias.grad = fast[0][2].bias.grad = None
        ref[1].step()
        optimizer_step(fast[1])
        assert_same(ref, fast)
    assert _fast_adam_ok(fast[1])  # the steps after the first took the direct path


def test_first_step_and_a_cleared_state_go_through_step():
    ref, fast = twins(lambda n: make_adam(n.parameters(), lr=1e-3))
    set_grads(fast[0], 0)
    assert not _fast_adam_ok(fast[1])  # no state yet
    for k in range(4):
        if k == 2:  # a reset clears one parameter's moments
            for net, opt in (ref, fast):
                opt.state[net[0].weight].clear()
            assert not _fast_adam_ok(fast[1])
        set_grads(ref[0], k)
        set_grads(fast[0], k)
        ref[1].step()
        optimizer_step(fast[1])
        assert_same(ref, fast)


@pytest.mark.parametrize("make_opt", [
    lambda n: torch.optim.Adam(n.parameters(), lr=1e-3),  # not fused
    lambda n: torch.optim.Adam(n.parameters(), lr=1e-3, fused=True, amsgrad=True),
    lambda n: torch.optim.AdamW(n.parameters(), lr=1e-3, fused=True),
    lambda n: torch.optim.SGD(n.parameters(), lr=1e-2, momentum=0.9),
])
def test_other_optimizers_take_step(make_opt):
    ref, fast = twins(make_opt)
    for k in range(3):
        set_grads(ref[0], k)
        set_grads(fast[0], k)
        ref[1].step()
        optimizer_step(fast[1])
        assert not _fast_adam_ok(fast[1])
        assert_same(ref, fast)


def test_step_hooks_still_run():
    _, (net, opt) = twins(lambda n: make_adam(n.parameters(), lr=1e-3))
    calls = []
    opt.register_step_post_hook(lambda o, args, kwargs: calls.append(1))
    for k in range(3):
        set_grads(net, k)
        optimizer_step(opt)
    assert len(calls) == 3


def test_a_scheduler_wrapped_step_is_called():
    _, (net, opt) = twins(lambda n: make_adam(n.parameters(), lr=1e-3))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for k in range(3):
        set_grads(net, k)
        optimizer_step(opt)  # the scheduler's wrapper sees the call: no "scheduler before optimizer" warning
        sched.step()
    assert opt._opt_called and opt.param_groups[0]["lr"] == pytest.approx(1e-3 / 8)


@pytest.fixture
def count_adam_steps(monkeypatch):
    """Counts `torch.optim.Adam.step` calls (patched on the class, so no instance gets a `step`)."""
    calls = []
    original = torch.optim.Adam.step

    def step(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    return calls


def test_the_direct_path_skips_step_and_steps_every_group_and_parameter(count_adam_steps):
    ref, fast = twins(two_groups)
    for k in range(4):
        set_grads(ref[0], k)
        set_grads(fast[0], k)
        if k == 2:  # a parameter in the middle of a group without a gradient: the ones after it still step
            ref[0][0].weight.grad = fast[0][0].weight.grad = None
        if k == 3:  # a whole group without gradients: the next group still steps
            for net in (ref[0], fast[0]):
                net[0].weight.grad = net[0].bias.grad = None
        ref[1].step()
        optimizer_step(fast[1])
        assert_same(ref, fast)
    # ref's 4 calls and fast's first (no state yet); fast's other 3 took the direct path
    assert len(count_adam_steps) == 5


@pytest.mark.parametrize(("key", "value"), [
    ("amsgrad", True), ("maximize", True), ("differentiable", True), ("decoupled_weight_decay", True),
    ("fused", False), ("lr", torch.tensor(1e-3)), ("betas", (torch.tensor(0.9), 0.999)),
])
def test_each_group_setting_the_direct_path_cannot_honour_sends_it_to_step(key, value):
    _, (net, opt) = twins(lambda n: make_adam(n.parameters(), lr=1e-3))
    set_grads(net, 0)
    optimizer_step(opt)
    set_grads(net, 1)
    assert _fast_adam_ok(opt)
    opt.param_groups[0][key] = value
    assert not _fast_adam_ok(opt)


@pytest.mark.parametrize("hook", ["instance_pre", "global_pre", "global_post"])
def test_step_hooks_of_every_kind_send_it_to_step(hook):
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    _, (net, opt) = twins(lambda n: make_adam(n.parameters(), lr=1e-3))
    set_grads(net, 0)
    optimizer_step(opt)
    assert _fast_adam_ok(opt)
    calls = []
    register = {"instance_pre": opt.register_step_pre_hook, "global_pre": register_optimizer_step_pre_hook,
                "global_post": register_optimizer_step_post_hook}[hook]
    handle = register(lambda o, args, kwargs: calls.append(1))
    try:
        assert not _fast_adam_ok(opt)
        optimizer_step(opt)
        assert calls == [1]
    finally:
        handle.remove()
    assert _fast_adam_ok(opt)


def test_a_scheduler_wrapping_step_sends_it_to_step():
    _, (net, opt) = twins(lambda n: make_adam(n.parameters(), lr=1e-3))
    set_grads(net, 0)
    optimizer_step(opt)
    assert _fast_adam_ok(opt)
    torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)  # wraps the instance's `step`
    assert not _fast_adam_ok(opt)
