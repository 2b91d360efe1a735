"""agents/base.py: how an agent drives its interventions (loss terms, after-step hooks, task
switches, metrics) and what its checkpoint holds, with recording interventions."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from agents.base import Agent, Learnable, after_step, extra_loss, make_adam
from plasticity.base import Intervention


class Recorder(Intervention):
    """Records every hook call into a shared log."""

    def __init__(self, name: str, log: list, term: float | None = None, needs_inputs: bool | None = None,
                 metrics: dict | None = None):
        super().__init__()
        self.name, self.log, self.term, self._metrics = name, log, term, metrics or {}
        if needs_inputs is not None:
            self.needs_inputs = needs_inputs
        self.seen_task = None

    def loss(self):
        return None if self.term is None else torch.tensor(self.term)

    def after_step(self, inputs=None):
        super().after_step(inputs)
        self.log.append(("after_step", self.name, inputs))

    def on_task_switch(self, task):
        self.log.append(("switch", self.name, task))

    def metrics(self):
        return dict(self._metrics)

    def state_dict(self):
        return {**super().state_dict(), "name": self.name}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.log.append(("load", self.name, state["name"]))


def learnable(interventions, inputs=lambda batch: batch * 2) -> Learnable:
    module = nn.Linear(2, 2)
    return Learnable(module, make_adam(module.parameters(), lr=1e-2), [copy.deepcopy(module)], inputs,
                     list(interventions))


class TwoNets(Agent):
    def __init__(self, log: list):
        self.learnables = {
            "actor": learnable([Recorder("a1", log, metrics={"x": 1.0}), Recorder("a2", log, metrics={"y": 2.0})]),
            "critic": learnable([Recorder("c1", log, metrics={"x": 3.0})]),
        }


def test_make_adam_is_fused_adam_with_the_given_settings():
    p = [nn.Parameter(torch.ones(3))]
    opt = make_adam(p, lr=0.25)
    assert isinstance(opt, torch.optim.Adam)
    assert (opt.defaults["lr"], opt.defaults["eps"], opt.defaults["fused"]) == (0.25, 1e-8, True)
    assert make_adam(p, lr=0.5, eps=1e-3).defaults["eps"] == 1e-3


def test_extra_loss_sums_the_terms_that_exist():
    log: list = []
    assert extra_loss(learnable([])) is None
    assert extra_loss(learnable([Recorder("a", log)])) is None
    one = extra_loss(learnable([Recorder("a", log), Recorder("b", log, term=2.5)]))
    assert float(one) == 2.5
    total = extra_loss(learnable([Recorder("a", log, term=2.0), Recorder("b", log), Recorder("c", log, term=0.5)]))
    assert float(total) == 2.5


def test_after_step_builds_the_inputs_once_and_runs_the_hooks_in_order():
    log: list = []
    calls = []

    def inputs(batch):
        calls.append(batch)
        return batch * 2

    lr = learnable([Recorder("a", log, needs_inputs=False), Recorder("b", log), Recorder("c", log)], inputs)
    after_step(lr, torch.tensor(3))
    assert len(calls) == 1  # built on the first intervention that needs it, then shared
    assert [(kind, name) for kind, name, _ in log] == [("after_step", "a"), ("after_step", "b"), ("after_step", "c")]
    assert log[0][2] is None and int(log[1][2]) == 6 and log[2][2] is log[1][2]
    assert [iv.updates for iv in lr.interventions] == [1, 1, 1]
    # an intervention that does not need inputs never triggers the (possibly costly) forward pass
    log.clear()
    calls.clear()
    after_step(learnable([Recorder("a", log, needs_inputs=False)], inputs), torch.tensor(1))
    assert calls == [] and log == [("after_step", "a", None)]
    # without interventions nothing is computed
    after_step(learnable([], inputs), torch.tensor(1))
    assert calls == []


def test_task_switch_reaches_every_intervention_and_metrics_are_keyed_by_network():
    log: list = []
    agent = TwoNets(log)
    agent.on_task_switch(4, step=100)
    assert log == [("switch", "a1", 4), ("switch", "a2", 4), ("switch", "c1", 4)]
    assert agent.intervention_metrics() == {"x/actor": 1.0, "y/actor": 2.0, "x/critic": 3.0}
    del agent.learnables["critic"]  # one network: the bare names
    assert agent.intervention_metrics() == {"x": 1.0, "y": 2.0}
    assert Agent.log_scalars(agent, 5) == {} and Agent.extra_metrics(agent, None) == {}
    for method, args in [(agent.act, (None, 0, 0)), (agent.greedy, (None, 0)), (agent.update, (None,))]:
        with pytest.raises(NotImplementedError):
            method(*args)


def test_state_dict_round_trips_modules_optimizers_targets_and_interventions():
    log: list = []
    agent = TwoNets(log)
    for lr in agent.learnables.values():  # one optimizer step, different targets
        lr.module(torch.ones(1, 2)).sum().backward()
        lr.optimizer.step()
        after_step(lr, torch.ones(1, 2))
        with torch.no_grad():
            lr.targets[0].weight.fill_(0.5)
    state = copy.deepcopy(agent.state_dict())
    assert set(state) == {"actor", "critic"}
    assert set(state["actor"]) == {"module", "optimizer", "targets", "interventions"}
    assert state["actor"]["interventions"] == [{"updates": 1, "name": "a1"}, {"updates": 1, "name": "a2"}]
    log.clear()
    fresh = TwoNets(log)
    fresh.load_state_dict(state)
    # interventions are loaded first, in order (one may rebuild the module before it is loaded)
    assert log == [("load", "a1", "a1"), ("load", "a2", "a2"), ("load", "c1", "c1")]
    for name, lr in agent.learnables.items():
        other = fresh.learnables[name]
        assert [iv.updates for iv in other.interventions] == [1] * len(lr.interventions)
        for a, b in [(lr.module, other.module), (lr.targets[0], other.targets[0])]:
            assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
        assert torch.equal(other.targets[0].weight, torch.full((2, 2), 0.5))
        moments = [s["exp_avg"] for s in lr.optimizer.state.values()]
        assert moments and all(torch.equal(x, y["exp_avg"]) for x, y in zip(moments, other.optimizer.state.values()))
