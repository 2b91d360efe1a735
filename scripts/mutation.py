"""Mutation testing of one core module against the fast tests that exercise it.

    python scripts/mutation.py agents/dqn.py            # or: make mutation MODULE=agents/dqn.py
    python scripts/mutation.py agents/dqn.py --max-children 2

mutmut (its base settings are `[tool.mutmut]` in pyproject.toml) mutates every function of
MODULE one change at a time and runs, for each mutant, the tests of `TESTS[MODULE]` that
reach the mutated function; a mutant that no test fails "survived". The run happens in a
scratch copy of the project (`$MUTATION_DIR`, default `/tmp/plasticity-rl-mutation/<module>`),
so the working tree is never touched, and a second run of the same module reuses mutmut's
cache there: it keeps the verdicts of mutants whose function did not change, even when tests
were added. Every test there starts with the project's `functools` caches cleared
(`scripts/mutation_fresh_caches.py`), so that code run only to build a cached table is
mutated in every test that uses it. `--fresh` starts over; `--survivors` re-tests only the
mutants the previous run did not kill (time-outs included; a test added cannot revive a killed
mutant). Prints the counts
(killed / survived / timed out / no tests) and the survivors' names; `mutmut show NAME`
inside the scratch copy shows a mutant's diff.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# module -> the fast test files that exercise it (only these run against its mutants)
TESTS: dict[str, list[str]] = {
    "train.py": ["tests/test_loop.py", "tests/test_wiring_resume.py", "tests/test_wiring_loop.py", "tests/test_resume.py",
                 "tests/test_train_main.py"],
    "agents/dqn.py": ["tests/test_dqn.py", "tests/test_wiring_dqn.py", "tests/test_agent_checkpoint.py",
                      "tests/test_wiring_build.py", "tests/test_wiring_config.py"],
    "agents/sac.py": ["tests/test_sac.py", "tests/test_wiring_sac.py", "tests/test_wiring_build.py", "tests/test_wiring_config.py"],
    "replay/prioritized.py": ["tests/test_wiring_replay.py", "tests/test_replay.py", "tests/test_replay_checkpoint.py",
                              "tests/test_replay_parts.py"],
    "envs/schedule.py": ["tests/test_schedule.py", "tests/test_wiring_schedule.py"],
    "runner/evaluator.py": ["tests/test_wiring_evaluator.py", "tests/test_wiring_loop.py", "tests/test_eval_envs.py",
                            "tests/test_resume.py::"
                            "test_killed_and_resumed_run_evaluates_on_the_seeds_of_an_uninterrupted_run"],
    "envs/eval_envs.py": ["tests/test_eval_envs.py", "tests/test_wiring_evaluator.py"],
    "envs/task_envs.py": ["tests/test_envs.py", "tests/test_schedule.py", "tests/test_wiring_schedule.py",
                          "tests/test_eval_envs.py", "tests/test_shifts.py", "tests/test_minatar_vector.py",
                          *(f"tests/test_minatar_train.py::{t}" for t in (
                              "test_sticky_actions_and_the_time_cap_reach_the_minatar_envs_from_the_command_line",
                              "test_no_difficulty_ramping_reaches_every_minatar_env_from_the_command_line",
                              "test_env_compile_compiles_the_training_games_only"))],
    "runner/scores.py": ["tests/test_scores.py", "tests/test_wiring_loop.py"],
    "runner/results.py": ["tests/test_results.py", "tests/test_loop.py", "tests/test_wiring_loop.py", "tests/test_resume.py",
                          "tests/test_train_main.py"],
    "runner/checkpoint.py": ["tests/test_checkpoint.py", "tests/test_replay_checkpoint.py"],
    "envs/shifts.py": ["tests/test_shift_parts.py", "tests/test_shifts.py"],
    "envs/minatar/base.py": ["tests/test_minatar_base.py", "tests/test_minatar_step_draws.py", "tests/test_minatar_host_reads.py",
                             "tests/test_minatar_vector.py", "tests/test_minatar_gym_env.py",
                             *(f"tests/test_minatar_{g}.py" for g in ("breakout", "asterix", "freeway",
                                                                      "seaquest", "space_invaders"))],
    # each game: its own tests, the tests of every game's layout and resets, and its accelerator
    # path (no host reads, the CPU path's states)
    **{f"envs/minatar/{g}.py": [f"tests/test_minatar_{g}.py",
                                "tests/test_minatar_base.py::test_state_layout_holds_through_steps_ends_and_resets",
                                "tests/test_minatar_base.py::test_a_reset_env_keeps_nothing_of_its_episode",
                                "tests/test_minatar_host_reads.py::"
                                "test_steps_and_resets_read_nothing_on_the_host_and_equal_the_cpu_path"]
       for g in ("asterix", "freeway", "breakout", "seaquest", "space_invaders")},
    "envs/minatar/seaquest_rules.py": ["tests/test_minatar_seaquest.py"],
    # the draws: the sources' own tests, the step-draw tests, and every game's lockstep against the
    # reference's recorded draws
    "envs/minatar/randomness.py": ["tests/test_minatar_randomness.py", "tests/test_minatar_step_draws.py",
                                   "tests/test_minatar_base.py",
                                   *(f"tests/test_minatar_{g}.py" for g in ("breakout", "asterix", "freeway",
                                                                            "seaquest", "space_invaders"))],
    "envs/minatar/slots.py": ["tests/test_minatar_slots.py", "tests/test_minatar_seaquest.py"],
    "envs/minatar/vector.py": ["tests/test_minatar_vector.py", "tests/test_minatar_gym_env.py",
                               "tests/test_minatar_host_reads.py", "tests/test_minatar_train.py"],
    "agents/base.py": ["tests/test_agent_base.py", "tests/test_agent_checkpoint.py", "tests/test_wiring_dqn.py"],
    **{f"replay/{m}.py": ["tests/test_replay.py", "tests/test_replay_checkpoint.py", "tests/test_wiring_replay.py",
                          "tests/test_sum_tree.py", "tests/test_replay_parts.py"]
       for m in ("storage", "buffer", "uniform", "sampler", "sum_tree", "n_step", "host_add")},
    "runner/monitoring.py": ["tests/test_monitoring.py", "tests/test_wiring_loop.py"],
    "agents/registry.py": ["tests/test_agent_registry.py", "tests/test_wiring_config.py"],
    "agents/networks.py": ["tests/test_networks.py", "tests/test_wiring_build.py"],
    "agents/compile/optimizer_step.py": ["tests/test_optimizer_step.py", "tests/test_compile_fallback.py"],
    "agents/compile/internals.py": ["tests/test_compile_fallback.py", "tests/test_optimizer_step.py"],
    "agents/compile/gradients.py": ["tests/test_loss_gradients.py", "tests/test_compile_fallback.py",
                                    "tests/test_compiled_grad.py", "tests/test_wiring_dqn.py",
                                    "tests/test_wiring_sac.py", "tests/test_sac.py"],
    "agents/compile/forms.py": ["tests/test_compiled_grad.py", "tests/test_networks.py"],
    "agents/compile/inductor_passes.py": ["tests/test_inductor_passes.py", "tests/test_compiled_grad.py"],
    "agents/compile/compiled_grad.py": ["tests/test_compiled_grad_walk.py", "tests/test_compiled_grad.py",
                                        "tests/test_compile_fallback.py"],
    # plasticity/: each module against its own test file (and the traced-structure tests for
    # the interventions that read the forward pass)
    "plasticity/swr.py": ["tests/test_swr.py", "tests/test_structure.py"],
    "plasticity/redo.py": ["tests/test_redo.py", "tests/test_structure.py"],
    "plasticity/cbp.py": ["tests/test_cbp.py", "tests/test_structure.py"],
    "plasticity/reset.py": ["tests/test_reset.py", "tests/test_structure.py"],
    "plasticity/shrink_perturb.py": ["tests/test_shrink_perturb.py"],
    "plasticity/l2.py": ["tests/test_l2.py"],
    "plasticity/injection.py": ["tests/test_injection.py"],
    "plasticity/adalin.py": ["tests/test_adalin.py"],
    "plasticity/weight_clipping.py": ["tests/test_weight_clipping.py"],
    "plasticity/crelu.py": ["tests/test_crelu.py"],
    "plasticity/layers.py": ["tests/test_layers.py", "tests/test_layers_refusals.py", "tests/test_structure.py", "tests/test_redo.py", "tests/test_cbp.py"],
    "plasticity/reinit.py": ["tests/test_layers.py", "tests/test_redo.py", "tests/test_cbp.py", "tests/test_reset.py", "tests/test_shrink_perturb.py"],
    "plasticity/structure.py": ["tests/test_structure.py", "tests/test_structure_reading.py", "tests/test_structure_walks.py"],
    "plasticity/metrics.py": ["tests/test_metrics.py"],
    "plasticity/monitor.py": ["tests/test_monitor.py", "tests/test_monitor_options.py"],
    "plasticity/registry.py": ["tests/test_registry.py", "tests/test_weight_clipping.py", "tests/test_l2.py"],
    "plasticity/base.py": ["tests/test_base.py", "tests/test_l2.py", "tests/test_weight_clipping.py", "tests/test_swr.py"],
}


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "[" + ", ".join(_toml_value(x) for x in v) + "]"


def scratch_copy(module: str, dest: Path) -> None:
    """Copy the project's files (tracked and new, not ignored) into `dest`, replacing old copies."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src, dst = ROOT / rel, dest / rel
        if not src.is_file():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists() or dst.read_bytes() != src.read_bytes():
            shutil.copy2(src, dst)


