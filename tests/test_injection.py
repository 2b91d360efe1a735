from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import plasticity as pl
from plasticity.injection import InjectedHead, PlasticityInjection


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(3, 8), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def _setup(**kwargs):
    model = Net()
    target = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.randn(16, 3)
    for _ in range(3):  # some training, so Adam has state for the head
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    inj = PlasticityInjection(model, opt, targets=[target], **kwargs)
    return model, target, opt, x, inj


def _train_step(model, opt, x):
    opt.zero_grad()
    (model(x) - 1.0).square().mean().backward()
    opt.step()


def _snapshot(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _same(module: nn.Module, snap: list[torch.Tensor]) -> bool:
    return all(torch.equal(p, q) for p, q in zip(module.parameters(), snap))


def test_output_exactly_unchanged_and_optimizer_swapped():
    model, target, opt, x, inj = _setup()
    old_head = model.head
    old_params = list(old_head.parameters())
    before, before_target = model(x), target(x)
    n_opt = sum(len(g["params"]) for g in opt.param_groups)
    inj.updates = 3
    inj.on_task_switch(1)

    head = model.head
    assert isinstance(head, InjectedHead) and head.frozen is old_head
    assert torch.equal(model(x), before)
    assert torch.equal(target(x), before_target)
    # the fresh head is a new initialisation, not a copy of the trained one
    assert not torch.equal(head.fresh[0].weight, old_head[0].weight)
    # h' and h'_0 start identical
    assert _same(head.fresh_init, _snapshot(head.fresh))
    # frozen parts: no gradient, not in the optimizer; fresh ones: trained, no stale state
    assert not any(p.requires_grad for p in head.frozen.parameters())
    assert not any(p.requires_grad for p in head.fresh_init.parameters())
    assert all(p.requires_grad for p in head.fresh.parameters())
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert sum(len(g["params"]) for g in opt.param_groups) == n_opt
    assert all(id(p) in in_opt for p in head.fresh.parameters())
    assert not any(id(p) in in_opt for p in head.frozen.parameters())
    assert not any(id(p) in in_opt for p in head.fresh_init.parameters())
    assert not any(p in opt.state for p in old_params)
    assert not any(p in opt.state for p in head.fresh.parameters())
    assert inj.metrics() == {"injection_count": 1.0}


def test_training_step_changes_only_the_fresh_head_and_encoder():
    model, target, opt, x, inj = _setup()
    inj.updates = 1
    inj.on_task_switch(1)
    head = model.head
    frozen, fresh, fresh_init, enc = (
        _snapshot(head.frozen), _snapshot(head.fresh), _snapshot(head.fresh_init),
        _snapshot(model.encoder),
    )
    _train_step(model, opt, x)
    assert _same(head.frozen, frozen)
    assert _same(head.fresh_init, fresh_init)
    assert all(not torch.equal(p, q) for p, q in zip(head.fresh.parameters(), fresh))
    assert not _same(model.encoder, enc)  # the encoder keeps learning through all three heads
    # Adam stepped the new parameters: it now has their state, at step 1
    for p in head.fresh.parameters():
        assert float(opt.state[p]["step"]) == 1.0


def test_target_gets_the_same_structure():
    model, target, opt, x, inj = _setup()
    inj.updates = 1
    inj.on_task_switch(1)
    assert isinstance(target.head, InjectedHead)
    assert list(dict(target.named_parameters())) == list(dict(model.named_parameters()))
    assert not any(p.requires_grad for p in target.parameters())
    assert _same(target.head.fresh, _snapshot(model.head.fresh))
    assert target.head.fresh[0].weight is not model.head.fresh[0].weight
    _train_step(model, opt, x)
    target.load_state_dict(model.state_dict())  # a hard sync still works
    assert torch.equal(target(x), model(x))


def test_second_injection_nests():
    model, target, opt, x, inj = _setup()
    inj.updates = 1
    inj.on_task_switch(1)
    _train_step(model, opt, x)
    first = model.head
    before = model(x)
    inj.on_task_switch(2)
    assert isinstance(model.head, InjectedHead) and model.head.frozen is first
    assert torch.equal(model(x), before)
    trainable = [p for p in model.head.parameters() if p.requires_grad]
    assert trainable == list(model.head.fresh.parameters())
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert not any(id(p) in in_opt for p in first.parameters())
    assert isinstance(target.head.frozen, InjectedHead)


def test_max_injections_refuses_and_first_switch_is_ignored():
    model, target, opt, x, inj = _setup(max_injections=1)
    inj.on_task_switch(0)  # no update yet: the start of the first task
    assert not isinstance(model.head, InjectedHead)
    inj.after_step()
    inj.on_task_switch(1)
    first = model.head
    inj.on_task_switch(2)
    assert model.head is first and inj.injections == 1
    assert inj.inject() is False


def test_at_step():
    model, target, opt, x, inj = _setup(at_step=3, at_task_switch=False)
    inj.after_step()
    inj.on_task_switch(1)
    inj.after_step()
    assert not isinstance(model.head, InjectedHead)
    inj.after_step()
    assert isinstance(model.head, InjectedHead)
    inj.after_step()
    assert not isinstance(model.head.frozen, InjectedHead)


def test_tuple_outputs_and_dotted_path():
    class Policy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mean = nn.Linear(4, 2)
            self.log_std = nn.Linear(4, 2)

        def forward(self, z):
            return self.mean(z), self.log_std(z)

    class Agent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.actor = nn.Module()
            self.actor.trunk = nn.Linear(3, 4)
            self.actor.policy = Policy()

        def forward(self, x):
            return self.actor.policy(torch.relu(self.actor.trunk(x)))

    agent = Agent()
    opt = torch.optim.SGD(agent.parameters(), lr=0.1)
    x = torch.randn(5, 3)
    before = agent(x)
    PlasticityInjection(agent, opt, head="actor.policy").inject()
    assert isinstance(agent.actor.policy, InjectedHead)
    after = agent(x)
    assert isinstance(after, tuple) and all(torch.equal(a, b) for a, b in zip(after, before))


def test_checkpoint_roundtrip():
    model, target, opt, x, inj = _setup()
    inj.updates = 1
    inj.on_task_switch(1)
    _train_step(model, opt, x)
    # deepcopy stands in for torch.save/torch.load: Optimizer.load_state_dict would otherwise
    # share the saved moment tensors between the two optimizers
    saved = copy.deepcopy(
        (inj.state_dict(), model.state_dict(), opt.state_dict(), target.state_dict())
    )

    model2 = Net()
    target2 = copy.deepcopy(model2).requires_grad_(False)
    opt2 = torch.optim.Adam(model2.parameters(), lr=1e-2)
    inj2 = PlasticityInjection(model2, opt2, targets=[target2])
    inj2.load_state_dict(saved[0])  # first the structure...
    model2.load_state_dict(saved[1])  # ...then the weights and the optimizer
    opt2.load_state_dict(saved[2])
    target2.load_state_dict(saved[3])
    assert inj2.injections == 1 and inj2.updates == 1
    assert torch.equal(model2(x), model(x))
    _train_step(model, opt, x)
    _train_step(model2, opt2, x)
    assert torch.equal(model2(x), model(x))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"head": "nope"}, "injection: head 'nope' is not a submodule of the module (Net)"),
        ({"at_step": 0}, "injection: at_step must be None or an integer >= 1, got 0"),
        ({"max_injections": 0}, "injection: max_injections must be None or an integer >= 1, got 0"),
        ({"head": "head.1"}, "injection: head 'head.1' of the module has no parameters"),
    ],
)
def test_bad_arguments(kwargs, message):
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError) as err:
        PlasticityInjection(model, opt, **kwargs)
    assert str(err.value) == message


