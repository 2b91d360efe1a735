"""Train an agent on a non-stationary cycle of tasks: the CLI and the training loop.

    python train.py                                   # the quickstart preset
    python train.py --preset atari-cycle --env.games Pong Breakout --env.steps-per-visit 100000
    python train.py --agent sac --env.tasks gym:Pendulum-v1 --plasticity swr:lam=1e-3
    python train.py --resume runs/<run-name>          # continue a stopped run

Read `train()` top to bottom: it is the whole loop. Components are built by
`runner.components.build` (which refuses bad input before anything is written), logged by
`runner.logger.RunLogger`, and checkpointed by `runner.checkpoint`.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import sys
import time
from pathlib import Path

import torch

from runner.checkpoint import restore_rng_states, rng_states, save_checkpoint
from runner.components import Components, build, epsilon_at, random_actions
from runner.config import TrainConfig
from runner.evaluate import evaluate_policy
from runner.logger import RunLogger
from runner.summary import format_summary


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def train(cfg: TrainConfig, run_dir: Path, comp: Components, resume_state: dict | None = None) -> str:
    """Run the loop until the schedule is finished; return the summary table."""
    schedule, agent, replay = comp.schedule, comp.agent, comp.replay
    step, grad_credit, learn_steps = 0, 0.0, 0
    if resume_state is not None:
        agent.load_state_dict(resume_state["agent"])
        replay.load_state_dict(resume_state["replay"])
        schedule.load_state_dict(resume_state["schedule"])
        restore_rng_states(resume_state["rng"])
        step, grad_credit, learn_steps = resume_state["step"], resume_state["grad_credit"], resume_state["learn_steps"]
    log = RunLogger(str(run_dir), [t.name for t in schedule.tasks], schedule.total_steps, start_step=step,
                    progress=cfg.progress, purge_step=step if resume_state else None)
    if resume_state is not None:
        log.visits = resume_state["visits"]
        comp.random_baselines = resume_state["random_baselines"]
    else:
        comp.random_baselines = comp.measure_random_baselines()

    def checkpoint() -> None:
        save_checkpoint(run_dir, {
            "config": dataclasses.asdict(cfg), "step": step, "grad_credit": grad_credit,
            "learn_steps": learn_steps, "agent": agent.state_dict(), "replay": replay.state_dict(),
            "schedule": schedule.state_dict(), "rng": rng_states(), "visits": log.visits,
            "random_baselines": comp.random_baselines,
        })

    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM behaves like Ctrl-C
    learning_starts = comp.learning_starts
    updates_per_step = comp.updates_per_env_step
    next_log = step + cfg.log_every
    next_ckpt = step + cfg.checkpoint_every if cfg.checkpoint_every else None
    next_eval = step + cfg.eval.every if cfg.eval.every and cfg.eval.episodes else None
    obs = schedule.reset()
    if resume_state is None or not log.visits or log.visits[-1].visit != schedule.visit:
        log.start_visit(schedule.visit, schedule.task_index, step)
    visit_start = comp.visit_start_step(step)
    ready = False  # enough transitions to learn from (checked until true: len() costs a reduction)
    try:
        while not schedule.finished:
            task = schedule.task_index
            # 1. act: random before learning starts, the agent's exploration policy after
            if step < learning_starts:
                actions = random_actions(comp, task, obs.shape[0])
            else:
                eps = epsilon_at(cfg, comp, step, visit_start)
                actions = agent.act(obs, task, eps) if cfg.agent == "dqn" else agent.act(obs, task)
            # 2. step every environment of the current task
            res = schedule.step(actions)
            step = schedule.steps
            # 3. store the transitions (auto-reset steps are not transitions: valid=False)
            replay.add(obs, actions, res.rewards, res.next_obs, res.terminated, res.truncated, res.valid, res.task)
            for ep in res.episodes:
                log.episode(ep.task, ep.ret, ep.length, step)
            obs = res.obs
            # 4. learn: `updates_per_step` gradient steps per stored transition
            new = int(res.valid.sum()) if res.valid.dtype == torch.bool else obs.shape[0]
            learn_steps += new
            ready = ready or (step >= learning_starts and len(replay) >= comp.batch_size)
            if ready:
                grad_credit += new * updates_per_step
                while grad_credit >= 1.0:
                    grad_credit -= 1.0
                    batch = replay.sample(comp.batch_size)
                    metrics = agent.update(batch)
                    if comp.prioritized:
                        replay.update_priorities(batch.indices, metrics["td_abs"])
                    log.accumulate(metrics)
                    comp.after_update(batch, step, log)
            # 5. task switch: evaluate the task just left, tell the agent (if boundaries are shown)
            if res.switch is not None:
                if cfg.eval.episodes:
                    log.evaluation(res.switch.previous, evaluate_policy(comp, res.switch.previous), step)
                if cfg.task_boundaries:
                    agent.on_task_switch(res.switch.current)
                log.start_visit(res.switch.visit, res.switch.current, step)
                visit_start = step
            if next_eval is not None and step >= next_eval and not schedule.finished:
                next_eval += cfg.eval.every
                log.evaluation(schedule.task_index, evaluate_policy(comp, schedule.task_index), step)
            log.advance(res.rewards.shape[0])
            if step >= next_log:
                next_log += cfg.log_every
                extra = {"charts/epsilon": epsilon_at(cfg, comp, step, visit_start)} if cfg.agent == "dqn" else {}
                extra.update({f"plasticity/{k}": v for k, v in agent.intervention_metrics().items()})
                log.flush_scalars(step, extra)
            if next_ckpt is not None and step >= next_ckpt:
                next_ckpt += cfg.checkpoint_every
                checkpoint()
    except KeyboardInterrupt:
        checkpoint()
        log.close()
        print(f"\ninterrupted at step {step}; checkpoint written. Continue with: "
              f"python train.py --resume {run_dir}", file=sys.stderr)
        raise SystemExit(130)
    if cfg.eval.episodes and log.visits:
        log.evaluation(log.visits[-1].task, evaluate_policy(comp, log.visits[-1].task), step)
    checkpoint()
    summary = format_summary(log.visits, comp.random_baselines)
    log.writer.add_text("summary", "<pre>" + summary + "</pre>", step)
    log.close()
    schedule.close()
    return summary


def main(argv: list[str] | None = None) -> int:
    from runner.cli import parse_args

    try:
        cfg, resume_state = parse_args(sys.argv[1:] if argv is None else argv)
        comp = build(cfg)  # refuses bad input before anything is written
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    run_dir = Path(cfg.run_dir)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        if resume_state is None:
            (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
        t0 = time.perf_counter()
        summary = train(cfg, run_dir, comp, resume_state)
    except BaseException:
        # a run that fails before its first checkpoint leaves nothing behind
        if created and resume_state is None and not (run_dir / "checkpoint.pt").exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    print(summary)
    print(f"done in {time.perf_counter() - t0:.0f}s; TensorBoard: tensorboard --logdir {run_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