def write_config(module: str, dest: Path) -> None:
    """pyproject.toml of the copy: the project's `[tool.mutmut]` narrowed to MODULE and its tests."""
    text = (ROOT / "pyproject.toml").read_text()
    head, sep, _ = text.partition("[tool.mutmut]")
    assert sep, "pyproject.toml has no [tool.mutmut] table"
    assert "\n[" not in _.strip("\n"), "[tool.mutmut] must be the last table of pyproject.toml"
    cfg = dict(tomllib.loads(text)["tool"]["mutmut"])
    cfg["only_mutate"] = [module]
    # every test rebuilds cached tables, so that the functions building them run under each mutant
    cfg["pytest_add_cli_args"] = [*cfg.get("pytest_add_cli_args", []), "-p", "scripts.mutation_fresh_caches"]
    cfg["also_copy"] = [*cfg.get("also_copy", []), "scripts"]
    # test files not written yet (or moved) are left out rather than failing the collection
    cfg["pytest_add_cli_args_test_selection"] = [t for t in TESTS[module] if (ROOT / t.split("::")[0]).exists()]
    body = "".join(f"{k} = {_toml_value(v)}\n" for k, v in cfg.items())
    new = head + "[tool.mutmut]\n" + body
    path = dest / "pyproject.toml"
    if not path.exists() or path.read_text() != new:
        path.write_text(new)


