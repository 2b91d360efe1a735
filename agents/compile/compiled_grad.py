"""Gradients of a loss with respect to one module's parameters, forward and backward in one
compiled graph.

Eager training runs the forward op by op, records the autograd graph, then walks it in
`backward()`: on a CPU with small MLPs (SAC's 256-256 networks, batch 256) that bookkeeping
costs about as much as the matrix products. `CompiledGrad` instead traces

    grads, aux = torch.func.grad(lambda params: functional_call(module, params, fn)(*args))

once into an ATen graph (`make_fx`), the backward written out op by op, and hands it to
Inductor (`compile_fx`): the forward, the backward and every element-wise op between them
become one compiled function (the matrix products stay library calls; a bias joins the
element-wise kernel after its product, `inductor_passes.py`). A call writes the
result into `p.grad` of the module's trainable parameters. The optimizer step that follows
is the usual eager one; a loss term added afterwards (an intervention's penalty) is handled
by an ordinary `backward()`, which accumulates onto these gradients, since gradients add.

    critic_grad = CompiledGrad(critic, lambda obs, a, y: ((critic(obs, a) - y).pow(2).mean(), None))
    aux = critic_grad(obs, a, y)       # critic's p.grad set; nothing else receives a gradient
    optimizer.step()

`fn(*args)` returns `(loss, aux)`. It may call `module` and the `watch` modules: only
`module`'s parameters are differentiated; the watch modules' parameters and buffers are
inputs of the graph too, read afresh at every call, so their updates are seen. `aux` (a
pytree of tensors) is returned detached. Every tensor `fn` uses must come through `args` or
those modules (tracing refuses any other, with a message saying so); other Python values it
reads are fixed when it is traced.

Why not `torch.compile`: it would guard every call on ~1,100 conditions (the modules'
structure, the functorch and pytree internals `grad` and `functional_call` run through),
~0.2 ms per call here. The conditions that matter are few and known, so this class keys
its compiled functions on them itself: the names, shapes, dtypes and `requires_grad` of the
modules' tensors, the modules' training flags, and the shapes and dtypes of the tensor
arguments (other arguments by value). A structure change (plasticity injection, a frozen
layer) compiles once more; a compiled graph cannot run forward hooks faithfully, so
`usable()` tells the caller to take its eager path while a hook is attached to a watched
module (an intervention or a monitor watching the training forward), and also when this
PyTorch lacks an internal the compilation needs (`internals.py`: one warning, then eager).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from agents.compile.forms import tracing_for_compile
from agents.compile.internals import available

try:
    from torch.utils import _pytree as pytree
except ImportError:  # available("compiled_grad") is then False: nothing below runs
    pytree = None


class _Objective(nn.Module):
    """Holds the modules as submodules so `functional_call` can swap their tensors while `fn` runs."""

    def __init__(self, modules: Sequence[nn.Module], fn: Callable[..., tuple[torch.Tensor, Any]]):
        super().__init__()
        self.nets = nn.ModuleList(modules)
        self.fn = fn

    def forward(self, *args: Any) -> tuple[torch.Tensor, Any]:
        return self.fn(*args)


_registrations = [0]  # parameters, buffers and submodules registered on any module so far (see below)


def _count_registrations() -> None:
    """Count every registration of a parameter, buffer or submodule on any module (global
    hooks, installed once): a `CompiledGrad` re-walks its modules only after one."""
    if getattr(_count_registrations, "installed", False):
        return

    def bump(*_: Any) -> None:
        _registrations[0] += 1

    from torch.nn.modules import module as module_mod
    module_mod.register_module_parameter_registration_hook(bump)
    module_mod.register_module_buffer_registration_hook(bump)
    module_mod.register_module_module_registration_hook(bump)
    _count_registrations.installed = True


def _hooked(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks)


def has_hooks(module: nn.Module) -> bool:
    """True if any submodule has a forward (pre-)hook attached."""
    return any(_hooked(m) for m in module.modules())


class _Walk(NamedTuple):
    """What one walk over the watched modules found (see `CompiledGrad._current`)."""

    registrations: int  # `_registrations[0]` when walked
    diff: list[tuple[str, nn.Parameter]]  # the differentiated parameters, by name
    rest: list[tuple[str, torch.Tensor]]  # every other tensor of the watched modules, by name
    tensors: list[torch.Tensor]  # diff's then rest's tensors themselves (a `.data` swap is seen)
    key: tuple  # names, shapes, dtypes, requires_grad, train/eval flags: what a compiled graph fixes
    modules: list[nn.Module]  # every watched module and submodule (for the hook check)


class CompiledGrad:
    """`p.grad` of `module`'s trainable parameters for the loss `fn(*args)[0]`, in one compiled graph."""

    def __init__(self, module: nn.Module, fn: Callable[..., tuple[torch.Tensor, Any]], compile: bool = True,
                 watch: Sequence[nn.Module] = ()):
        self.watch = [module, *(m for m in watch if m is not module)]
        # compile asked for but an internal missing (one warning): `usable()` is False, the caller goes eager
        self._unavailable = compile and not available("compiled_grad")
        self.compile = compile and not self._unavailable
        self._objective = _Objective(self.watch, fn)
        self._compiled: dict[tuple, tuple[Callable, Any]] = {}
        self._walk: _Walk | None = None
        if not self._unavailable:
            _count_registrations()

    def usable(self) -> bool:
        """False while a forward hook is attached to a watched module, or when compiling was asked
        for and this PyTorch cannot (the caller should go eager)."""
        if self._unavailable:
            return False
        return not any(_hooked(m) for m in self._current().modules)

    def _tensors(self) -> tuple[list[tuple[str, nn.Parameter]], list[tuple[str, torch.Tensor]]]:
        """(the differentiated parameters, every other tensor of the watched modules), by name;
        one walk over the modules (a tensor shared by several is listed once, by its first name)."""
        diff, rest, seen = [], [], set()
        for prefix, m in self._objective.named_modules(remove_duplicate=False):
            owned = prefix == "nets.0" or prefix.startswith("nets.0.")
            for kind, tensors in ((0, m._parameters), (1, m._buffers)):
                for name, t in tensors.items():
                    if t is None or id(t) in seen:
                        continue
                    seen.add(id(t))
                    entry = (f"{prefix}.{name}", t)
                    (diff if kind == 0 and owned and t.requires_grad else rest).append(entry)
        return diff, rest

    def _function(self, diff_names: list[str], rest_names: list[str], args: tuple) -> Callable:
        """f(*diff, *rest, *tensor_args) -> [grads..., aux leaves...]; the aux's pytree spec in f.spec["aux"]."""
        n_diff, n_tensors = len(diff_names), len(diff_names) + len(rest_names)
        tensor_at = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
        objective, spec = self._objective, {}

        def f(*xs: torch.Tensor) -> list[torch.Tensor]:
            rest = dict(zip(rest_names, xs[n_diff:n_tensors]))
            full = list(args)
            for i, x in zip(tensor_at, xs[n_tensors:]):
                full[i] = x

            def loss_of(params: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Any]:
                return torch.func.functional_call(objective, {**params, **rest}, tuple(full))

            grads, aux = torch.func.grad(loss_of, has_aux=True)(dict(zip(diff_names, xs[:n_diff])))
            leaves, spec["aux"] = pytree.tree_flatten(aux)
            return [*(grads[n] for n in diff_names), *leaves]

        f.spec = spec
        return f

    def _key(self, diff, rest) -> tuple:
        return (tuple((n, p.shape, p.dtype) for n, p in diff),
                tuple((n, t.shape, t.dtype, t.requires_grad) for n, t in rest),
                tuple(m.training for m in self.watch))

    def _current(self) -> _Walk:
        """The last walk, walked again only when a module registered a tensor or a submodule
        anywhere since, or a listed tensor changed shape or `requires_grad`, or a watched module
        switched train/eval."""
        w = self._walk
        if w is not None and w.registrations == _registrations[0]:
            diff_key, rest_key, flags = w.key
            n = len(diff_key)
            if all(t.shape == k[1] and t.requires_grad for t, k in zip(w.tensors[:n], diff_key)) \
                    and all(t.shape == k[1] and t.requires_grad == k[3] for t, k in zip(w.tensors[n:], rest_key)) \
                    and all(m.training == flag for m, flag in zip(self.watch, flags)):
                return w
        diff, rest = self._tensors()
        self._walk = _Walk(_registrations[0], diff, rest, [t for _, t in [*diff, *rest]], self._key(diff, rest),
                           [m for net in self.watch for m in net.modules()])
        return self._walk

    def __call__(self, *args: Any) -> Any:
        """Set `p.grad` (replacing any previous value) of every trainable parameter; return aux."""
        walk = self._current()
        diff, rest, tensors, key = walk.diff, walk.rest, walk.tensors, walk.key
        tensor_args = [a for a in args if isinstance(a, torch.Tensor)]
        with torch.no_grad():
            if not self.compile:
                f = self._function([n for n, _ in diff], [n for n, _ in rest], args)
                out, spec = f(*tensors, *tensor_args), f.spec["aux"]
            else:
                key = (key, tuple((a.shape, a.dtype, a.device) if isinstance(a, torch.Tensor) else (type(a), a)
                                  for a in args))
                if key not in self._compiled:
                    self._compiled[key] = self._build(diff, rest, args, [*tensors, *tensor_args])
                compiled, spec = self._compiled[key]
                out = compiled(*tensors, *tensor_args)
        for (_, p), g in zip(diff, out):
            p.grad = g
        return pytree.tree_unflatten([x.detach() for x in out[len(diff):]], spec)

    def _build(self, diff, rest, args: tuple, inputs: list[torch.Tensor]) -> tuple[Callable, Any]:
        from torch._inductor import config as inductor_config
        from torch._inductor.compile_fx import compile_fx
        from torch.fx.experimental.proxy_tensor import make_fx

        from agents.compile.inductor_passes import UnfuseBiasAddmm

        f = self._function([n for n, _ in diff], [n for n, _ in rest], args)
        try:
            with tracing_for_compile():
                graph = make_fx(f, tracing_mode="fake")(*inputs)
        except AssertionError as err:
            if "FakeTensor" not in str(err):
                raise
            raise ValueError("CompiledGrad: the loss reads a tensor that is neither an argument nor a parameter or "
                             "buffer of the module or of a `watch` module; pass its module in `watch`") from err
        # on a CPU the wrapper that launches the kernels is C++ too: a Python wrapper's ~100 calls
        # per graph cost ~7% of a SAC training step here (cached compilations take a few seconds
        # longer the first time)
        cpu = all(t.device.type == "cpu" for t in inputs)
        with inductor_config.patch({"post_grad_custom_post_pass": UnfuseBiasAddmm(), "cpp_wrapper": cpu}):
            compiled = compile_fx(graph, inputs)
        return compiled, f.spec["aux"]
