"""Which private PyTorch internals this folder relies on, checked once per feature.

Each fast path here needs a few underscored names of PyTorch that a release may rename or
remove. `available(feature)` looks them up once (imports and attribute checks, no
computation); when one is missing it warns once, in one line naming it, and returns False,
and the caller takes its eager path, which computes the same numbers:

- `compiled_grad` (`CompiledGrad`): `make_fx`, Inductor's `compile_fx`, `config.patch` and two
  of its options, `CustomGraphPass`, `torch.utils._pytree`, the global module-registration
  hooks, `Module._forward_hooks`; without them, the agent's eager forward and `backward()`.
- `fused_adam` (`optimizer_step`): `torch._fused_adam_`, `torch._foreach_add_`, the
  optimizers' step-hook dicts; without them, `optimizer.step()`.
- `foreach_lerp` (`lerp_`): `torch._foreach_lerp_`; without it, one `lerp_` per tensor.
"""

from __future__ import annotations

import importlib
import warnings

import torch

# feature -> (module, attribute) pairs that must exist; an instance attribute is checked on a
# fresh object (see _instance_attrs)
_NEEDS: dict[str, list[tuple[str, str]]] = {
    "compiled_grad": [
        ("torch.fx.experimental.proxy_tensor", "make_fx"),
        ("torch._inductor.compile_fx", "compile_fx"),
        ("torch._inductor.config", "patch"),
        ("torch._inductor.config", "post_grad_custom_post_pass"),
        ("torch._inductor.config", "cpp_wrapper"),
        ("torch._inductor.custom_graph_pass", "CustomGraphPass"),
        ("torch.utils._pytree", "tree_flatten"),
        ("torch.utils._pytree", "tree_unflatten"),
        ("torch.nn.modules.module", "register_module_parameter_registration_hook"),
        ("torch.nn.modules.module", "register_module_buffer_registration_hook"),
        ("torch.nn.modules.module", "register_module_module_registration_hook"),
        ("torch.func", "grad"),
        ("torch.func", "functional_call"),
        ("torch", "_ops"),
    ],
    "fused_adam": [
        ("torch", "_fused_adam_"),
        ("torch", "_foreach_add_"),
        ("torch.optim.optimizer", "_global_optimizer_pre_hooks"),
        ("torch.optim.optimizer", "_global_optimizer_post_hooks"),
    ],
    "foreach_lerp": [("torch", "_foreach_lerp_")],
}

_FALLBACK = {
    "compiled_grad": "the compiled update (--dqn.compile / --sac.compile) runs eager instead",
    "fused_adam": "Adam steps go through optimizer.step()",
    "foreach_lerp": "Polyak updates run one lerp_ per tensor",
}

_checked: dict[str, bool] = {}  # feature -> available; filled once per process (tests clear it)


def _instance_attrs(feature: str) -> list[tuple[object, str, str]]:
    if feature == "compiled_grad":
        m = torch.nn.Module()
        return [(m, "_forward_hooks", "nn.Module._forward_hooks"),
                (m, "_forward_pre_hooks", "nn.Module._forward_pre_hooks")]
    if feature == "fused_adam":
        opt = torch.optim.Adam([torch.zeros(1)])
        return [(opt, "_optimizer_step_pre_hooks", "Optimizer._optimizer_step_pre_hooks"),
                (opt, "_optimizer_step_post_hooks", "Optimizer._optimizer_step_post_hooks")]
    return []


def missing(feature: str) -> str | None:
    """The first internal `feature` needs that this PyTorch lacks, or None."""
    for module, attr in _NEEDS[feature]:
        try:
            if not hasattr(importlib.import_module(module), attr):
                return f"{module}.{attr}"
        except Exception:  # an import that fails for any reason counts as missing
            return module
    for obj, attr, name in _instance_attrs(feature):
        if not hasattr(obj, attr):
            return name
    return None


def available(feature: str) -> bool:
    """True if every internal `feature` needs exists; the first time it does not, one warning."""
    ok = _checked.get(feature)
    if ok is None:
        lacking = missing(feature)
        ok = _checked[feature] = lacking is None
        if not ok:
            warnings.warn(f"torch {torch.__version__} has no {lacking}: {_FALLBACK[feature]} "
                          "(same numbers, slower)", RuntimeWarning, stacklevel=3)
    return ok
