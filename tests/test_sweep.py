"""`train.py sweep`: the grid expansion, the state file and the retry rules against a fake
launcher (no Ray), then real sweeps of tiny classic-control runs through one local Ray instance:
4 finished runs, a re-launch that skips them, a run with bad input reported failed while the
other finishes, and a run SIGKILLed mid-run that is resumed from its checkpoint and completes."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import train
from studies import ray_launcher, sweep, sweep_state
from studies.grid import Run, expand, parse_grid, parse_seeds, split_values
from studies.scheduler import Scheduler
from studies.sweep_state import SweepFile, after_exit

TINY = ["--env.tasks", "gym:CartPole-v1", "gym:Acrobot-v1", "--env.steps-per-visit", "100", "--env.cycles", "2",
        "--dqn.learning-starts", "50", "--dqn.batch-size", "16", "--dqn.hidden", "16", "--monitor.every", "25",
        "--monitor.batch-size", "16", "--eval.episodes", "2", "--eval.random-episodes", "2",
        "--eval.max-steps", "30", "--log-every", "25", "--threads", "1"]


# --- expansion and options (no Ray) ---------------------------------------------------------------


def test_seeds_and_grid_values_parse():
    assert parse_seeds("0-2") == [0, 1, 2]
    assert parse_seeds("0,3,5") == [0, 3, 5] and parse_seeds("0-2,7,1") == [0, 1, 2, 7]
    for bad in ("2-0", "a", "1,,2", "-1"):
        with pytest.raises(ValueError, match="--seeds"):
            parse_seeds(bad)
    assert split_values("none,swr,redo") == ["none", "swr", "redo"]
    assert split_values("none,redo:tau=0.1,every=1000,swr:lam=1e-3") == ["none", "redo:tau=0.1,every=1000",
                                                                          "swr:lam=1e-3"]
    assert split_values("1e-3,3e-4") == ["1e-3", "3e-4"]
    assert parse_grid(["--dqn.lr=1e-3,3e-4", "plasticity=none,adalin swr"]) == [
        ("dqn.lr", ["1e-3", "3e-4"]), ("plasticity", ["none", "adalin swr"])]
    for bad, message in [("plasticity", "NAME=V1"), ("seed=1,2", "use --seeds"), ("run-dir=a,b", "sets --run-dir")]:
        with pytest.raises(ValueError, match=message):
            parse_grid([bad])
    with pytest.raises(ValueError, match="given twice"):
        parse_grid(["dqn.lr=1", "dqn.lr=2"])


def test_expand_is_the_product_of_axes_and_seeds_and_none_leaves_the_option_out():
    runs = expand(parse_grid(["plasticity=none,swr:lam=1e-3,adalin swr", "dqn.lr=1e-3,3e-4"]), [0, 1],
                  ["--preset", "classic-cycle", "--env.steps-per-visit", "500"])
    assert len(runs) == 3 * 2 * 2 and len({r.name for r in runs}) == 12
    by_name = {r.name: r for r in runs}
    base = by_name["plasticity=none__dqn.lr=1e-3__seed=1"]
    assert base.argv == ["--preset", "classic-cycle", "--env.steps-per-visit", "500", "--dqn.lr", "1e-3"]
    assert base.seed == 1 and base.options == {"plasticity": "none", "dqn.lr": "1e-3"}
    swr = by_name["plasticity=swr_lam=1e-3__dqn.lr=3e-4__seed=0"]
    assert swr.argv[-4:] == ["--plasticity", "swr:lam=1e-3", "--dqn.lr", "3e-4"]
    two = by_name["plasticity=adalin_swr__dqn.lr=3e-4__seed=0"]
    assert two.argv[-5:] == ["--plasticity", "adalin", "swr", "--dqn.lr", "3e-4"]
    assert [r.name for r in expand([], [0, 4], [])] == ["seed=0", "seed=4"]


def test_sweep_options_are_taken_out_and_the_rest_passed_through():
    opts, rest = sweep.parse_sweep_args(["--out", "d", "--preset", "x", "--grid", "a=1,2", "--seeds=0-1",
                                         "--env.tasks", "gym:A", "gym:B", "--max-concurrent", "3", "--grid=b=3",
                                         "--cpus-per-run", "0.5", "--retries", "1"])
    assert rest == ["--preset", "x", "--env.tasks", "gym:A", "gym:B"]
    assert (opts.out, opts.seeds, opts.grid, opts.max_concurrent, opts.cpus_per_run, opts.retries) == (
        Path("d"), [0, 1], ["a=1,2", "b=3"], 3, 0.5, 1)
    for argv, message in [(["--grid", "a=1"], "--out DIR is required"), (["--out", "d", "--seed", "3"], "use --seeds"),
                          (["--out", "d", "--run-dir", "x"], "sets it"), (["--out", "d", "--retries", "-1"], "--retries"),
                          (["--out", "d", "--max-concurrent", "0"], "--max-concurrent")]:
        with pytest.raises(ValueError, match=message):
            sweep.parse_sweep_args(argv)


def test_missing_ray_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)
    assert train.main(["sweep", "--out", str(tmp_path / "s"), "--grid", "plasticity=none,swr"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'plasticity-rl[sweep]'" in err[0]
    assert not (tmp_path / "s").exists()


def test_retry_rules():
    run = Run("r", [], 0, attempts=1)
    assert after_exit(run, 0, 2, True, None) == "finished"
    assert after_exit(run, 2, 2, False, "error: bad") == "failed" and "bad input" in run.error
    assert after_exit(run, 3, 2, False, "error: nan") == "failed" and "NaN" in run.error
    assert after_exit(run, -9, 2, False, None) == "queued" and "signal 9" in run.error
    assert after_exit(run, None, 2, False, None) == "queued" and "Ray worker died" in run.error
    run.attempts = 3
    assert after_exit(run, 1, 2, False, "Traceback") == "failed" and run.error == "exit 1: Traceback"


class FakeLauncher:
    """Ends each attempt with the next scripted code of its run; code 0 writes a finished
    results.json, a death after the first attempt leaves a checkpoint behind."""

    def __init__(self, sweep_dir: Path, script: dict[str, list[int]]):
        self.dir, self.script, self.argvs = sweep_dir, script, {}
        self.running: list[tuple[int, str]] = []
        self.most_at_once = 0

    def submit(self, argv, log, pid_file):
        name = log.stem
        self.argvs.setdefault(name, []).append(argv)
        handle = (len(self.argvs[name]), name)
        self.running.append(handle)
        self.most_at_once = max(self.most_at_once, len(self.running))
        return handle

    def wait(self, handles, timeout):
        handle = handles[0]
        self.running.remove(handle)
        name = handle[1]
        code = self.script[name].pop(0)
        run_dir = self.dir / name
        run_dir.mkdir(exist_ok=True)
        (run_dir / "checkpoint.pt").write_text("x")
        if code == 0:
            (run_dir / "results.json").write_text(json.dumps({"finished": True}))
        return [(handle, code)]


def test_scheduler_resumes_dead_runs_until_the_limit_and_the_others_go_on(tmp_path):
    runs = expand(parse_grid(["plasticity=none,swr"]), [0, 1], ["--preset", "p"])
    names = [r.name for r in runs]
    script = {names[0]: [0], names[1]: [-9, 0], names[2]: [1, -9, None], names[3]: [2]}
    fake = FakeLauncher(tmp_path, {k: list(v) for k, v in script.items()})
    lines: list[str] = []
    Scheduler(runs, tmp_path, fake, max_concurrent=2, retries=2, say=lines.append, settle=0).run()
    states = {r.name: (r.state, r.attempts) for r in runs}
    assert states == {names[0]: ("finished", 1), names[1]: ("finished", 2), names[2]: ("failed", 3),
                      names[3]: ("failed", 1)}
    assert fake.most_at_once == 2
    # a first attempt starts afresh with the run's options, seed and directory; a retry resumes
    first = fake.argvs[names[1]][0]
    assert first[:2] == ["--preset", "p"] and first[first.index("--seed") + 1] == "1"
    assert first[first.index("--run-dir") + 1] == str(tmp_path / names[1])
    assert fake.argvs[names[1]][1] == ["--resume", str(tmp_path / names[1]), "--no-progress"]
    stored = json.loads((tmp_path / "sweep.json").read_text())
    assert stored["counts"] == {"finished": 2, "running": 0, "failed": 2, "queued": 0}
    assert [r["state"] for r in stored["runs"]] == ["finished", "finished", "failed", "failed"]
    assert "Ray worker died" in stored["runs"][2]["error"]
    assert lines[-1].startswith("sweep: 2/4 done, 0 running, 2 failed, 0 queued")
    assert any("attempt 2 of 3 follows" in ln for ln in lines)
    # a re-launch: finished runs stay finished, the others are queued again with fresh attempts
    again = sweep_state.merge(SweepFile(tmp_path).load(), expand(parse_grid(["plasticity=none,swr"]), [0, 1],
                                                          ["--preset", "p"]), tmp_path)
    assert [(r.state, r.attempts) for r in again] == [("finished", 0), ("finished", 0), ("queued", 0), ("queued", 0)]
    with pytest.raises(ValueError, match="exists with other options"):
        sweep_state.merge(SweepFile(tmp_path).load(), expand(parse_grid(["plasticity=none,swr"]), [0], ["--preset", "q"]),
                    tmp_path)


def test_progress_line_counts_and_eta():
    runs = [Run(str(i), [], 0, state=s) for i, s in enumerate(["finished", "finished", "running", "queued", "failed"])]
    line = sweep_state.progress_line(runs, 75, [40.0, 60.0], concurrency=2)
    # mean 50 s per run, 2 runs left, 2 at once: 50 s
    assert line == "sweep: 2/5 done, 1 running, 1 failed, 1 queued; elapsed 0:01:15, ETA 0:00:50"


# --- real sweeps on a local Ray instance -------------------------------------------------------------


def test_a_local_ray_instance_runs_its_workers_at_the_sweeps_niceness():
    """Ray's own default is niceness 15 for its workers, which starves the runs on a busy machine."""
    ray = pytest.importorskip("ray")
    assert not ray.is_initialized()  # before the module's shared instance
    had = "RAY_worker_niceness" in os.environ
    ray_launcher.start_local_ray(ray)
    try:
        @ray.remote
        def niceness() -> int:
            return os.getpriority(os.PRIO_PROCESS, 0)

        assert ray.get(niceness.remote()) == os.getpriority(os.PRIO_PROCESS, 0) != 15
    finally:
        ray.shutdown()
        if not had:
            os.environ.pop("RAY_worker_niceness", None)



