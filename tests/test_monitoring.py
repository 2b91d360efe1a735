"""runner/monitoring.py against a tiny fake agent and writer: the measuring cadence, one monitor
per network with its tags renamed when there are several, the agent's own metrics, histograms
every n-th measurement, and the state a resumed run restores."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from runner.monitoring import Monitoring


class Writer:
    def __init__(self):
        self.scalars, self.histograms = {}, {}

    def add_scalar(self, tag, value, step):
        self.scalars.setdefault(tag, []).append((step, float(value)))

    def add_histogram(self, tag, values, step):
        self.histograms.setdefault(tag, []).append(step)
        self.values = getattr(self, "values", {})
        self.values[tag] = values


class Replay:
    def __init__(self):
        self.sizes = []

    def sample(self, n):
        self.sizes.append(n)
        return SimpleNamespace(obs=torch.ones(n, 3), actions=torch.zeros(n, 1))


def agent(names=("q",)):
    torch.manual_seed(0)
    nets = {name: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)) for name in names}
    with torch.no_grad():  # unit 0 of each first layer never fires on the all-ones batch
        for net in nets.values():
            net[0].weight[0].fill_(-1.0)
            net[0].bias[0] = -1.0
            net[0].weight[1:].fill_(0.5)
            net[0].bias[1:] = 0.0
    return SimpleNamespace(
        updates=0,
        learnables={name: SimpleNamespace(module=net, inputs=lambda b: b.obs) for name, net in nets.items()},
        extra_metrics=lambda batch: {"q_mean": float(batch.obs.shape[0])},
    )


def test_measures_every_n_updates_with_its_batch_size_and_logs_the_agents_metrics():
    ag, replay, writer = agent(), Replay(), Writer()
    mon = Monitoring(ag, every=3, batch_size=5, tau=0.0, histogram_every=0)
    for step in range(7):
        ag.updates = step
        mon.after_update(replay, writer, step=100 + step)
    assert replay.sizes == [5, 5, 5] and mon.measurements == 3
    assert writer.scalars["plasticity/q_mean"] == [(100, 5.0), (103, 5.0), (106, 5.0)]
    # one of the 4 hidden units is dead on this batch; single network: tags without its name
    assert writer.scalars["plasticity/dead_ratio/1"] == [(100, 0.25), (103, 0.25), (106, 0.25)]
    assert not writer.histograms


def test_several_networks_get_their_names_in_their_tags():
    ag, writer = agent(("actor", "critic")), Writer()
    mon = Monitoring(ag, every=1, batch_size=2, tau=0.0, histogram_every=0)
    mon.after_update(Replay(), writer, step=7)
    assert writer.scalars["plasticity/actor/dead_ratio/1"] == [(7, 0.25)]
    assert writer.scalars["plasticity/critic/dead_ratio/1"] == [(7, 0.25)]
    assert "plasticity/dead_ratio/1" not in writer.scalars
    assert writer.scalars["plasticity/q_mean"] == [(7, 2.0)]  # the agent's metrics are not renamed


def test_histograms_every_nth_measurement_renamed_like_the_scalars():
    ag, writer = agent(("actor", "critic")), Writer()
    mon = Monitoring(ag, every=1, batch_size=2, tau=0.0, histogram_every=2)
    for step in range(5):
        mon.after_update(Replay(), writer, step=step)
    tags = [t for t in writer.histograms if t.startswith("plasticity/critic/")]
    assert tags and all(writer.histograms[t] == [0, 2, 4] for t in tags)
    assert all(torch.as_tensor(writer.values[t]).numel() == 4 for t in tags)  # a score per hidden unit
    assert not any(t.startswith("plasticity/") and t.split("/")[1] not in ("actor", "critic")
                   for t in writer.histograms)


def test_every_zero_measures_nothing():
    ag, replay, writer = agent(), Replay(), Writer()
    mon = Monitoring(ag, every=0, batch_size=5, tau=0.0, histogram_every=1)
    assert mon.monitors == {} and not mon.due()
    mon.after_update(replay, writer, step=0)
    assert replay.sizes == [] and writer.scalars == {}


@pytest.mark.parametrize("tau", [0.0, 0.6])
def test_tau_reaches_each_monitor(tau):
    mon = Monitoring(agent(("a", "b")), every=1, batch_size=2, tau=tau, histogram_every=3)
    assert [(m.tau, m.histogram_every) for m in mon.monitors.values()] == [(tau, 3), (tau, 3)]


def test_state_round_trip_restores_counts_and_references():
    ag = agent(("actor", "critic"))
    mon = Monitoring(ag, every=1, batch_size=2, tau=0.0, histogram_every=2)
    for step in range(3):
        mon.after_update(Replay(), Writer(), step=step)
    state = mon.state_dict()
    assert state["measurements"] == 3 and state["monitors"]["critic"]["log_calls"] == 3
    fresh = Monitoring(ag, every=1, batch_size=2, tau=0.0, histogram_every=2)
    with torch.no_grad():
        ag.learnables["critic"].module[0].weight.add_(1.0)  # moved since the reference was taken
    fresh.load_state_dict(state)
    assert fresh.measurements == 3
    assert fresh.monitors["critic"]._log_calls == 3 and fresh.monitors["actor"]._log_calls == 3
    for name in ("actor", "critic"):
        ref = fresh.monitors[name].reference
        assert all(torch.equal(ref[k], state["monitors"][name]["reference"][k]) for k in ref)
    writer = Writer()
    fresh.after_update(Replay(), writer, step=3)  # the 4th log call: no histogram (every 2nd: 0, 2)
    assert not writer.histograms
    # a state with a network this run does not have is ignored for it
    fresh.load_state_dict({"measurements": 4, "monitors": {"gone": {"log_calls": 9, "reference": {}}}})
    assert fresh.measurements == 4 and fresh.monitors["critic"]._log_calls == 4
