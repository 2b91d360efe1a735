"""TensorBoard custom-scalar layout: the continual picture on one page (CUSTOM SCALARS tab).

:func:`continual_layout` returns the layout that ``SummaryWriter.add_custom_scalars`` takes:
``{category: {chart title: ["Multiline", [tag regex, ...]]}}``. Categories:

- ``continual``: one chart with every task's ``eval/<task>/return`` and ``task/index`` (the
  switches), then one chart per task with its ``eval/<task>/return``, its training
  ``charts/<task>/episodic_return`` and ``task/index``.
- ``plasticity`` (one network) or ``plasticity/<network>`` (several, e.g. SAC's actor and
  critic): one chart per metric, ``plasticity[/<network>]/<metric>`` and its per-layer
  tags ``.../<metric>/<layer>``.

The tags are the ones the logger and the plasticity monitor write (README, TensorBoard).
Each regex is anchored (``^...$``) so a chart shows exactly its tags.
"""

from __future__ import annotations

import re
from typing import Any

PLASTICITY_METRICS = (
    "dormant_ratio", "dead_ratio", "active_units", "effective_rank", "srank",
    "feature_norm", "weight_norm", "weight_distance_from_init", "grad_norm",
)
"""The monitor's metrics charted per network."""


def _exact(tag: str) -> str:
    return f"^{re.escape(tag)}$"


def continual_layout(task_names: list[str], networks: list[str],
                     metrics: tuple[str, ...] = PLASTICITY_METRICS) -> dict[str, Any]:
    """The custom-scalar layout for a run's tasks (schedule order) and networks."""
    switches = _exact("task/index")
    continual: dict[str, Any] = {
        "evaluation return, every task (with task/index)":
            ["Multiline", [_exact(f"eval/{t}/return") for t in task_names] + [switches]],
    }
    for t in task_names:
        continual[f"{t}: evaluation and training return"] = [
            "Multiline", [_exact(f"eval/{t}/return"), _exact(f"charts/{t}/episodic_return"), switches]]
    layout: dict[str, Any] = {"continual": continual}
    several = len(networks) > 1
    for net in networks:
        prefix = f"plasticity/{net}/" if several else "plasticity/"
        layout[prefix.rstrip("/")] = {
            f"{prefix}{m}": ["Multiline", [f"^{re.escape(prefix + m)}(/.*)?$"]] for m in metrics
        }
    return layout


def add_continual_layout(writer: Any, task_names: list[str], networks: list[str]) -> None:
    """Write the layout once to a ``SummaryWriter`` (shown in its CUSTOM SCALARS tab)."""
    writer.add_custom_scalars(continual_layout(task_names, networks))