@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    had = "RAY_worker_niceness" in os.environ
    os.environ.setdefault("RAY_worker_niceness", "0")  # as the sweep's own local instance does
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
    if not had:
        os.environ.pop("RAY_worker_niceness", None)


def _results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def test_sweep_of_two_methods_by_two_seeds_finishes_four_runs_and_a_relaunch_skips_them(ray_local, tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", "--out", str(out), "--seeds", "0-1", "--grid", "plasticity=none,swr:lam=1e-2", *TINY]
    assert train.main(argv) == 0
    names = ["plasticity=none__seed=0", "plasticity=none__seed=1", "plasticity=swr_lam=1e-2__seed=0",
             "plasticity=swr_lam=1e-2__seed=1"]
    stored = json.loads((out / "sweep.json").read_text())
    assert [(r["name"], r["state"], r["attempts"]) for r in stored["runs"]] == [(n, "finished", 1) for n in names]
    for name in names:
        results, config = _results(out / name), json.loads((out / name / "config.json").read_text())
        assert results["finished"] and results["step"] == 400 and len(results["matrix"]) == 4
        assert config["seed"] == int(name[-1]) and config["env"]["steps_per_visit"] == 100
        assert config["plasticity"] == ([] if "none" in name else ["swr:lam=1e-2"])
    err = capsys.readouterr().err
    assert "sweep: 4/4 done, 0 running, 0 failed, 0 queued" in err
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "sweep.json"}
    assert train.main(argv) == 0
    assert "4 of 4 runs already finished; skipped" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "sweep.json"} == before


