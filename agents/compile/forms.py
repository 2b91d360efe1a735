"""Whether modules should take the forms meant for a compiler (`ScalarHead`'s multiply + row sum).

`torch.compiler.is_compiling()` is true under `torch.compile`; `CompiledGrad` traces its graph
with `make_fx` instead, so it marks the trace with `tracing_for_compile()`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

_tracing = [False]  # set while CompiledGrad traces a graph for Inductor


def compiling() -> bool:
    """True under `torch.compile` or inside `tracing_for_compile()`."""
    return _tracing[0] or torch.compiler.is_compiling()


@contextlib.contextmanager
def tracing_for_compile() -> Iterator[None]:
    """Modules take their compiled forms inside this block."""
    before, _tracing[0] = _tracing[0], True
    try:
        yield
    finally:
        _tracing[0] = before
