"""The runs of a sweep: the product of `--grid` axes and seeds, each a `Run` with its state.

`--grid NAME=V1,V2,…` sets `--NAME V` for every value; `none` leaves the option out (the
baseline); a value's own commas stay with it when they continue an intervention's parameters
(`redo:tau=0.1,every=1000`), and spaces split a value into several arguments. Seeds are
innermost: `expand` gives every grid point's runs for `--seeds 0-2` one after another.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: a grid value that leaves its option out
OFF = "none"
#: options the sweep sets itself for every run
RESERVED = ("--run-dir", "--run-name", "--seed", "--resume")


def parse_seeds(spec: str) -> list[int]:
    """`0-2` → [0, 1, 2]; `0,3,5`; `0-2,7`."""
    seeds: list[int] = []
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise ValueError(f"--seeds {spec!r}: expected seeds like 0-2, 0,3,5 or 0-2,7")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        seeds.extend(s for s in range(lo, hi + 1) if s not in seeds)
    return seeds


def split_values(text: str) -> list[str]:
    """Split a grid axis on commas, keeping an intervention's `key=value` parameters together:
    `none,swr,redo:tau=0.1,every=1000` → ["none", "swr", "redo:tau=0.1,every=1000"]."""
    values: list[str] = []
    for piece in text.split(","):
        continues = values and ":" in values[-1].split()[-1] and "=" in piece and ":" not in piece and " " not in piece
        if continues:
            values[-1] += "," + piece
        else:
            values.append(piece.strip())
    if not values or any(not v for v in values):
        raise ValueError(f"--grid ...={text!r}: empty value; write values as V1,V2,...")
    return values


def parse_grid(specs: list[str]) -> list[tuple[str, list[str]]]:
    """`["plasticity=none,swr"]` → [("plasticity", ["none", "swr"])], axes in the order given."""
    axes: list[tuple[str, list[str]]] = []
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip().removeprefix("--")
        if not sep or not name or not values:
            raise ValueError(f"--grid {spec!r}: expected NAME=V1,V2,... (e.g. plasticity=none,swr,redo)")
        if "--" + name in RESERVED:
            raise ValueError(f"--grid {name}: the sweep sets --{name} itself" +
                             ("; use --seeds" if name == "seed" else ""))
        if any(name == n for n, _ in axes):
            raise ValueError(f"--grid {name} is given twice; give all its values in one --grid")
        axes.append((name, split_values(values)))
    return axes


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=+-]+", "_", text).strip("_") or "_"


@dataclass
class Run:
    """One run of a sweep and its state."""

    name: str
    argv: list[str]  # train.py options, without --seed / --run-dir
    seed: int
    options: dict[str, str] = field(default_factory=dict)  # the grid point
    state: str = "queued"  # queued | running | finished | failed
    attempts: int = 0
    returncode: int | None = None
    error: str | None = None
    seconds: float = 0.0


def expand(axes: list[tuple[str, list[str]]], seeds: list[int], passthrough: list[str]) -> list[Run]:
    """The runs: every combination of the axes' values, for every seed (seed innermost)."""
    points: list[dict[str, str]] = [{}]
    for name, values in axes:
        points = [{**p, name: v} for p in points for v in values]
    runs, names = [], set()
    for point in points:
        grid_argv: list[str] = []
        for name, value in point.items():
            if value != OFF:
                grid_argv += ["--" + name, *value.split()]
        label = "__".join(f"{n}={_safe(v)}" for n, v in point.items())
        for seed in seeds:
            name = f"{label}__seed={seed}" if label else f"seed={seed}"
            base, i = name, 1
            while name in names:  # two values that read the same once made safe for a path
                i += 1
                name = f"{base}_{i}"
            names.add(name)
            runs.append(Run(name=name, argv=[*passthrough, *grid_argv], seed=seed, options=dict(point)))
    return runs
