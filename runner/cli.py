"""Command-line parsing: a preset chosen by `--preset`, then every option as an override.

    python train.py --preset atari-cycle --env.games Pong Breakout --dqn.lr 6.25e-5
    python train.py --replay prioritized            # shorthand for --replay.kind prioritized
    python train.py --plasticity-help               # every intervention and its parameters
    python train.py --resume runs/<run-name>        # the saved configuration, with the few
    python train.py --resume runs/<run-name> --env.cycles 4   # options that may change on resume

Options of an agent that is not selected (`--sac.lr` on a DQN run) are refused, and so is,
with `--resume`, any option outside `RESUMABLE`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import time
from pathlib import Path
from typing import Any

import tyro

from agents.registry import AGENTS
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


#: options that may change when a run is resumed (config field paths); any other is refused
RESUMABLE = ("env.cycles", "checkpoint_every", "log_every", "progress", "eval.every", "monitor.every",
             "monitor.histogram_every")


def _option_fields(argv: list[str]) -> list[tuple[str, str]]:
    """(option as written, config field path) of every `--option` in argv."""
    out = []
    for arg in argv:
        if not arg.startswith("--"):
            continue
        flag = arg.split("=", 1)[0]
        path = flag[2:].replace("-", "_")
        head, _, last = path.rpartition(".")
        if last.startswith("no_"):  # tyro's negated booleans: --no-progress, --env.no-xyz
            last = last[3:]
        out.append((flag, f"{head}.{last}" if head else last))
    return out


def refuse_other_agents(argv: list[str], agent: str) -> None:
    """`--sac.lr` on a DQN run sets nothing: say so instead of ignoring it."""
    for flag, path in _option_fields(argv):
        section = path.split(".", 1)[0]
        if "." in path and section in AGENTS and section != agent:
            raise ValueError(f"{flag} is an option of --agent {section}, but this run uses --agent {agent}; "
                             f"its options are --{agent}.*")


def _resume_options(argv: list[str], saved: TrainConfig) -> TrainConfig:
    """Apply the options that may change on resume; refuse any other in one line."""
    for flag, path in _option_fields(argv):
        if path not in RESUMABLE:
            allowed = ", ".join("--" + p.replace("_", "-") for p in RESUMABLE)
            raise ValueError(f"{flag} cannot change when resuming a run; options that can: {allowed}")
    if not argv:
        return saved
    cfg = _tyro_cli(argv, saved, TrainConfig.__doc__ or "")
    if cfg.env.cycles < saved.env.cycles:
        raise ValueError(f"--env.cycles {cfg.env.cycles} is fewer than the run's {saved.env.cycles} cycles; "
                         "resume can only extend a schedule")
    return cfg


def parse_args(argv: list[str]) -> tuple[TrainConfig, dict | None]:
    """The resolved configuration, and the checkpoint to resume from (or None)."""
    if "--plasticity-help" in argv:
        print(registry.help_text())
        raise SystemExit(0)
    resume, argv = _take(list(argv), "--resume")
    if resume is not None:
        state = load_checkpoint(resume, device="cpu")
        saved = dataclasses.replace(from_dict(TrainConfig, state["config"]), resume=resume, run_dir=resume)
        return _resume_options(argv, saved), state
    name, argv = _take(argv, "--preset")
    base = preset(name or "quickstart")
    description = TrainConfig.__doc__ + "\n\n" + preset_help() + "\n\nInterventions: see --plasticity-help."
    cfg = _tyro_cli(_shorthands(argv), base, description)
    cfg = dataclasses.replace(cfg, preset=base.preset)
    refuse_other_agents(argv, cfg.agent)
    if cfg.run_dir is None:
        cfg = dataclasses.replace(cfg, run_dir=default_run_dir(cfg))
    if Path(cfg.run_dir).exists() and any(Path(cfg.run_dir).iterdir()):
        raise ValueError(f"--run-dir {cfg.run_dir} already holds a run; continue it with --resume {cfg.run_dir} "
                         "or choose another directory")
    return cfg, None