def test_a_run_with_bad_input_fails_while_the_other_finishes(ray_local, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert train.main(["sweep", "--out", str(out), "--grid", "plasticity=none,swr:lam=2", *TINY]) == 1
    stored = {r["name"]: r for r in json.loads((out / "sweep.json").read_text())["runs"]}
    good, bad = stored["plasticity=none__seed=0"], stored["plasticity=swr_lam=2__seed=0"]
    assert good["state"] == "finished" and _results(out / good["name"])["finished"]
    assert bad["state"] == "failed" and bad["attempts"] == 1 and bad["returncode"] == 2  # not retried
    assert "swr: lam must be in (0, 1], got 2" in bad["error"]
    assert "failed: plasticity=swr_lam=2__seed=0 after 1 attempt(s)" in capsys.readouterr().err


def test_killed_runs_and_workers_are_resumed_from_their_checkpoints_and_complete(ray_local, tmp_path, capsys):
    """Two runs at once: SIGKILL the train.py process of one and the Ray worker of the other."""
    out = tmp_path / "sweep"
    args = [*TINY, "--env.steps-per-visit", "1000", "--checkpoint-every", "300"]
    code: list[int] = []
    thread = threading.Thread(target=lambda: code.append(train.main(["sweep", "--out", str(out), "--seeds", "0-1",
                                                                     "--max-concurrent", "2", *args])))
    thread.start()
    killed = {}
    for seed, victim in ((0, 0), (1, 2)):  # field 0: the run's pid, field 2: its Ray worker's
        run_dir, pid_file = out / f"seed={seed}", out / "logs" / f"seed={seed}.pid"
        deadline = time.time() + 120
        while not ((run_dir / "checkpoint.pt").exists() and pid_file.exists()) and time.time() < deadline:
            time.sleep(0.1)
        killed[seed] = torch.load(run_dir / "checkpoint.pt", weights_only=False)["step"]
        os.kill(int(pid_file.read_text().split()[victim]), signal.SIGKILL)
    thread.join(timeout=240)
    assert code == [0]
    err = capsys.readouterr().err
    assert "sweep: seed=0 killed by signal 9" in err and "sweep: seed=1 its Ray worker died" in err
    runs = json.loads((out / "sweep.json").read_text())["runs"]
    assert [(r["state"], r["attempts"], r["returncode"]) for r in runs] == [("finished", 2, 0)] * 2
    for seed in (0, 1):
        run_dir = out / f"seed={seed}"
        log = (out / "logs" / f"seed={seed}.log").read_text()
        assert f"=== attempt 2: python train.py --resume {run_dir}" in log
        assert killed[seed] < 4000 and _results(run_dir)["step"] == 4000
        assert torch.load(run_dir / "checkpoint.pt", weights_only=False)["step"] == 4000
        assert [v["start"] for v in _results(run_dir)["visits"]] == [0, 1000, 2000, 3000]
