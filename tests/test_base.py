"""plasticity/base.py: the default hooks of an intervention and `call_module`."""

from __future__ import annotations

import torch
from torch import nn

from plasticity.base import Intervention, call_module


def test_default_hooks_do_nothing_but_count_updates():
    iv = Intervention()
    assert iv.name == "intervention" and iv.updates == 0
    assert iv.loss() is None and iv.metrics() == {} and iv.on_task_switch(3) is None
    iv.after_step()
    iv.after_step(torch.zeros(2))
    assert iv.updates == 2 and iv.state_dict() == {"updates": 2}
    fresh = Intervention()
    fresh.load_state_dict({"updates": 5.0})
    assert fresh.updates == 5 and type(fresh.updates) is int
    fresh.load_state_dict({})
    assert fresh.updates == 0


class _Two(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        return a if b is None else a - b


def test_call_module_spreads_a_tuple_or_list_and_passes_a_tensor_whole():
    m = _Two()
    a, b = torch.tensor([5.0, 1.0]), torch.tensor([2.0, 3.0])
    assert torch.equal(call_module(m, (a, b)), torch.tensor([3.0, -2.0]))
    assert torch.equal(call_module(m, [a, b]), torch.tensor([3.0, -2.0]))
    assert torch.equal(call_module(m, a), a)
