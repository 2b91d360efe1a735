"""The structure of a network, read from its forward pass with `torch.fx`.

Every structural intervention (ReDo, CBP, Reset of the last k layers, SWR) and the Monitor
read the same `Structure`: which module's output feeds which, through functional
activations (``F.relu``), reshapes (``flatten``/``view``), pooling, forks (two heads on the
same features, twin critics) and residual sums, never through the order in which the
modules were registered.

How it is obtained: ``torch.fx`` symbolic tracing of the module, at attach time, with no
example input. Weight layers, norms, activation modules and every submodule that holds no
Linear/Conv layer (e.g. a module that scales uint8 frames with an ``if x.dtype == ...``)
are leaves: they appear as one call and are not traced into. A network whose forward does
not trace (data-dependent Python control flow around its layers, a layer called twice) is
refused in one line that names the module and says how to give the structure explicitly
(``pairs=`` for ReDo/CBP, ``layers=`` for Reset and the Monitor, ``chain=True`` for SWR).

Vocabulary (one definition, shared with `plasticity.layers`):

* a **weight layer** is an `nn.Linear` / `nn.Conv1d/2d/3d` (`layers.is_weight_layer`);
* an **activation** is an activation module (`layers.is_activation`) or one of the
  element-wise activation functions / tensor methods in `ACTIVATION_FUNCTIONS`;
* a **norm** is `layers.is_norm`.

A hidden weight layer L forms a **neuron group** when every path from its output reaches
other weight layers (its *readers*) through, in order, at most one norm and at most one activation, with shape operations
(flatten, view, reshape, pooling, dropout, identity) anywhere in between; forks are
allowed anywhere on the way, as long as every reader sees L through the same norm and
activation calls. If a path from L reaches the network's output, a sum, a
concatenation, or any other operation, L is not a group: its units are never recycled or
replaced (zeroing their outgoing weights would not remove exactly their contribution; a
block input of an IMPALA residual sum is such a layer) and are left out of ReDo's ratios.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from plasticity import layers as L

#: element-wise activation functions (call_function targets) and their output bounds when
#: they saturate (None for rectifier-like ones)
ACTIVATION_FUNCTIONS: dict[Any, tuple[float, float] | None] = {
    F.relu: None, torch.relu: None, F.relu6: (0.0, 6.0), F.leaky_relu: None, F.elu: None,
    F.selu: None, F.celu: None, F.gelu: None, F.silu: None, F.mish: None, F.softplus: None,
    F.hardswish: None, torch.tanh: (-1.0, 1.0), F.tanh: (-1.0, 1.0), torch.sigmoid: (0.0, 1.0),
    F.sigmoid: (0.0, 1.0), F.hardtanh: (-1.0, 1.0), F.hardsigmoid: (0.0, 1.0),
    F.softsign: (-1.0, 1.0),
}
#: the same as tensor methods (call_method targets)
ACTIVATION_METHODS: dict[str, tuple[float, float] | None] = {
    "relu": None, "relu_": None, "tanh": (-1.0, 1.0), "tanh_": (-1.0, 1.0),
    "sigmoid": (0.0, 1.0), "sigmoid_": (0.0, 1.0),
}
_SHAPE_FUNCTIONS = {torch.flatten, torch.reshape, F.max_pool1d, F.max_pool2d, F.max_pool3d,
                    F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d,
                    F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.dropout}
_SHAPE_METHODS = {"flatten", "view", "reshape", "contiguous", "float", "to", "type", "clone"}
_SHAPE_MODULES = (nn.Flatten, nn.Identity, nn.Dropout, nn.modules.pooling._MaxPoolNd,
                  nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd,
                  nn.modules.pooling._AdaptiveMaxPoolNd)


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if L.is_weight_layer(m) or L.is_norm(m) or L.is_activation(m):
            return True
        if not any(L.is_weight_layer(s) for s in m.modules()):
            return True
        return False


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


class Structure:
    """The traced data flow of `module` (see the module docstring).

    Args:
        module: the network.
        who: prefix of error messages (the intervention's name).
        hint: how to give the structure explicitly, for the refusal message.
    """

    def __init__(self, module: nn.Module, who: str = "plasticity", hint: str = "") -> None:
        # a bare layer is a network of one layer: traced inside a one-entry container, where its
        # call is a layer node (named "0") rather than the layer's own functional forward
        self.module = nn.Sequential(module) if L.is_weight_layer(module) or L.is_norm(module) else module
        self.who = who
        name = type(module).__name__
        how = f"; pass the structure explicitly ({hint})" if hint else ""
        try:
            self.graph: fx.Graph = _Tracer().trace(self.module)
        except Exception as err:  # noqa: BLE001 - any tracing failure means "unreadable"
            raise ValueError(f"{who}: cannot read the structure of {name} from its forward pass "
                             f"with torch.fx ({_first_line(err)}){how}") from None
        self.nodes = list(self.graph.nodes)
        self._modules = dict(self.module.named_modules())
        calls: dict[str, int] = {}
        for n in self.nodes:
            if n.op == "call_module":
                calls[n.target] = calls.get(n.target, 0) + 1
        self.calls = calls
        twice = [t for t, c in calls.items() if c > 1 and L.is_weight_layer(self._modules[t])]
        if twice:
            raise ValueError(f"{who}: layer {twice[0]!r} of {name} is called {calls[twice[0]]} times in "
                             f"one forward pass (shared weights){how}")
        #: weight-layer nodes in forward order
        self.layer_nodes = [n for n in self.nodes if self.kind(n) == "layer"]
        self.output = next(n for n in self.nodes if n.op == "output")
        self._probes: dict[tuple[fx.Node, ...], fx.GraphModule] = {}

    def stale(self) -> bool:
        """True when a traced submodule was replaced since tracing (plasticity injection)."""
        for n in self.nodes:
            if n.op == "call_module":
                try:
                    if self.module.get_submodule(n.target) is not self._modules[n.target]:
                        return True
                except AttributeError:
                    return True
        return False

    # ------------------------------------------------------------ classification
    def module_of(self, node: fx.Node) -> nn.Module | None:
        return self._modules[node.target] if node.op == "call_module" else None

    def kind(self, node: fx.Node) -> str:
        """'layer', 'norm', 'act', 'shape' or 'other'."""
        if node.op == "call_module":
            m = self._modules[node.target]
            if L.is_weight_layer(m):
                return "layer"
            if L.is_norm(m):
                return "norm"
            if L.is_activation(m):
                return "act"
            if isinstance(m, _SHAPE_MODULES):
                return "shape"
            return "other"
        if node.op == "call_function":
            if node.target in ACTIVATION_FUNCTIONS:
                return "act"
            if node.target in _SHAPE_FUNCTIONS:
                return "shape"
        if node.op == "call_method":
            if node.target in ACTIVATION_METHODS:
                return "act"
            if node.target in _SHAPE_METHODS:
                return "shape"
        return "other"

    def name(self, node: fx.Node) -> str:
        return node.target if node.op == "call_module" else node.name

    def activation_bounds(self, node: fx.Node) -> tuple[float, float] | None:
        """Output range of a saturating activation node (by its function), else None."""
        m = self.module_of(node)
        if m is not None:
            return saturation_bounds(m)
        if node.op == "call_function":
            if node.target is F.hardtanh:
                lo = node.kwargs.get("min_val", node.args[1] if len(node.args) > 1 else -1.0)
                hi = node.kwargs.get("max_val", node.args[2] if len(node.args) > 2 else 1.0)
                return (float(lo), float(hi))
            return ACTIVATION_FUNCTIONS.get(node.target)
        return ACTIVATION_METHODS.get(node.target)

    @staticmethod
    def _inputs(node: fx.Node) -> list[fx.Node]:
        return list(node.all_input_nodes)

    def first_source(self, node: fx.Node) -> fx.Node | None:
        """Walking back from `node`'s first tensor operand (the first one of a sum or a
        concatenation), the nearest weight layer or norm node, or None (a network input).
        Operands read from the module (``get_attr``: a parameter or buffer) are passed over.
        Each step goes to an earlier node of the graph, so the walk ends."""
        cur = node
        while True:
            ins = [n for n in self._inputs(cur) if n.op != "get_attr"]
            if not ins:
                return None
            cur = ins[0]
            if self.kind(cur) in ("layer", "norm"):
                return cur

    def producer_layer(self, node: fx.Node) -> fx.Node | None:
        """The nearest weight layer upstream along first operands (norms are passed)."""
        cur: fx.Node | None = node
        while cur is not None:
            cur = self.first_source(cur)
            if cur is not None and self.kind(cur) == "layer":
                return cur
        return None

    def downstream(self, node: fx.Node) -> tuple[set[fx.Node], bool]:
        """Weight layers reached from `node` through any operations (stopping at layers),
        and whether the network's output is reached."""
        layers: set[fx.Node] = set()
        out = False
        stack, seen = list(node.users), set()
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            if n.op == "output":
                out = True
            elif self.kind(n) == "layer":
                layers.add(n)
            else:
                stack.extend(n.users)
        return layers, out

    def output_layers(self) -> list[fx.Node]:
        """Weight layers whose output reaches the network's output without another layer."""
        return [n for n in self.layer_nodes if self.downstream(n)[1]]

    def depth(self) -> dict[fx.Node, int]:
        """Weight layers counted from the output: 1 for output layers, 1 + the smallest depth
        of the layers a layer feeds otherwise (1 for a layer whose output nothing reads)."""
        depth: dict[fx.Node, int] = {}
        for n in reversed(self.layer_nodes):
            nexts, out = self.downstream(n)
            cands = ([1] if out else []) + [depth[m] + 1 for m in nexts if m in depth]
            depth[n] = min(cands) if cands else 1
        return depth

    def attached_modules(self, node: fx.Node) -> list[nn.Module]:
        """Modules owning parameters met from a layer's output up to the next weight layers
        or the output (its norm, AdaLin slopes, ...), forward order."""
        found: list[nn.Module] = []
        stack, seen = list(node.users), set()
        while stack:
            n = stack.pop()
            if n in seen or self.kind(n) == "layer":  # (the output node has no module and no users)
                continue
            seen.add(n)
            m = self.module_of(n)
            if m is not None and any(True for _ in m.parameters()) and all(m is not f for f in found):
                found.append(m)
            stack.extend(n.users)
        return found

    # ------------------------------------------------------------ neuron groups
    def _group_path(self, node: fx.Node):
        """(readers, norm node, activation node, probe node) or the reason it is no group.

        Every path from `node` must be: shape operations, at most one norm, shape
        operations, at most one activation, shape operations, then a weight layer reading
        it as its input; every path must meet the same norm and activation nodes."""
        readers: list[fx.Node] = []
        pairs: set[tuple[fx.Node | None, fx.Node | None]] = set()
        stack: list[tuple[fx.Node, fx.Node | None, fx.Node | None]] = [(node, None, None)]
        seen: set[tuple[fx.Node, fx.Node | None, fx.Node | None]] = set()
        while stack:
            n, norm, act = stack.pop()
            for u in n.users:
                if (u, norm, act) in seen:
                    continue
                seen.add((u, norm, act))
                k = self.kind(u)
                if u.op == "output":
                    return "it reaches the network's output"
                if k == "layer":
                    if not u.args or u.args[0] is not n:
                        return f"{self.name(u)} reads it as a second argument"
                    readers.append(u)
                    pairs.add((norm, act))
                elif k == "shape":
                    stack.append((u, norm, act))
                elif k == "norm" and norm is None and act is None:
                    stack.append((u, u, act))
                elif k == "act" and act is None:
                    stack.append((u, norm, u))
                else:
                    what = getattr(u.target, "__name__", u.target)
                    return f"it feeds {u.name} ({what})"
        if not readers:
            return "nothing reads it"
        if len(pairs) != 1:
            return "its readers see it through different norms or activations"
        norm, act = next(iter(pairs))
        return readers, norm, act, act or norm or node

    def groups(self) -> list[L.NeuronGroup]:
        """The hidden layers whose units can be recycled, in forward order."""
        out = []
        for node in self.layer_nodes:
            path = self._group_path(node)
            if isinstance(path, str):
                continue
            readers, norm, act, probe = path
            g = L.make_group(self.name(node), self.module_of(node), [self.module_of(r) for r in readers],
                             self.module_of(act) if act is not None else None,
                             self.module_of(norm) if norm is not None else None)
            if g is None:
                continue
            g.structure = self
            g.probe_node = probe
            pm = self.module_of(probe)
            g.hook_module = pm if pm is not None and self.calls[probe.target] == 1 else None
            out.append(g)
        return out

    def why_not_group(self, layer_name: str) -> str:
        node = next(n for n in self.layer_nodes if self.name(n) == layer_name)
        path = self._group_path(node)
        return path if isinstance(path, str) else "it is a group"

    # ------------------------------------------------------------ probing
    def activation_nodes(self) -> list[fx.Node]:
        return [n for n in self.nodes if self.kind(n) == "act"]

    def probe(self, nodes: Sequence[fx.Node]) -> fx.GraphModule:
        """A module sharing `module`'s parameters whose forward returns the values of `nodes`."""
        key = tuple(nodes)
        cached = self._probes.get(key)
        if cached is not None:
            return cached
        g = fx.Graph()
        env: dict[fx.Node, fx.Node] = {}
        g.graph_copy(self.graph, env)
        g.output(tuple(env[n] for n in nodes))
        gm = fx.GraphModule(self.module, g)
        gm.graph.eliminate_dead_code()
        gm.recompile()
        self._probes[key] = gm
        return gm


def saturation_bounds(module: nn.Module) -> tuple[float, float] | None:
    """Output range of a saturating activation module, judged by its function (an AdaLin by
    its base φ), or None for rectifier-like ones."""
    kind = getattr(module, "kind", None)
    if getattr(module, "is_activation", False) is True and kind is not None:
        return {"tanh": (-1.0, 1.0)}.get(kind)
    if isinstance(module, (nn.Tanh, nn.Softsign)):
        return (-1.0, 1.0)
    if isinstance(module, (nn.Sigmoid, nn.Hardsigmoid)):
        return (0.0, 1.0)
    if isinstance(module, nn.Hardtanh):  # includes ReLU6
        return (float(module.min_val), float(module.max_val))
    return None

