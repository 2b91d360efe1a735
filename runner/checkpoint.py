"""Atomic checkpoints: everything a run needs to continue where it stopped.

A checkpoint holds the networks, optimizers and interventions (through the agent's
`state_dict`), the replay buffer, the schedule's position, every RNG state and the step
counters. It is written to a temporary file in the run directory and renamed over
`checkpoint.pt`, so a crash or a failed write (full disk, read-only directory) never leaves a
truncated checkpoint behind and never replaces the previous one. The replay's part holds only
what is stored, so the file grows with the data, not with the replay capacity.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT = "checkpoint.pt"


def rng_states() -> dict[str, Any]:
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the previous one (if any) is unchanged."""


def save_checkpoint(run_dir: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write `state` to run_dir/checkpoint.pt atomically (temporary file, fsync, rename).

    When anything fails before the rename (a read-only directory, a full disk, ...), the
    temporary file is removed, the previous `checkpoint.pt` is left as it was and
    `CheckpointWriteError` is raised with one line naming the file and the cause.
    """
    run_dir = Path(run_dir)
    final = run_dir / CHECKPOINT
    tmp = run_dir / f".{CHECKPOINT}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        _fsync_dir(run_dir)
    except (OSError, RuntimeError) as err:  # torch.save reports a failed write as RuntimeError
        cause = err.strerror if isinstance(err, OSError) and err.strerror else str(err).splitlines()[0]
        kept = "the previous checkpoint is unchanged" if final.exists() else "no checkpoint was written"
        raise CheckpointWriteError(f"could not write the checkpoint {final}: {cause}; {kept}") from err
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
    return final


def _fsync_dir(path: Path) -> None:
    """Make the rename itself durable (where a directory can be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(run_dir: str | os.PathLike, device: torch.device | str = "cpu") -> dict[str, Any]:
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise ValueError(f"--resume {run_dir}: no {CHECKPOINT} there (is it a run directory?)")
    return torch.load(path, map_location=device, weights_only=False)
