"""Command-line parsing: a preset chosen by `--preset`, then every option as an override.

    python train.py --preset atari-cycle --env.games Pong Breakout --dqn.lr 6.25e-5
    python train.py --replay prioritized            # shorthand for --replay.kind prioritized
    python train.py --plasticity-help               # every intervention and its parameters
    python train.py --resume runs/<run-name>        # the saved configuration is used as is
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import time
from pathlib import Path
from typing import Any

import tyro

from plasticity import registry
from runner.checkpoint import load_checkpoint
from runner.config import TrainConfig
from runner.presets import preset, preset_help


def _take(argv: list[str], flag: str) -> tuple[str | None, list[str]]:
    """Remove `flag VALUE` (or `flag=VALUE`) from argv; return VALUE and the rest."""
    out, value, i = [], None, 0
    while i < len(argv):
        arg = argv[i]
        if arg == flag:
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise ValueError(f"{flag} needs a value")
            value = argv[i + 1]
            i += 2
            continue
        if arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
        else:
            out.append(arg)
        i += 1
    return value, out


def _shorthands(argv: list[str]) -> list[str]:
    """`--replay KIND` is short for `--replay.kind KIND`."""
    out = []
    for i, arg in enumerate(argv):
        if arg == "--replay" and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            out.append("--replay.kind")
        else:
            out.append(arg)
    return out


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a (nested) config dataclass from `dataclasses.asdict` output."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        nested = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        if isinstance(value, dict) and nested is not None and dataclasses.is_dataclass(nested):
            value = from_dict(nested, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def default_run_dir(cfg: TrainConfig) -> str:
    name = cfg.run_name or f"{cfg.preset}__{cfg.agent}__s{cfg.seed}__{time.strftime('%Y%m%d-%H%M%S')}"
    return str(Path("runs") / name)


def _tyro_cli(argv: list[str], base: TrainConfig, description: str) -> TrainConfig:
    """tyro's parser; its boxed error message is reduced to one line (a ValueError)."""
    if "-h" in argv or "--help" in argv:
        return tyro.cli(TrainConfig, args=argv, default=base, description=description)
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stderr(buffer), contextlib.redirect_stdout(buffer):
            return tyro.cli(TrainConfig, args=argv, default=base, description=description)
    except SystemExit:
        lines = [ln.strip(" │╭╮╰╯─-|+") for ln in buffer.getvalue().splitlines()]
        lines = [ln for ln in lines if ln and not ln.startswith(("For full helptext", "Argument helptext"))]
        # a boxed title ("Invalid choice", "Value error") and then the message
        detail = lines[1] if len(lines) > 1 else (lines[0] if lines else "could not parse the arguments")
        raise ValueError(f"{detail} (see python train.py --help)") from None


def parse_args(argv: list[str]) -> tuple[TrainConfig, dict | None]:
    """The resolved configuration, and the checkpoint to resume from (or None)."""
    if "--plasticity-help" in argv:
        print(registry.help_text())
        raise SystemExit(0)
    resume, argv = _take(list(argv), "--resume")
    if resume is not None:
        state = load_checkpoint(resume, device="cpu")
        cfg = from_dict(TrainConfig, state["config"])
        cfg = dataclasses.replace(cfg, resume=resume, run_dir=resume)
        if "--no-progress" in argv:
            cfg = dataclasses.replace(cfg, progress=False)
        return cfg, state
    name, argv = _take(argv, "--preset")
    base = preset(name or "quickstart")
    description = TrainConfig.__doc__ + "\n\n" + preset_help() + "\n\nInterventions: see --plasticity-help."
    cfg = _tyro_cli(_shorthands(argv), base, description)
    cfg = dataclasses.replace(cfg, preset=base.preset)
    if cfg.run_dir is None:
        cfg = dataclasses.replace(cfg, run_dir=default_run_dir(cfg))
    if Path(cfg.run_dir).exists() and any(Path(cfg.run_dir).iterdir()):
        raise ValueError(f"--run-dir {cfg.run_dir} already holds a run; continue it with --resume {cfg.run_dir} "
                         "or choose another directory")
    return cfg, None
