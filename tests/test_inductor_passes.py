"""UnfuseBiasAddmm on hand-built graphs: which `addmm` nodes it rewrites and which it leaves alone
(the rewrite itself, on an MLP, is in `test_compiled_grad.py`)."""

from __future__ import annotations

import torch
from torch import nn
from torch.fx.experimental.proxy_tensor import make_fx

from agents.compile.inductor_passes import UnfuseBiasAddmm

aten = torch.ops.aten
F = nn.functional


def traced(fn, *args):
    return make_fx(fn, tracing_mode="fake")(*args)


def addmms(gm):
    return [n for n in gm.graph.nodes if n.target is aten.addmm.default]


def rewritten(gm) -> int:
    return sum(n.target is aten.mm.default for n in gm.graph.nodes)


def test_a_kept_addmm_before_a_rewritable_one_does_not_stop_the_pass():
    x, w, b, w2 = torch.randn(8, 5), torch.randn(4, 5), torch.randn(4), torch.randn(3, 4)

    def net(x, w, b, w2):
        kept = F.linear(F.linear(x, w, b), w2)  # feeds a product: kept (and first in the graph)
        return kept, torch.relu(F.linear(x, w, b))

    gm = traced(net, x, w, b, w2)
    assert len(addmms(gm)) == 2
    UnfuseBiasAddmm()(gm.graph)
    gm.recompile()
    assert len(addmms(gm)) == 1 and rewritten(gm) == 2  # 1 new, 1 the kept addmm's own mm of w2
    mm = next(n for n in gm.graph.nodes if n.target is aten.mm.default and n.args[0].name == "x_1")
    assert mm.meta["val"].shape == (8, 4)  # the product carries the addmm's metadata
    for got, want in zip(gm(x, w, b, w2), net(x, w, b, w2)):
        assert torch.allclose(got, want, atol=1e-6)


def test_a_matrix_bias_is_left_alone():
    x, w, b = torch.randn(8, 5), torch.randn(5, 4), torch.randn(8, 4)
    gm = traced(lambda x, w, b: torch.relu(torch.addmm(b, x, w)), x, w, b)
    UnfuseBiasAddmm()(gm.graph)
    assert len(addmms(gm)) == 1 and rewritten(gm) == 0


def relu_layer(device="cpu"):
    """relu(x @ w.T + b) traced: one addmm feeding an element-wise op (rewritable as it stands)."""
    x, w, b = (torch.randn(*s, device=device) for s in ((8, 5), (4, 5), (4,)))
    gm = traced(lambda x, w, b: torch.relu(F.linear(x, w, b)), x, w, b)
    (node,) = addmms(gm)
    return gm, node


def left_alone(gm) -> bool:
    UnfuseBiasAddmm()(gm.graph)
    return len(addmms(gm)) == 1 and rewritten(gm) == 0


def test_the_relu_layer_is_rewritten_as_it_stands():
    gm, _ = relu_layer()
    assert not left_alone(gm)


def test_off_the_cpu_it_leaves_the_graph_alone():
    gm, _ = relu_layer(device="meta")
    assert left_alone(gm)


def test_nodes_without_shapes_or_with_a_constant_bias_are_left_alone():
    gm, node = relu_layer()
    del node.meta["val"]  # no recorded output
    assert left_alone(gm)
    gm, node = relu_layer()
    node.args = (0.0, *node.args[1:])  # a bias that is not a graph node
    assert left_alone(gm)


def test_an_addmm_without_users_is_left_alone():
    gm, node = relu_layer()
    relu = next(iter(node.users))
    relu.replace_all_uses_with(node)
    gm.graph.erase_node(relu)
    out = next(n for n in gm.graph.nodes if n.op == "output")
    out.args = ((),)  # the addmm's value is no longer used
    assert not node.users
    assert left_alone(gm)
