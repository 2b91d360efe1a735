"""Train an agent on a non-stationary cycle of tasks: the CLI and the training loop.

    python train.py                                   # the quickstart preset
    python train.py --preset atari-cycle --env.games Pong Breakout --env.steps-per-visit 100000
    python train.py --agent sac --env.tasks gym:Pendulum-v1 --plasticity swr:lam=1e-3
    python train.py --resume runs/<run-name>          # continue a stopped run

Read `train()` top to bottom: it is the whole loop. Its parts are built by
`runner.build.build` (which refuses bad input before anything is written); each part
(schedule, agent, replay, evaluator, monitoring, results) has a `state_dict`, and together
they are the checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from runner.build import RunParts, build
from runner.checkpoint import CheckpointWriteError, restore_rng_states, rng_states, save_checkpoint
from runner.config import TrainConfig
from runner.logger import RunLogger
from runner.results import RunResults
from runner.summary import format_summary
from runner.tb_layout import add_continual_layout


class StopRequest:
    """SIGTERM and Ctrl-C handler: the first signal asks the loop to stop at the end of the
    current step (after the switch, evaluation and logging of that step, so the checkpoint it
    writes is consistent); a second one stops at once, without a checkpoint."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum, frame) -> None:
        if self.requested:
            raise SystemExit(130)
        self.requested = True


class NonFiniteError(RuntimeError):
    """A loss or a parameter became NaN or infinite; the run stops before checkpointing it."""


def check_finite(agent: Any, log: RunLogger, since: int, step: int) -> None:
    """Raise `NonFiniteError` naming the loss or network if anything the agent learned is not
    finite. Called before every checkpoint and log flush: one host sync each, none per update."""
    for key, value in log.nonfinite_losses().items():
        raise NonFiniteError(f"losses/{key} became {value} in the updates between step {since} and step {step}")
    for name, learnable in agent.learnables.items():
        params = [p for p in learnable.module.parameters()]
        if params and not bool(torch.stack([p.isfinite().all() for p in params]).all()):
            raise NonFiniteError(f"the parameters of network {name!r} became non-finite between step {since} "
                                 f"and step {step}")


