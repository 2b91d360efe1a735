"""The compiled update and the fast optimizer and target steps: the only code of the project
that uses private PyTorch APIs.

- `CompiledGrad` (`compiled_grad.py`): a loss' forward and backward with respect to one
  module's parameters traced by `make_fx` and compiled by Inductor as one graph; with the
  graph pass `UnfuseBiasAddmm` (`inductor_passes.py`) and the modules' compiled forms
  (`forms.py`, `ScalarHead`). `--dqn.compile` and `--sac.compile` both go through it, by
  `loss_gradients` (`gradients.py`), which takes the eager path when it cannot be used.
- `optimizer_step` and `lerp_` (`optimizer_step.py`): a fused Adam's step without
  `Optimizer.step`'s Python; the Polyak step as one multi-tensor kernel.

Every private name they need is looked up once (`internals.py`); when this PyTorch lacks one,
one warning line says so and the agent runs the public eager code, with the same numbers.
"""

from agents.compile.compiled_grad import CompiledGrad, has_hooks
from agents.compile.forms import compiling, tracing_for_compile
from agents.compile.optimizer_step import lerp_, optimizer_step

__all__ = ["CompiledGrad", "compiling", "has_hooks", "lerp_", "optimizer_step", "tracing_for_compile"]
