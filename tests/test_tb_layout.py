"""The TensorBoard custom-scalar layout holds the expected charts and matches the real tags."""

from __future__ import annotations

import re

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from torch.utils.tensorboard import SummaryWriter

from runner.tb_layout import add_continual_layout, continual_layout

TASKS = ["CartPole-v1", "Acrobot-v1@obs-offset:scale=2"]


def _matches(chart, tag: str) -> bool:
    return any(re.search(rx, tag) for rx in chart[1])


def test_layout_has_a_chart_per_task_and_per_network_metric() -> None:
    layout = continual_layout(TASKS, ["actor", "critic"])
    assert set(layout) == {"continual", "plasticity/actor", "plasticity/critic"}
    every = layout["continual"]["evaluation return, every task (with task/index)"]
    for t in TASKS:
        assert _matches(every, f"eval/{t}/return")
        chart = layout["continual"][f"{t}: evaluation and training return"]
        assert _matches(chart, f"eval/{t}/return") and _matches(chart, f"charts/{t}/episodic_return")
        assert _matches(chart, "task/index")
    assert _matches(every, "task/index") and not _matches(every, "eval/CartPole-v1x/return")
    chart = layout["continual"]["CartPole-v1: evaluation and training return"]
    assert not _matches(chart, "eval/Acrobot-v1@obs-offset:scale=2/return")
    dormant = layout["plasticity/critic"]["plasticity/critic/dormant_ratio"]
    assert _matches(dormant, "plasticity/critic/dormant_ratio")
    assert _matches(dormant, "plasticity/critic/dormant_ratio/encoder.0")
    assert not _matches(dormant, "plasticity/actor/dormant_ratio")
    assert not _matches(dormant, "plasticity/critic/dormant_ratio_x")


def test_one_network_uses_the_unprefixed_tags_and_the_layout_is_written(tmp_path) -> None:
    layout = continual_layout(TASKS, ["q"])
    assert set(layout) == {"continual", "plasticity"}
    assert _matches(layout["plasticity"]["plasticity/srank"], "plasticity/srank")
    writer = SummaryWriter(str(tmp_path))
    add_continual_layout(writer, TASKS, ["q"])
    writer.close()
    acc = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    acc.Reload()
    [event] = acc.Tensors("custom_scalars__config__")
    written = layout_pb2.Layout()
    written.ParseFromString(event.tensor_proto.string_val[0])
    titles = {c.title for cat in written.category for c in cat.chart}
    assert "CartPole-v1: evaluation and training return" in titles and "plasticity/srank" in titles