def train(cfg: TrainConfig, parts: RunParts, log: RunLogger, run_dir: Path, resume_state: dict | None = None,
          save: Callable[[dict], Any] | None = None) -> RunResults:
    """Run the loop until the schedule is finished; return the run's continual record.

    `save(state)` writes a checkpoint (default: `run_dir/checkpoint.pt`, atomically);
    `resume_state` is a checkpoint to continue from."""
    schedule, agent, replay = parts.schedule, parts.agent, parts.replay
    evaluator, monitoring = parts.evaluator, parts.monitoring
    save = save or (lambda state: save_checkpoint(run_dir, state))
    results = RunResults([t.name for t in schedule.tasks])
    step, grad_credit = 0, 0.0
    if resume_state is not None:
        agent.load_state_dict(resume_state["agent"])
        replay.load_state_dict(resume_state["replay"])
        schedule.load_state_dict(resume_state["schedule"])
        evaluator.load_state_dict(resume_state["evaluator"])
        monitoring.load_state_dict(resume_state["monitoring"])
        results.load_state_dict(resume_state["results"])
        restore_rng_states(resume_state["rng"])
        step, grad_credit = resume_state["step"], resume_state["grad_credit"]
    clock = time.perf_counter
    started, run_before = clock(), results.seconds["run"]  # a resumed run adds to its earlier seconds
    if resume_state is None:
        t = clock()
        results.random = evaluator.random_baselines()
        results.seconds["random"] += clock() - t

    def stamp_seconds() -> None:
        results.seconds["run"] = run_before + clock() - started

    def write_results() -> None:
        stamp_seconds()
        results.write(run_dir)

    last_check = step

    def checkpoint() -> None:
        nonlocal last_check
        check_finite(agent, log, last_check, step)
        last_check = step
        results.step = step
        stamp_seconds()
        log.writer.flush()  # every event up to `step` is on disk before the checkpoint says so
        save({
            "config": dataclasses.asdict(cfg), "step": step, "grad_credit": grad_credit,
            "agent": agent.state_dict(), "replay": replay.state_dict(), "schedule": schedule.state_dict(),
            "evaluator": evaluator.state_dict(), "monitoring": monitoring.state_dict(),
            "results": results.state_dict(), "rng": rng_states(),
        })

    def evaluate_all() -> list[float] | None:
        if not evaluator.enabled:
            return None
        t = clock()
        returns = evaluator.evaluate_all(agent)
        results.seconds["evaluation"] += clock() - t
        results.evaluation(step, returns)
        log.evaluation(returns, step)
        return returns

    def end_visit() -> None:
        results.end_visit(step, evaluate_all())
        results.step = step
        write_results()

    def start_visit(visit: int, task: int) -> None:
        results.start_visit(task, step)
        log.start_visit(visit, task, step)

    stop = StopRequest()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    prioritized = cfg.replay.kind == "prioritized"
    next_log = step + cfg.log_every
    next_ckpt = step + cfg.checkpoint_every if cfg.checkpoint_every else None
    next_eval = step + cfg.eval.every if cfg.eval.every and evaluator.enabled else None
    obs = schedule.reset()
    if results.current_visit != schedule.visit:  # a new run, or a finished run given more cycles
        if results.visits and cfg.task_boundaries:
            agent.on_task_switch(schedule.task_index, step)
        start_visit(schedule.visit, schedule.task_index)
    else:
        log.task = schedule.task_index
    ready = False  # enough transitions to learn from (checked until true: len() costs a reduction)
    try:
        while not schedule.finished:
            # 1. act: the agent explores its own way (random before learning starts, then ε or sampling)
            actions = agent.act(obs, schedule.task_index, step)
            # 2. step every environment of the current task
            res = schedule.step(actions)
            step = schedule.steps
            # 3. store the transitions (auto-reset steps are not transitions: valid=False)
            replay.add(obs, actions, res.rewards, res.next_obs, res.terminated, res.truncated, res.valid, res.task)
            for ep in res.episodes:
                log.episode(ep.task, ep.ret, ep.length, step)
                results.episode(ep.ret, step)
            obs = res.obs
            # 4. learn: `updates_per_env_step` gradient steps per stored transition (counted on the host)
            ready = ready or (step >= agent.learning_starts and len(replay) >= agent.batch_size)
            if ready:
                grad_credit += res.transitions * agent.updates_per_env_step
                while grad_credit >= 1.0:
                    grad_credit -= 1.0
                    batch = replay.sample(agent.batch_size)
                    metrics = agent.update(batch)
                    if prioritized:
                        replay.update_priorities(batch.indices, metrics["td_abs"])
                    log.accumulate(metrics)
                    monitoring.after_update(replay, log.writer, step)
            # 5. task switch: evaluate every task, tell the agent (if boundaries are shown)
            if res.switch is not None:
                end_visit()
                if cfg.task_boundaries:
                    agent.on_task_switch(res.switch.current, step)
                start_visit(res.switch.visit, res.switch.current)
            if next_eval is not None and step >= next_eval:
                next_eval += cfg.eval.every
                if not schedule.finished:
                    evaluate_all()
                    write_results()
            log.advance(res.rewards.shape[0])
            if step >= next_log:
                next_log += cfg.log_every
                check_finite(agent, log, last_check, step)
                last_check = step
                extra = agent.log_scalars(step)
                extra.update({f"plasticity/{k}": v for k, v in agent.intervention_metrics().items()})
                log.flush_scalars(step, extra)
            if next_ckpt is not None and step >= next_ckpt:
                next_ckpt += cfg.checkpoint_every
                checkpoint()
            if stop.requested:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        checkpoint()
        print(f"\ninterrupted at step {step}; checkpoint written. Continue with: "
              f"python train.py --resume {run_dir}", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    check_finite(agent, log, last_check, step)
    end_visit()
    results.finished = True
    write_results()
    checkpoint()
    return results


def finished_line(cfg: TrainConfig, state: dict) -> str | None:
    """One line saying a checkpointed run is finished (nothing left under `cfg`), else None."""
    visits = len(cfg.env.task_ids()) * cfg.env.cycles
    if state["schedule"]["visit"] < visits:
        return None
    return (f"{cfg.run_dir} is finished (step {state['step']}, {visits} visits); nothing to do. "
            f"To continue it, give more cycles: python train.py --resume {cfg.run_dir} --env.cycles {cfg.env.cycles + 1}")


#: `python train.py SUBCOMMAND …`: the module whose `main(argv)` handles it
SUBCOMMANDS = {"scores": "runner.scores", "sweep": "studies.sweep", "report": "studies.report"}


def main(argv: list[str] | None = None) -> int:
    from runner.cli import parse_args

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        return importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:])
    try:
        cfg, resume_state = parse_args(argv)
        if resume_state is not None and (line := finished_line(cfg, resume_state)) is not None:
            print(line)
            return 0
        parts = build(cfg)  # refuses bad input before anything is written
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    run_dir = Path(cfg.run_dir)
    try:
        return _run(cfg, parts, run_dir, resume_state)
    except NonFiniteError as err:
        kept = "the last good checkpoint.pt is kept" if (run_dir / "checkpoint.pt").exists() else "no checkpoint was written"
        print(f"error: {err}; the run stops ({kept})", file=sys.stderr)
        return 3
    except CheckpointWriteError as err:
        print(f"error: {err}; the run stops", file=sys.stderr)
        return 4


def _run(cfg: TrainConfig, parts: RunParts, run_dir: Path, resume_state: dict | None) -> int:
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    log = None
    try:
        (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
        t0 = time.perf_counter()
        step = resume_state["step"] if resume_state else 0
        # everything logged at the checkpoint's step was written before it: purge only what came after
        log = RunLogger(str(run_dir), [t.name for t in parts.schedule.tasks], parts.schedule.total_steps,
                        start_step=step, progress=cfg.progress,
                        # events after the checkpoint's step are dropped; those at it were written before it
                        purge_step=step + 1 if resume_state else None)
        if resume_state is None:
            add_continual_layout(log.writer, [t.name for t in parts.schedule.tasks], list(parts.agent.learnables))
        results = train(cfg, parts, log, run_dir, resume_state)
        summary = format_summary(results)
        log.writer.add_text("summary", "<pre>" + summary + "</pre>", results.step)
    except BaseException as err:
        # a run that fails before its first checkpoint leaves nothing behind (one that diverged
        # keeps its TensorBoard events, to see how)
        fresh = created and resume_state is None and not (run_dir / "checkpoint.pt").exists()
        if fresh and not isinstance(err, (NonFiniteError, CheckpointWriteError)):
            if log is not None:
                log.close()
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        if log is not None:
            log.close()
        parts.close()
    print(summary)
    if results.matrix:
        from runner.scores import compute_scores, format_scores

        print(format_scores(compute_scores(results.to_dict()), results.to_dict()))
    print(f"done in {time.perf_counter() - t0:.0f}s; TensorBoard: tensorboard --logdir {run_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