def counts(dest: Path) -> dict[str, list[str]]:
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=dest,
                         capture_output=True, text=True).stdout
    by_status: dict[str, list[str]] = {}
    for line in out.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            by_status.setdefault(status.strip(), []).append(name)
    return by_status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("module", choices=sorted(TESTS), help="the module to mutate")
    parser.add_argument("--max-children", type=int, default=1, help="mutants tested at once (default 1)")
    parser.add_argument("--fresh", action="store_true", help="forget the previous results of this module")
    parser.add_argument("--survivors", action="store_true",
                        help="re-test only the mutants the previous run did not kill (time-outs included: a "
                             "slow test can time out a mutant it would kill); a test added to the selection "
                             "cannot revive a killed mutant")
    args = parser.parse_args()
    if args.fresh and args.survivors:
        parser.error("--fresh and --survivors exclude each other")
    base = Path(os.environ.get("MUTATION_DIR", "/tmp/plasticity-rl-mutation"))
    dest = base / args.module.replace("/", "_").removesuffix(".py")
    if args.fresh and dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True, exist_ok=True)
    scratch_copy(args.module, dest)
    write_config(args.module, dest)
    names: list[str] = []
    if args.survivors:
        names = [n for status, ns in counts(dest).items() if status != "killed" for n in ns]
        if not names:
            print(f"{args.module}: no previous run in {dest}, or nothing survived it", file=sys.stderr)
            return 2
    t0 = time.perf_counter()
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    mutmut = [sys.executable, "-c", "import sys; from mutmut.__main__ import cli; sys.exit(cli())"]
    rc = subprocess.run(mutmut + ["run", "--max-children", str(args.max_children), *names], cwd=dest, env=env).returncode
    elapsed = time.perf_counter() - t0
    by_status = counts(dest)
    total = sum(len(v) for v in by_status.values())
    killed = len(by_status.get("killed", []))
    print(f"\n{args.module}: {total} mutants"
          + (f" ({len(names)} previous survivors re-tested)" if names else "")
          + f" in {elapsed:.0f} s (mutmut exit {rc}); "
          + ", ".join(f"{k} {len(v)}" for k, v in sorted(by_status.items()))
          + (f"; killed {100 * killed / total:.1f} %" if total else ""))
    for status, names in sorted(by_status.items()):
        if status != "killed":
            for n in names:
                print(f"  {status}: {n}")
    print(f"scratch copy: {dest} (mutmut show NAME there)")
    return 0 if rc == 0 else rc


if __name__ == "__main__":
    raise SystemExit(main())
