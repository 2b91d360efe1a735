"""examples/custom_agent.py: the interventions and the monitor in a user's own loop."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_agent.py"


def test_example_imports_only_torch_plasticity_and_stdlib():
    tree = ast.parse(EXAMPLE.read_text())
    roots = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    roots |= {node.module.split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.module}
    third_party = {r for r in roots if r not in sys.stdlib_module_names}
    assert third_party == {"torch", "plasticity"}


def test_example_runs_learns_each_task_and_prints_metrics():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # from a directory outside the checkout: the example must find `plasticity` by itself
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--steps", "300", "--task-every", "100",
         "--redo-every", "50", "--log-every", "100"],
        capture_output=True, text=True, timeout=300, env=env, cwd=EXAMPLE.parents[2],
    )
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr

    tasks = re.findall(r"^task (\d+): loss ([\d.]+) -> ([\d.]+)$", proc.stdout, re.M)
    assert [int(t) for t, _, _ in tasks] == [0, 1, 2], proc.stdout
    for _, first, last in tasks:   # every new task is learnt: plasticity is still there
        assert float(last) < 0.5 * float(first), proc.stdout

    metrics = re.findall(r"^step +(\d+) .*dormant_ratio ([\d.]+) .*effective_rank ([\d.]+)"
                         r" .*recycled (\d+)$", proc.stdout, re.M)
    assert [int(m[0]) for m in metrics] == [100, 200, 300], proc.stdout
    for _, dormant, erank, recycled in metrics:
        assert 0.0 <= float(dormant) <= 1.0
        assert 1.0 <= float(erank) <= 64.0
    assert [int(m[3]) for m in metrics] == sorted(int(m[3]) for m in metrics)  # a running total
