"""Ray as the sweep's launcher: each attempt of a run is one Ray task that starts
`python train.py …` as its own process. Ray is the optional `[sweep]` extra; without it the
sweep stops with one line saying how to install it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _run_train_process(argv: list[str], log: str, pid_file: str, root: str, cwd: str) -> int:
    """Body of the Ray task: `python ROOT/train.py ARGV` in `cwd` (the sweep's working directory,
    else `root`), output appended to `log`; the child
    gets SIGTERM (it checkpoints) if this worker dies. Uses only the standard library, so Ray
    ships it by value and a cluster worker needs no copy of this module."""
    import ctypes
    import os
    import signal
    import socket
    import subprocess
    import sys

    def die_with_parent() -> None:
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:  # not Linux: the child may outlive a killed worker
            pass

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "a") as out:
        proc = subprocess.Popen([sys.executable, os.path.join(root, "train.py"), *argv], env=env,
                                cwd=cwd if os.path.isdir(cwd) else root,
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                preexec_fn=die_with_parent if sys.platform.startswith("linux") else None)
        with open(pid_file, "w") as f:
            f.write(f"{proc.pid} {socket.gethostname()} {os.getpid()}\n")  # the run, its host, the Ray worker
        return proc.wait()


class RayLauncher:
    """Each attempt is one Ray task (`num_cpus`, `num_gpus` reserved) that runs the process."""

    def __init__(self, ray: Any, cpus: float, gpus: float):
        self.ray = ray
        self.task = ray.remote(_run_train_process).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)

    def submit(self, argv: list[str], log: Path, pid_file: Path) -> Any:
        return self.task.remote(argv, str(log.resolve()), str(pid_file.resolve()), str(ROOT), os.getcwd())

    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, int | None]]:
        ready, _ = self.ray.wait(handles, num_returns=len(handles), timeout=timeout)
        out = []
        for ref in ready:
            try:
                out.append((ref, int(self.ray.get(ref))))
            except self.ray.exceptions.RayError:  # the worker died (or was lost with its node)
                out.append((ref, None))
        return out


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ValueError("the sweep runs on Ray, which is not installed: pip install 'plasticity-rl[sweep]' "
                         "(or pip install ray)") from None
    return ray


def start_local_ray(ray: Any) -> None:
    """Start a local Ray instance whose workers, and so the runs, keep this process's niceness.
    Ray makes its workers nicer by 15 otherwise (`RAY_worker_niceness` is an increment over the
    niceness its processes inherit from this one), so any other job on the machine would take
    the CPU from the runs; a `RAY_worker_niceness` already set in the environment wins."""
    os.environ.setdefault("RAY_worker_niceness", "0")
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
