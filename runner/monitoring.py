"""Plasticity metrics of the agent's networks during training, every `monitor.every` updates.

One `plasticity.Monitor` per learnable network measures a replay batch of
`monitor.batch_size` transitions and writes its scalars (and, every `histogram_every`-th
measurement, the neuron-score histograms) with `Monitor.log`. With several networks (SAC)
each one's tags gain its name: `plasticity/critic/dormant_ratio`. The agent's own
measurements (`extra_metrics`: Q statistics, policy entropy) follow under `plasticity/`.
"""

from __future__ import annotations

from typing import Any

import plasticity as pl


class _Prefixed:
    """A writer that renames `plasticity/<x>` tags to `plasticity/<network>/<x>`."""

    def __init__(self, writer: Any, network: str | None):
        self.writer, self.network = writer, network

    def _tag(self, tag: str) -> str:
        return tag if self.network is None else tag.replace("plasticity/", f"plasticity/{self.network}/", 1)

    def add_scalar(self, tag: str, value: Any, step: int) -> None:
        self.writer.add_scalar(self._tag(tag), value, step)

    def add_histogram(self, tag: str, values: Any, step: int) -> None:
        self.writer.add_histogram(self._tag(tag), values, step)


class Monitoring:
    """Measures each learnable network every `every` gradient steps (0: never)."""

    def __init__(self, agent: Any, every: int, batch_size: int, tau: float, histogram_every: int):
        self.agent = agent
        self.every = every
        self.batch_size = batch_size
        self.monitors = ({name: pl.Monitor(l.module, tau=tau, histogram_every=histogram_every)
                          for name, l in agent.learnables.items()} if every else {})
        self.measurements = 0

    def due(self) -> bool:
        return bool(self.monitors) and self.agent.updates % self.every == 0

    def after_update(self, replay: Any, writer: Any, step: int) -> None:
        """Measure and log if this gradient step is a measuring one."""
        if not self.due():
            return
        sample = replay.sample(self.batch_size)
        self.measurements += 1
        several = len(self.monitors) > 1
        for name, mon in self.monitors.items():
            mon.measure(self.agent.learnables[name].inputs(sample))
            mon.log(_Prefixed(writer, name if several else None), step)
        for key, value in self.agent.extra_metrics(sample).items():
            writer.add_scalar(f"plasticity/{key}", value, step)

    def state_dict(self) -> dict[str, Any]:
        return {"measurements": self.measurements,
                "monitors": {name: {"log_calls": mon._log_calls, "reference": mon.reference}
                             for name, mon in self.monitors.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.measurements = int(state["measurements"])
        for name, s in state["monitors"].items():
            if name in self.monitors:
                self.monitors[name]._log_calls = int(s["log_calls"])
                self.monitors[name].reference = s["reference"]
