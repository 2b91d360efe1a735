"""Where one env step of DQN on MinAtar Breakout goes, ours against Stable-Baselines3's, in one
process: blocks of ``--steps`` env steps alternate between the loops (ours eager, ours with
``--dqn.compile``, SB3) for ``--rounds`` rounds, and each piece of each loop is timed: act
(ε = 0.01), env step, replay add, and, once every 4 env steps, replay sample and update. Same
settings as ``minatar_dqn.py`` (1 env, the MinAtar network, batch 32, one thread); both
replays are first filled with ``--fill`` uniformly random steps.

The last lines bound what any work outside the update can buy: SB3's whole step divided by
ours' sample + update alone (per env step), i.e. ours' speed ratio if acting, the game and
the replay add cost nothing.

    python benchmarks/minatar_dqn_breakdown.py --rounds 6 --steps 400

Prints markdown for ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import shutil
import statistics
import sys
import tempfile
import time

from minatar_dqn import ROOT, make_sb3, ours_cmd

PIECES = ("act", "env step", "replay add", "replay sample", "update", "total")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, default=400, help="env steps per block")
    p.add_argument("--fill", type=int, default=5000, help="random steps stored before timing")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))

    import torch

    from agents.dqn import DQN
    from runner.build import build
    from runner.cli import parse_args

    tmp = tempfile.mkdtemp(prefix="minatar_dqn_breakdown_")
    cfg, _ = parse_args(ours_cmd(os.path.join(tmp, "run"), 100_000, args.seed)[2:])
    parts = build(cfg)  # sets one thread
    sched, agent, replay = parts.schedule, parts.agent, parts.replay
    obs = sched.reset()
    for _ in range(args.fill):
        a = agent.act(obs, 0, 0)  # before learning starts: uniformly random
        res = sched.step(a)
        replay.add(obs, a, res.rewards, res.next_obs, res.terminated, res.truncated, res.valid, res.task)
        obs = res.obs
    learners = {"ours": agent,
                "ours-compile": DQN(dataclasses.replace(cfg.dqn, compile=True), sched.obs_shape, sched.num_actions,
                                    sched.action_masks, sched.device, cfg.seed)}
    t = time.perf_counter()
    learners["ours-compile"].update(replay.sample(32))
    print(f"--dqn.compile: the first update (compilation) took {time.perf_counter() - t:.1f} s", flush=True)

    model, _ = make_sb3(args.seed, learning_starts=args.fill)
    model.learn(total_timesteps=args.fill, progress_bar=False)  # fills SB3's replay, no training
    model.exploration_rate = 0.01
    env = model.get_env()
    times = {name: {k: [] for k in PIECES} for name in [*learners, "sb3"]}
    n = args.steps

    def ours_block(name: str) -> None:
        nonlocal obs
        learner, acc = learners[name], dict.fromkeys(PIECES, 0.0)
        start = time.perf_counter()
        for i in range(n):
            t0 = time.perf_counter()
            actions = learner.epsilon_greedy(obs, 0, 0.01)
            t1 = time.perf_counter()
            res = sched.step(actions)
            t2 = time.perf_counter()
            replay.add(obs, actions, res.rewards, res.next_obs, res.terminated, res.truncated, res.valid, res.task)
            t3 = time.perf_counter()
            obs = res.obs
            acc["act"] += t1 - t0
            acc["env step"] += t2 - t1
            acc["replay add"] += t3 - t2
            if i % 4 == 3:
                batch = replay.sample(32)
                t4 = time.perf_counter()
                learner.update(batch)
                acc["replay sample"] += t4 - t3
                acc["update"] += time.perf_counter() - t4
        acc["total"] = time.perf_counter() - start
        for k, v in acc.items():
            times[name][k].append(v / n)

    def sb3_block() -> None:
        acc = dict.fromkeys(PIECES, 0.0)
        start = time.perf_counter()
        for i in range(n):
            t0 = time.perf_counter()
            actions, buffer_actions = model._sample_action(model.learning_starts, None, env.num_envs)
            t1 = time.perf_counter()
            new_obs, rewards, dones, infos = env.step(actions)
            t2 = time.perf_counter()
            model.num_timesteps += 1
            model._store_transition(model.replay_buffer, buffer_actions, new_obs, rewards, dones, infos)
            t3 = time.perf_counter()
            acc["act"] += t1 - t0
            acc["env step"] += t2 - t1
            acc["replay add"] += t3 - t2
            if i % 4 == 3:
                model.replay_buffer.sample(32, env=model._vec_normalize_env)  # timed alone ...
                t4 = time.perf_counter()
                model.train(gradient_steps=1, batch_size=32)  # ... and again inside train()
                acc["replay sample"] += t4 - t3
                acc["update"] += time.perf_counter() - t4
        acc["total"] = time.perf_counter() - start - acc["replay sample"]
        for k, v in acc.items():
            times["sb3"][k].append(v / n)

    jobs = [*(lambda name=name: ours_block(name) for name in learners), sb3_block]
    for job in jobs:  # warm-up, discarded
        job()
    for per_piece in times.values():
        for v in per_piece.values():
            v.clear()
    for r in range(args.rounds):
        for job in jobs[r % len(jobs):] + jobs[: r % len(jobs)]:
            job()
    sched.close()
    env.close()
    shutil.rmtree(tmp, ignore_errors=True)

    names = list(times)
    print(f"\n# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, load average "
          f"{os.getloadavg()[0]:.1f}, cpus {os.cpu_count()}, threads {torch.get_num_threads()}; "
          f"{args.rounds} interleaved rounds of {n} env steps per loop (medians)\n")
    print("| piece (µs per env step; sample and update once every 4) | " + " | ".join(names)
          + " | " + " | ".join(f"{x} / sb3" for x in names if x != "sb3") + " |")
    print("|---" * (2 * len(names)) + "|")
    for k in PIECES:
        med = {x: statistics.median(times[x][k]) * 1e6 for x in names}
        print(f"| {k} | " + " | ".join(f"{med[x]:.0f}" for x in names) + " | "
              + " | ".join(f"{med[x] / med['sb3']:.2f}" for x in names if x != "sb3") + " |")
    print()
    sb3_total = times["sb3"]["total"]
    for x in names[:-1]:
        speed = [s / o for s, o in zip(sb3_total, times[x]["total"])]
        learn = [a + b for a, b in zip(times[x]["replay sample"], times[x]["update"])]
        bound = [s / lrn for s, lrn in zip(sb3_total, learn)]
        print(f"- {x} SPS / SB3's SPS: median {statistics.median(speed):.2f} (per round "
              + ", ".join(f"{v:.2f}" for v in speed) + f"); with act, env step and replay add free: "
              f"median {statistics.median(bound):.2f} (per round " + ", ".join(f"{v:.2f}" for v in bound) + ")")


if __name__ == "__main__":
    main()
