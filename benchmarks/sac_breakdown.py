"""The in-process half of ``sac_speed.py --profile`` / ``--breakdown-only``: ours' and SB3's
training loops in one process, 200-step blocks (``--breakdown-steps``) alternating for
``--breakdown-rounds`` rounds, each piece of each loop timed (act, env step, replay add, replay
sample, update), then ours' eager update piece by piece next to the optimizer variants. Run
by ``sac_speed.py`` in a child process (so ``--omp-wait-policy`` applies to it)."""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time

from sac_speed import ENV_ID, make_sb3, ours_argv


def breakdown(args) -> None:
    """Per-piece times of both loops, in one process, interleaved rounds."""
    import torch

    from agents.sac import temperature_loss
    from runner.cli import parse_args
    from runner.build import build
    from runner.logger import RunLogger

    tmp = tempfile.mkdtemp(prefix="sac_breakdown_")
    n = args.breakdown_steps
    fill = args.breakdown_fill
    total = fill + n * (2 * args.breakdown_rounds + 2) + 10
    extra = ["--sac.compile"] if args.breakdown_compile else []
    cfg, _ = parse_args(ours_argv(args, os.path.join(tmp, "run"), extra, total=total))
    comp = build(cfg)  # sets torch threads
    sched, agent, replay = comp.schedule, comp.agent, comp.replay
    log = RunLogger(os.path.join(tmp, "log"), [ENV_ID], sched.total_steps, progress=False)
    model = make_sb3(args, learning_starts=fill)
    model.learn(total_timesteps=fill, progress_bar=False)  # fills SB3's buffer (random actions), no training
    env = model.get_env()
    obs = sched.reset()
    for _ in range(fill):
        a = agent.act(obs, 0, 0)  # before learning starts: uniformly random
        res = sched.step(a)
        replay.add(obs, a, res.rewards, res.next_obs, res.terminated, res.truncated, res.valid, res.task)
        obs = res.obs
    keys = ("act", "env step", "replay add", "replay sample", "update", "total/env step")
    ours_t = {k: [] for k in keys}
    sb3_t = {k: [] for k in keys}

    def ours_round() -> None:
        nonlocal obs
        acc = dict.fromkeys(keys, 0.0)
        t_all = time.perf_counter()
        for _ in range(n):
            t0 = time.perf_counter()
            actions = agent.act(obs, 0, 10**12)
            t1 = time.perf_counter()
            res = sched.step(actions)
            t2 = time.perf_counter()
            replay.add(obs, actions, res.rewards, res.next_obs, res.terminated, res.truncated, res.valid, res.task)
            t3 = time.perf_counter()
            obs = res.obs
            batch = replay.sample(256)
            t4 = time.perf_counter()
            log.accumulate(agent.update(batch))
            t5 = time.perf_counter()
            for k, dt in zip(keys, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                acc[k] += dt
        acc["total/env step"] = time.perf_counter() - t_all
        for k, v in acc.items():
            ours_t[k].append(v / n)

    def sb3_round() -> None:
        acc = dict.fromkeys(keys, 0.0)
        t_all = time.perf_counter()
        for _ in range(n):
            t0 = time.perf_counter()
            actions, buffer_actions = model._sample_action(0, None, env.num_envs)
            t1 = time.perf_counter()
            new_obs, rewards, dones, infos = env.step(actions)
            t2 = time.perf_counter()
            model.num_timesteps += 1
            model._store_transition(model.replay_buffer, buffer_actions, new_obs, rewards, dones, infos)
            t3 = time.perf_counter()
            model.replay_buffer.sample(256, env=model._vec_normalize_env)  # timed alone ...
            t4 = time.perf_counter()
            model.train(gradient_steps=1, batch_size=256)  # ... and again inside train()
            t5 = time.perf_counter()
            for k, dt in zip(keys, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                acc[k] += dt
        acc["total/env step"] = time.perf_counter() - t_all - acc["replay sample"]
        for k, v in acc.items():
            sb3_t[k].append(v / n)

    # inside ours' gradient step, eager, piece by piece (same math as SAC.update)
    batch = replay.sample(256)
    o = batch.obs.flatten(1).float()
    no = batch.next_obs.flatten(1).float()
    act = batch.actions.float()
    inner_keys = ("critic fwd+loss (incl. target, no-grad actor on s')", "critic backward", "critic Adam",
                  "actor fwd+loss (actor + both Q on s, ã)", "actor backward (inputs=actor params)", "actor Adam",
                  "α loss+backward+Adam", "Polyak (lerp_ per tensor)", "Polyak (torch._foreach_lerp_)",
                  "metrics dict (detach, q.mean, α)",
                  "alt: critic Adam, per-tensor loop foreach=False (copy)", "alt: critic Adam foreach=True (copy)",
                  "alt: critic Adam fused=True (copy)")
    alt_keys = inner_keys[-3:]
    inner = {k: [] for k in inner_keys}
    tgt_params = list(agent.critic_target.parameters())
    src_params = list(agent.critic.parameters())
    # optimizer variants on copies of the critic's parameters with gradients of the same shape
    alt_opts = []
    for kw in (dict(foreach=False), dict(foreach=True), dict(fused=True)):
        ps = [p.detach().clone().requires_grad_(True) for p in src_params]
        for p in ps:
            p.grad = torch.randn_like(p) * 1e-3
        alt_opts.append(torch.optim.Adam(ps, lr=3e-4, **kw))

    def inner_round(reps: int = 10) -> None:
        acc = dict.fromkeys(inner_keys, 0.0)
        for _ in range(reps):
            alpha = agent.alpha
            t0 = time.perf_counter()
            qf1, qf2, q1, td = agent._critic_loss(o, act, batch.rewards, no, batch.discounts, batch.weights,
                                                  alpha, agent._noise(256))
            total = qf1 + qf2
            t1 = time.perf_counter()
            agent.critic_optimizer.zero_grad(set_to_none=True)
            total.backward()
            t2 = time.perf_counter()
            agent.critic_optimizer.step()
            t3 = time.perf_counter()
            actor_loss, log_prob = agent._actor_loss(o, alpha, agent._noise(256))
            t4 = time.perf_counter()
            agent.actor_optimizer.zero_grad(set_to_none=True)
            params = [p for p in agent.actor.parameters() if p.requires_grad]
            actor_loss.backward(inputs=params)
            t5 = time.perf_counter()
            agent.actor_optimizer.step()
            t6 = time.perf_counter()
            al = temperature_loss(agent.log_alpha, log_prob.detach(), agent.target_entropy)
            agent.alpha_optimizer.zero_grad(set_to_none=True)
            al.backward()
            agent.alpha_optimizer.step()
            t7 = time.perf_counter()
            with torch.no_grad():
                for tp, sp in zip(tgt_params, src_params):
                    tp.lerp_(sp, 0.005)
            t8 = time.perf_counter()
            with torch.no_grad():
                torch._foreach_lerp_(tgt_params, src_params, 0.005)
            t9 = time.perf_counter()
            {"qf1_loss": qf1.detach(), "qf2_loss": qf2.detach(), "q_values": q1.mean(), "alpha": agent.alpha,
             "td_abs": td}
            t10 = time.perf_counter()
            for k, dt in zip(inner_keys, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5, t7 - t6, t8 - t7,
                                          t9 - t8, t10 - t9)):
                acc[k] += dt
            for k, opt in zip(alt_keys, alt_opts):
                ta = time.perf_counter()
                opt.step()
                acc[k] += time.perf_counter() - ta
        for k, v in acc.items():
            inner[k].append(v / reps)

    ours_round()
    sb3_round()
    inner_round(2)
    for k in (*ours_t.values(), *sb3_t.values(), *inner.values()):
        k.clear()
    for r in range(args.breakdown_rounds):
        for f in ((ours_round, sb3_round, inner_round) if r % 2 == 0 else (sb3_round, inner_round, ours_round)):
            f()
    sched.close()
    env.close()
    log.close()
    shutil.rmtree(tmp, ignore_errors=True)

    print(f"### Per-piece time per env step, in-process, {args.breakdown_rounds} interleaved rounds of {n} env steps "
          f"(medians; ours {'with' if args.breakdown_compile else 'without'} --sac.compile; "
          f"one gradient step per env step; threads {torch.get_num_threads()}; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')})")
    print()
    print("| piece (per env step) | ours ms | SB3 ms | ours / SB3 | ours per round | SB3 per round |")
    print("|---|---|---|---|---|---|")
    for k in keys:
        o_, s_ = statistics.median(ours_t[k]) * 1e3, statistics.median(sb3_t[k]) * 1e3
        print(f"| {k} | {o_:.3f} | {s_:.3f} | {o_ / s_:.2f} | {', '.join(f'{x * 1e3:.2f}' for x in ours_t[k])} | "
              f"{', '.join(f'{x * 1e3:.2f}' for x in sb3_t[k])} |")
    tot_o = [x for x in ours_t["total/env step"]]
    tot_s = [x for x in sb3_t["total/env step"]]
    print()
    print("SB3's 'update' is its whole `train(1)` (its own replay sample included, so SB3's total subtracts the "
          "separately timed sample once). Per-round ratio SB3/ours of total time per env step (= ours' speed-up): "
          + ", ".join(f"{s / o:.2f}" for o, s in zip(tot_o, tot_s)))
    print()
    kind = ("fused" if agent.critic_optimizer.defaults.get("fused") else
            "foreach" if agent.critic_optimizer.defaults.get("foreach") else "per-tensor loop (PyTorch's CPU default)")
    print(f"Inside ours' gradient step (eager, pieces timed separately, same math as SAC.update; "
          f"ours' Adam: {kind}):")
    print()
    print("| piece of one update | ms (median) | share of the pieces | per round |")
    print("|---|---|---|---|")
    extra = ("Polyak (torch._foreach_lerp_)", *alt_keys)  # alternatives, not part of the update
    tot = sum(statistics.median(inner[k]) for k in inner_keys if k not in extra)
    for k in inner_keys:
        v = inner[k]
        share = "—" if k in extra else f"{statistics.median(v) / tot:.0%}"
        print(f"| {k} | {statistics.median(v) * 1e3:.3f} | {share} | {', '.join(f'{x * 1e3:.2f}' for x in v)} |")
