"""Evaluation of MinAtar tasks: one batched game on the device against one game per copy.

The evaluator runs ``--episodes`` copies of a task at once. For MinAtar it steps them as one
batched game of that many envs (``schedule.make_eval_envs``: ``DeviceEvalEnvs``); the peer is
what host tasks use, a ``gymnasium`` ``SyncVectorEnv`` of single envs (``make_eval_env``, a
game of one env each) whose actions and observations cross to numpy every step
(``HostEvalEnvs``). Both evaluate the same agent (a fresh DQN with the MinAtar network, greedy)
with the same evaluator settings; a side's rate is env steps per second over the
evaluation's steps (copies x loop steps, the loop stopping when every copy's first episode
has ended). Sides alternate within each repeat, their order rotated; every repeat is printed.

    python benchmarks/minatar_eval.py --games Breakout SpaceInvaders Seaquest --episodes 5 32 --repeats 5
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.speed_common import machine_line  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--games", nargs="+", default=["Breakout", "SpaceInvaders", "Seaquest"])
    p.add_argument("--episodes", nargs="+", type=int, default=[5, 32], help="evaluation copies per task")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--evaluations", type=int, default=3, help="evaluations per side and repeat")
    p.add_argument("--max-steps", type=int, default=10_000)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import gymnasium
    import torch

    from envs.eval_envs import HostEvalEnvs
    from runner.build import build
    from runner.cli import parse_args
    from runner.evaluator import Evaluator

    torch.set_num_threads(args.threads)
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {machine_line(args.threads)}")
    print(f"# {' '.join(sys.argv)}")
    rows = []
    for game in args.games:
        cfg, _ = parse_args(["--preset", "minatar-cycle", "--env.tasks", f"minatar:{game}", "--no-progress",
                             "--threads", str(args.threads)])
        parts = build(cfg)
        sched, agent = parts.schedule, parts.agent

        def one_per_copy(task: int, n: int, sched=sched) -> HostEvalEnvs:
            envs = gymnasium.vector.SyncVectorEnv([lambda: sched.make_eval_env(task) for _ in range(n)])
            return HostEvalEnvs(envs, n, sched.device)

        factories = {"batched": sched.make_eval_envs, "one-per-copy": one_per_copy}
        for n in args.episodes:
            evaluators = {name: Evaluator(make, 1, torch.as_tensor(sched.action_masks), 0,
                                          episodes=n, random_episodes=0, max_steps=args.max_steps,
                                          epsilon=cfg.eval.epsilon, seed=0)
                          for name, make in factories.items()}
            names = list(evaluators)
            rates: dict[str, list[float]] = {name: [] for name in names}
            for ev in evaluators.values():  # build the envs and warm up
                ev.run_episodes(0, n, ev.greedy_policy(agent, 0))
            for r in range(args.repeats):
                order = names[r % 2:] + names[: r % 2]
                for name in order:
                    ev = evaluators[name]
                    steps = 0

                    def counted(obs, policy=ev.greedy_policy(agent, 0)):
                        nonlocal steps
                        steps += obs.shape[0]
                        return policy(obs)

                    t0 = time.perf_counter()
                    for _ in range(args.evaluations):
                        ev.run_episodes(0, n, counted)
                    rate = steps / (time.perf_counter() - t0)
                    rates[name].append(rate)
                    print(f"{game:13s} copies {n:3d} repeat {r} {name:12s} {rate:9.0f} env steps/s ({steps} steps)",
                          flush=True)
            ratios = [b / o for b, o in zip(rates["batched"], rates["one-per-copy"])]
            rows.append((game, n, rates, ratios))
            for ev in evaluators.values():
                ev.close()
        parts.close()

    print("\n| game | copies | batched env steps/s (every repeat) | one game per copy | batched / one per copy, per repeat | median |")
    print("|---|---:|---|---|---|---:|")
    for game, n, rates, ratios in rows:
        fmt = lambda xs: ", ".join(f"{x:,.0f}" for x in xs)  # noqa: E731
        print(f"| {game} | {n} | {fmt(rates['batched'])} | {fmt(rates['one-per-copy'])} | "
              f"{', '.join(f'{x:.2f}' for x in ratios)} | **{statistics.median(ratios):.2f}×** |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
