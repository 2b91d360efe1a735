"""Plasticity interventions and metrics for any PyTorch agent.

This package imports only `torch`. Names are loaded on first use, so importing
`plasticity` is cheap and a user can copy the folder into their own project.

    import plasticity as pl
    model = pl.adalin.convert(model)
    swr = pl.SWR(model, lam=1e-3)
    redo = pl.ReDo(model, optimizer, tau=0.1, every=1000)
    mon = pl.Monitor(model, tau=0.025)
"""

from __future__ import annotations

import importlib
from typing import Any

from plasticity.base import Intervention, call_module

# public name -> submodule that defines it
_EXPORTS = {
    "SoftWeightRescaling": "swr",
    "SWR": "swr",
    "AdaLin": "adalin",
    "CReLU": "crelu",
    "L2": "l2",
    "L2Init": "l2",
    "WeightClipping": "weight_clipping",
    "PlasticityInjection": "injection",
    "Reset": "reset",
    "ShrinkPerturb": "shrink_perturb",
    "ReDo": "redo",
    "ContinualBackprop": "cbp",
    "Monitor": "monitor",
    "Structure": "structure",
}
_SUBMODULES = {
    "adalin", "base", "cbp", "crelu", "injection", "l2", "layers", "metrics", "monitor", "reinit",
    "redo", "registry", "reset", "shrink_perturb", "structure", "swr", "weight_clipping",
}

__all__ = ["Intervention", "call_module", *_EXPORTS, *sorted(_SUBMODULES)]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"plasticity.{_EXPORTS[name]}")
        return getattr(module, name)
    if name in _SUBMODULES:
        return importlib.import_module(f"plasticity.{name}")
    raise AttributeError(f"module 'plasticity' has no attribute {name!r}")
