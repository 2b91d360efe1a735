"""The in-process half of ``dqn_speed.py --profile`` / ``--breakdown-only`` (and of
``minatar_dqn_breakdown.py``): ours' and SB3's DQN training loops in one process on the same
game, blocks of ``--breakdown-steps`` env steps alternating for ``--breakdown-rounds`` rounds,
each piece of each loop timed (act, env step, replay add, replay sample, update), then ours'
update piece by piece. The last lines bound what work outside the update can buy: SB3's whole
step over ours' sample + update alone (per env step), i.e. ours' speed ratio if acting, the
game and the replay add cost nothing."""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time

from dqn_speed import make_sb3, ours_argv


def breakdown(args, ours_argv=ours_argv, make_sb3=make_sb3) -> None:
    """Per-piece times of both loops, in one process, interleaved rounds; ``ours_argv(args,
    run_dir)`` gives train.py's options, ``make_sb3(args, learning_starts, total)`` SB3's
    ``(model, env)`` (default: ``dqn_speed.py``'s Atari Breakout)."""
    import torch
    import torch.nn.functional as F

    from runner.cli import parse_args
    from runner.build import build

    tmp = tempfile.mkdtemp(prefix="dqn_breakdown_")
    cfg, _ = parse_args(ours_argv(args, os.path.join(tmp, "run")))
    comp = build(cfg)  # sets torch threads
    sched, agent, replay = comp.schedule, comp.agent, comp.replay
    fill = args.breakdown_fill
    model, env = make_sb3(args, learning_starts=fill, total=fill)
    model.learn(total_timesteps=fill, progress_bar=False)  # fills SB3's buffer, no training
    model.exploration_rate = 0.01
    env = model.get_env()  # VecTransposeImage(VecFrameStack(...)), as SB3's learn() steps it
    obs = sched.reset()
    for _ in range(fill):  # fill ours with real frames
        a = agent.act(obs, 0, 0)  # before learning starts: uniformly random
        res = sched.step(a)
        replay.add(obs, a, res.rewards, res.next_obs, res.terminated, res.truncated, res.valid, res.task)
        obs = res.obs

    import dataclasses

    from agents.dqn import DQN

    pieces = ("act", "env step", "replay add", "replay sample", "update", "total/env step")
    agents = {"ours": agent}
    if args.breakdown_compile:
        agents["ours-compile"] = DQN(dataclasses.replace(cfg.dqn, compile=True), sched.obs_shape, sched.num_actions,
                                     sched.action_masks, sched.device, cfg.seed)
        t = time.perf_counter()
        agents["ours-compile"].update(replay.sample(32))
        print(f"--dqn.compile: compilation of the update (first call): {time.perf_counter() - t:.1f} s", flush=True)
    times = {name: {k: [] for k in pieces} for name in [*agents, "sb3"]}
    sb3_t = times["sb3"]
    n = args.breakdown_steps

    def ours_round(name: str) -> None:
        nonlocal obs
        learner = agents[name]
        acc = dict.fromkeys(pieces, 0.0)
        t_all = time.perf_counter()
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
                t5 = time.perf_counter()
                acc["replay sample"] += t4 - t3
                acc["update"] += t5 - t4
        acc["total/env step"] = time.perf_counter() - t_all
        for k, v in acc.items():
            times[name][k].append(v / n)

    def sb3_round() -> None:
        acc = dict.fromkeys(sb3_t, 0.0)
        t_all = time.perf_counter()
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
                t5 = time.perf_counter()
                acc["replay sample"] += t4 - t3
                acc["update"] += t5 - t4
        acc["total/env step"] = time.perf_counter() - t_all - acc["replay sample"]
        for k, v in acc.items():
            sb3_t[k].append(v / n)

    # inside ours' gradient step: the pieces of agent.update, eager
    batch = replay.sample(32)
    q, qt = agent.q, agent.q_target
    fmt = agent._format
    double = cfg.dqn.double  # the Double DQN piece is timed only when the run uses it
    pieces_of_update = ("target fwd (no grad)", "online fwd on next_obs (no grad, Double DQN)",
                        "online fwd + loss + backward", "clip_grad_norm_", "Adam step")
    inner = {k: [] for k in pieces_of_update if double or k != pieces_of_update[1]}

    def inner_round(reps: int = 5) -> None:
        acc = dict.fromkeys(inner, 0.0)
        for _ in range(reps):
            t0 = time.perf_counter()
            with torch.no_grad():
                nq = qt(fmt(batch.next_obs))
            t1 = time.perf_counter()
            if double:
                with torch.no_grad():
                    q(fmt(batch.next_obs)).argmax(1)
            t2 = time.perf_counter()
            agent.optimizer.zero_grad(set_to_none=True)
            qa = q(fmt(batch.obs)).gather(1, batch.actions[:, None]).squeeze(1)
            F.smooth_l1_loss(qa, batch.rewards + nq.max(1).values * batch.discounts).backward()
            t3 = time.perf_counter()
            torch.nn.utils.clip_grad_norm_(q.parameters(), 10.0)
            t4 = time.perf_counter()
            agent.optimizer.step()
            t5 = time.perf_counter()
            for k, dt in zip(pieces_of_update, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                if k in acc:
                    acc[k] += dt
        for k, v in acc.items():
            inner[k].append(v / reps)

    jobs = [*(lambda name=name: ours_round(name) for name in agents), sb3_round, inner_round]
    for job in jobs:  # warm-up round, discarded
        job()
    for k in (*(v for t in times.values() for v in t.values()), *inner.values()):
        k.clear()
    for r in range(args.breakdown_rounds):
        for job in jobs[r % len(jobs):] + jobs[: r % len(jobs)]:
            job()
    sched.close()
    env.close()
    shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(f"### Per-piece time per env step, in-process, {args.breakdown_rounds} interleaved rounds of {n} env steps "
          f"(medians; ε = 0.01; threads {torch.get_num_threads()})")
    print()
    names = list(times)
    print("| piece (per env step; sample/update once every 4 steps) | " + " | ".join(f"{n} ms" for n in names)
          + " | " + " | ".join(f"{n} / sb3" for n in names if n != "sb3") + " |")
    print("|---" * (2 * len(names)) + "|")
    for k in pieces:
        med = {n: statistics.median(times[n][k]) * 1e3 for n in names}
        print(f"| {k} | " + " | ".join(f"{med[n]:.3f}" for n in names) + " | "
              + " | ".join(f"{med[n] / med['sb3']:.2f}" for n in names if n != "sb3") + " |")
    print()
    print("Per-round speed ratio (SB3 time per env step / ours), i.e. ours' SPS / SB3's SPS:")
    print()
    for n in names:
        if n != "sb3":
            per = [s / o for s, o in zip(times["sb3"]["total/env step"], times[n]["total/env step"])]
            print(f"- {n} / sb3: median {statistics.median(per):.3f}; per round " + ", ".join(f"{x:.3f}" for x in per))
            learn = [a + b for a, b in zip(times[n]["replay sample"], times[n]["update"])]
            bound = [s / x for s, x in zip(times["sb3"]["total/env step"], learn)]
            print(f"  with act, env step and replay add free: median {statistics.median(bound):.3f}; per round "
                  + ", ".join(f"{x:.3f}" for x in bound))
    upd = statistics.median(times["ours"]["update"]) * 4e3
    print()
    print(f"Inside ours' gradient step (eager; one update ≈ {upd:.1f} ms in the loop above):")
    print()
    print("| piece of one update | ms | share of the pieces |")
    print("|---|---|---|")
    tot = sum(statistics.median(v) for v in inner.values())
    for k, v in inner.items():
        print(f"| {k} | {statistics.median(v) * 1e3:.2f} | {statistics.median(v) / tot:.0%} |")