def test_optimizer_must_train_the_head():
    model = Net()
    with pytest.raises(ValueError, match="injection: optimizer is required"):
        PlasticityInjection(model, None)
    opt = torch.optim.SGD(model.encoder.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="injection: the optimizer does not train head 'head'"):
        PlasticityInjection(model, opt)
    assert pl.PlasticityInjection is PlasticityInjection


def test_custom_init_dict_outputs_and_a_top_level_head():
    class DictHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, z):
            return {"q": self.fc(z), "v": self.fc(z).sum(-1)}

    class Top(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = DictHead()

        def forward(self, x):
            return self.head(x)

    m = Top()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    x = torch.randn(4, 3)
    before = m(x)
    seen = []

    def init(head):
        seen.append(head)
        with torch.no_grad():
            head.fc.weight.fill_(0.5)

    inj = PlasticityInjection(m, opt, head="head", init=init)
    assert inj.inject() is True
    assert seen == [m.head.fresh] and m.head.fresh.fc.weight.eq(0.5).all()
    assert m.head.fresh_init.fc.weight.eq(0.5).all()  # the frozen copy is taken after init
    after = m(x)
    assert set(after) == {"q", "v"} and all(torch.equal(after[k], before[k]) for k in before)
    with pytest.raises(TypeError, match="injection: cannot combine head outputs of type str"):
        InjectedHead(nn.Identity(), nn.Identity(), nn.Identity())("text")


def test_a_frozen_target_stays_frozen_and_a_trainable_one_gets_a_trainable_fresh_head():
    model = Net()
    frozen_t, live_t = copy.deepcopy(model).requires_grad_(False), copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    PlasticityInjection(model, opt, targets=[frozen_t, live_t]).inject()
    assert not any(p.requires_grad for p in frozen_t.head.fresh.parameters())
    assert all(p.requires_grad for p in live_t.head.fresh.parameters())
    assert not any(p.requires_grad for p in live_t.head.frozen.parameters())
    assert not any(p.requires_grad for p in live_t.head.fresh_init.parameters())
    assert all(p.grad is None for p in model.head.frozen.parameters())


def test_checkpoints_with_fewer_or_too_many_injections_are_refused():
    model, target, opt, x, inj = _setup(max_injections=1)
    assert inj.state_dict() == {"updates": 0, "injections": 0}
    inj.inject()
    with pytest.raises(ValueError) as err:
        inj.load_state_dict({"updates": 0, "injections": 0})
    assert str(err.value) == "injection: checkpoint has 0 injections, the module already has 1"
    _, _, _, _, fresh = _setup(max_injections=1)
    with pytest.raises(ValueError) as err:
        fresh.load_state_dict({"updates": 5, "injections": 2})
    assert str(err.value) == "injection: checkpoint has 2 injections, max_injections is 1"
    _, _, _, _, plain = _setup()
    plain.load_state_dict({"updates": 4})
    assert (plain.updates, plain.injections) == (4, 0)


@pytest.mark.parametrize("kwargs, message", [
    ({"head": ""}, "injection: head must be a non-empty dotted submodule name, got ''"),
    ({"head": 3}, "injection: head must be a non-empty dotted submodule name, got 3"),
    ({"at_step": True}, "injection: at_step must be None or an integer >= 1, got True"),
    ({"max_injections": 1.0}, "injection: max_injections must be None or an integer >= 1, got 1.0"),
    ({"init": 3}, "injection: init must be callable or None, got 3"),
])
def test_more_bad_arguments(kwargs, message):
    model = Net()
    with pytest.raises(ValueError) as err:
        PlasticityInjection(model, torch.optim.SGD(model.parameters(), lr=0.1), **kwargs)
    assert str(err.value) == message


def test_a_target_without_the_head_is_refused():
    model = Net()
    with pytest.raises(ValueError) as err:
        PlasticityInjection(model, torch.optim.SGD(model.parameters(), lr=0.1),
                            targets=[nn.Sequential(nn.Linear(3, 2))])
    assert str(err.value) == "injection: head 'head' is not a submodule of the target (Sequential)"


def test_the_injected_head_computes_frozen_plus_fresh_minus_its_copy_with_keyword_arguments():
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, z, scale=1.0):
            return self.fc(z) * scale

    frozen, fresh, fresh_init = Scaled(), Scaled(), Scaled()
    head = InjectedHead(frozen, fresh, fresh_init)
    z = torch.randn(4, 3)
    with torch.no_grad():
        want = frozen(z, scale=3.0) + fresh(z, scale=3.0) - fresh_init(z, scale=3.0)
        torch.testing.assert_close(head(z, scale=3.0), want)
        assert not torch.allclose(head(z, scale=3.0), head(z), atol=1e-3)


def test_needs_task_boundaries_and_the_missing_optimizer_message():
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert PlasticityInjection(model, opt).needs_task_boundaries is True
    assert PlasticityInjection(model, opt, at_step=5).needs_task_boundaries is False
    with pytest.raises(ValueError) as err:
        PlasticityInjection(model, None)
    assert str(err.value) == "injection: optimizer is required (it must train the fresh head)"


def test_each_injection_is_counted():
    model, target, opt, x, inj = _setup()
    for n in (1, 2, 3):
        assert inj.inject() is True and inj.injections == n
    assert inj.metrics() == {"injection_count": 3.0} and inj.state_dict()["injections"] == 3
