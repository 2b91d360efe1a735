"""Evaluation episodes on a task: the agent's greedy policy, or a uniformly random one.

Each task gets one separate single (non-vector) environment with the schedule's layout
(same padding, same Atari settings), created on first use and reused.
Its seeds are drawn from a range apart from the training environments' seeds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

_EVAL_SEED_OFFSET = 1_000_003


def _eval_env(comp: Any, task: int):
    cache = comp.eval_envs
    if task not in cache:
        cache[task] = comp.schedule.make_eval_env(task)
    return cache[task]


def _run_episodes(comp: Any, task: int, episodes: int, policy) -> list[float]:
    env = _eval_env(comp, task)
    returns = []
    counter = comp.eval_episodes_done
    for i in range(episodes):
        obs, _ = env.reset(seed=comp.cfg.seed + _EVAL_SEED_OFFSET + counter + i)
        total, steps, done = 0.0, 0, False
        while not done and steps < comp.cfg.eval.max_steps:
            obs_t = torch.as_tensor(np.asarray(obs), device=comp.device).unsqueeze(0)
            action = policy(obs_t)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            steps += 1
            done = terminated or truncated
        returns.append(total)
    comp.eval_episodes_done = counter + episodes
    return returns


def evaluate_policy(comp: Any, task: int) -> list[float]:
    """Returns of `cfg.eval.episodes` episodes of the agent's evaluation policy on `task`."""
    agent, cfg = comp.agent, comp.cfg

    def policy(obs: torch.Tensor):
        if cfg.agent == "dqn":
            return int(agent.act(obs, task, cfg.eval.epsilon)[0])
        return agent.act(obs, task, explore=False)[0].cpu().numpy()

    return _run_episodes(comp, task, cfg.eval.episodes, policy)


def evaluate_random(comp: Any, task: int, episodes: int) -> float:
    """Mean return of a uniformly random policy over the task's valid actions."""
    rng = np.random.default_rng(comp.cfg.seed + task)
    schedule = comp.schedule

    def policy(obs: torch.Tensor):
        if schedule.discrete:
            valid = np.flatnonzero(schedule.action_masks[task].cpu().numpy())
            return int(rng.choice(valid))
        return rng.uniform(-1.0, 1.0, size=schedule.action_dim).astype(np.float32)

    returns = _run_episodes(comp, task, episodes, policy)
    return float(np.mean(returns))
