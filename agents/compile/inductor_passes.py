"""A graph pass for `torch.compile` on a CPU: a linear layer's bias joins the element-wise
kernel that follows the matrix product instead of going through BLAS.

Inductor turns `x @ W.T + b` into `addmm(b, x, W.T)`. On a CPU, ATen runs that as a copy
of the broadcast bias into the (B, out) output followed by a GEMM with beta = 1: one more
pass over a 256 KB tensor per 256x256 layer, about a dozen times per SAC update. Where the
product feeds only element-wise ops (the activation, the backward's mask), this pass
rewrites it as `mm(x, W.T) + b`, and Inductor fuses the `+ b` into the kernel that
already reads the product. Off the CPU it leaves the graph alone (Inductor makes that call
itself on a GPU).

    torch.compile(fn, options={"post_grad_custom_post_pass": UnfuseBiasAddmm()})
"""

from __future__ import annotations

import torch
from torch._inductor.custom_graph_pass import CustomGraphPass

aten = torch.ops.aten


def _pointwise(node: torch.fx.Node) -> bool:
    return (node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload)
            and torch.Tag.pointwise in node.target.tags)


class UnfuseBiasAddmm(CustomGraphPass):
    """Rewrite `addmm(bias (N,), x, w)` whose users are all element-wise as `mm(x, w) + bias`, on a CPU."""

    def __call__(self, graph: torch.fx.Graph) -> None:
        for node in list(graph.nodes):
            if node.op != "call_function" or node.target is not aten.addmm.default or node.kwargs:
                continue
            bias, mat1, mat2 = node.args
            out = node.meta.get("val")
            b = bias.meta.get("val") if isinstance(bias, torch.fx.Node) else None
            if out is None or b is None or out.device.type != "cpu" or b.dim() != 1 or not node.users \
                    or not all(_pointwise(user) for user in node.users):
                continue
            with graph.inserting_before(node):
                mm = graph.call_function(aten.mm.default, (mat1, mat2))
                mm.meta["val"] = out
                add = graph.call_function(aten.add.Tensor, (mm, bias))
                add.meta.update(node.meta)
            node.replace_all_uses_with(add)
            graph.erase_node(node)

    def uuid(self) -> str:
        return "agents.compile.inductor_passes.UnfuseBiasAddmm/1"
