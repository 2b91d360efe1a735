"""Evaluation on every task: the agent's greedy policy, and a uniformly random one.

The `Evaluator` owns separate evaluation environments — `episodes` copies per task
(`envs.eval_envs`: host envs in a `gymnasium` vector env, or one batched game on the device
for MinAtar tasks), created on first use, never the training envs — and runs all copies of a
task at once, one batched forward of the policy per step, each copy's first episode counted
(capped at `max_steps` steps). Returns are summed on the device; where reading the device is
not free (an accelerator) the loop asks whether every copy is done only every
`CHECK_EVERY_OFF_HOST` (64) steps, so an evaluation on MinAtar waits for the device once per
64 steps and once at its end. Episode seeds come from a counter in a range apart
from the training seeds; the counter is in `state_dict`, so a resumed run evaluates on the
seeds an uninterrupted run would. The random baselines (mean return of a uniform policy
over the task's valid actions, or uniform in [-1, 1]^A) are measured once per task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

_EVAL_SEED_OFFSET = 1_000_003
CHECK_EVERY_OFF_HOST = 64
"""Steps between two reads of "is every copy done" where reads are not free."""

Policy = Callable[[torch.Tensor], torch.Tensor]


class Evaluator:
    """Batched evaluation episodes per task.

    Args:
        make_envs: `(task, n) -> EvalEnvs` (`envs.eval_envs`): n copies of task `task` with the
            schedule's observation layout (next-step auto-reset), tensors in and out.
        num_tasks: tasks of the schedule.
        action_masks: (tasks, actions) bool tensor for discrete tasks, None for continuous ones.
        action_dim: action dimension for continuous tasks.
        episodes: episodes per evaluation of a task (0: no evaluation).
        random_episodes: episodes of the random policy per task (0: no baseline).
        max_steps: cap on an evaluation episode's steps.
        epsilon: probability of a uniformly random valid action in evaluation (discrete tasks).
        seed: the run's seed.
    """

    def __init__(self, make_envs: Callable[[int, int], Any], num_tasks: int,
                 action_masks: torch.Tensor | None, action_dim: int,
                 episodes: int, random_episodes: int, max_steps: int, epsilon: float = 0.0, seed: int = 0):
        self.make_envs = make_envs
        self.num_tasks = num_tasks
        self.action_masks = action_masks
        self.action_dim = action_dim
        self.episodes = episodes
        self.random_episodes = random_episodes
        self.max_steps = max_steps
        self.epsilon = epsilon
        self.seed = seed
        self.episodes_done = 0  # seed counter
        self._envs: dict[tuple[int, int], Any] = {}
        self._rng = torch.Generator().manual_seed(seed + _EVAL_SEED_OFFSET)

    @property
    def enabled(self) -> bool:
        return self.episodes > 0

    # --- episodes ------------------------------------------------------------------------------

    def _env(self, task: int, n: int) -> Any:
        key = (task, n)
        if key not in self._envs:
            self._envs[key] = self.make_envs(task, n)
        return self._envs[key]

    def run_episodes(self, task: int, n: int, policy: Policy) -> list[float]:
        """Returns of the first episode of each of `n` copies of task `task` under `policy`."""
        envs = self._env(task, n)
        base = self.seed + _EVAL_SEED_OFFSET + self.episodes_done
        self.episodes_done += n
        obs = envs.reset(base)
        totals = torch.zeros(n, dtype=torch.float64, device=obs.device)
        running = torch.ones(n, dtype=torch.bool, device=obs.device)
        check_every = 1 if envs.reads_are_free else CHECK_EVERY_OFF_HOST
        for t in range(1, self.max_steps + 1):
            obs, rewards, done = envs.step(policy(obs))
            totals += torch.where(running, rewards.to(totals.dtype), 0.0)
            running &= ~done
            if t % check_every == 0 and not bool(running.any()):
                break
        return totals.tolist()

    def _random_valid(self, task: int, n: int) -> torch.Tensor:
        probs = self.action_masks[task].float().cpu().expand(n, -1)
        return torch.multinomial(probs, 1, generator=self._rng).squeeze(1)

    def greedy_policy(self, agent: Any, task: int) -> Policy:
        """The agent's greedy actions; with `epsilon` > 0 (discrete), a random valid action instead
        with that probability."""
        def policy(obs: torch.Tensor) -> torch.Tensor:
            actions = agent.greedy(obs, task)
            if self.epsilon > 0 and self.action_masks is not None:
                n = obs.shape[0]
                explore = torch.rand(n, generator=self._rng) < self.epsilon  # drawn on the host, copied over
                actions = torch.where(explore.to(actions.device), self._random_valid(task, n).to(actions.device),
                                      actions)
            return actions
        return policy

    def random_policy(self, task: int) -> Policy:
        def policy(obs: torch.Tensor) -> torch.Tensor:
            n = obs.shape[0]
            if self.action_masks is not None:
                return self._random_valid(task, n)
            return torch.rand(n, self.action_dim, generator=self._rng) * 2 - 1
        return policy

    # --- what the loop calls -----------------------------------------------------------------

    def evaluate(self, agent: Any, task: int) -> float:
        """Mean greedy return of `episodes` episodes of task `task`."""
        returns = self.run_episodes(task, self.episodes, self.greedy_policy(agent, task))
        return float(np.mean(returns))

    def evaluate_all(self, agent: Any) -> list[float]:
        """Mean greedy return of every task, in schedule order."""
        return [self.evaluate(agent, t) for t in range(self.num_tasks)]

    def random_baselines(self) -> list[float | None]:
        """A uniformly random policy's mean return per task (None when `random_episodes` is 0)."""
        if not self.random_episodes:
            return [None] * self.num_tasks
        return [float(np.mean(self.run_episodes(t, self.random_episodes, self.random_policy(t))))
                for t in range(self.num_tasks)]

    # --- state -----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"episodes_done": self.episodes_done, "rng": self._rng.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.episodes_done = int(state["episodes_done"])
        self._rng.set_state(state["rng"])

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()
