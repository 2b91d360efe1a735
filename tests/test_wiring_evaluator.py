"""The Evaluator against a fake vector env: first-episode returns per copy, the seed counter,
ε in evaluation, and the random policies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from envs.eval_envs import HostEvalEnvs
from runner.evaluator import _EVAL_SEED_OFFSET, Evaluator


class FakeVectorEnv:
    """Copy i pays 1 a step (2 for action 1) and ends its episode at step lengths[i]; it then
    auto-resets and keeps paying (which must not count)."""

    def __init__(self, lengths, truncate=False):
        self.lengths, self.truncate, self.seeds, self.actions = np.array(lengths), truncate, [], []
        self.t = np.zeros(len(lengths), dtype=int)

    def reset(self, seed=None):
        self.seeds.append(list(seed))
        self.t[:] = 0
        return np.zeros((len(self.lengths), 3), dtype=np.float32), {}

    def step(self, actions):
        self.actions.append(np.asarray(actions).copy())
        self.t += 1
        done = self.t % self.lengths == 0
        rewards = 1.0 + (np.asarray(actions).reshape(len(self.lengths), -1)[:, 0] == 1)
        term, trunc = (done, np.zeros_like(done)) if not self.truncate else (np.zeros_like(done), done)
        return np.zeros((len(self.lengths), 3), dtype=np.float32), rewards, term, trunc, {}

    def close(self):
        pass


def host(env, n):
    return HostEvalEnvs(env, n, "cpu")


class Greedy:
    def greedy(self, obs, task):
        return torch.zeros(obs.shape[0], dtype=torch.long)


def evaluator(envs, masks=torch.tensor([[True, True], [True, False]]), **kw):
    args = dict(episodes=3, random_episodes=2, max_steps=50, seed=7)
    args.update(kw)
    return Evaluator(lambda task, n: host(envs.setdefault((task, n), FakeVectorEnv([2, 5, 3][:n])), n), 2, masks, 0, **args)


@pytest.mark.parametrize("truncate", [False, True])
def test_first_episode_returns_and_seed_counter(truncate):
    envs = {}
    ev = Evaluator(lambda task, n: host(envs.setdefault((task, n), FakeVectorEnv([2, 5, 3][:n], truncate)), n), 2,
                   torch.ones(2, 2, dtype=torch.bool), 0, episodes=3, random_episodes=2,
                   max_steps=50, seed=7)
    assert ev.run_episodes(0, 3, lambda obs: torch.zeros(3, dtype=torch.long)) == [2.0, 5.0, 3.0]
    assert ev.evaluate(Greedy(), 1) == pytest.approx(10 / 3)
    base = 7 + _EVAL_SEED_OFFSET
    assert envs[(0, 3)].seeds == [[base, base + 1, base + 2]]
    assert envs[(1, 3)].seeds == [[base + 3, base + 4, base + 5]]
    assert ev.state_dict()["episodes_done"] == 6
    assert ev.run_episodes(0, 3, lambda obs: torch.zeros(3, dtype=torch.long)) == [2.0, 5.0, 3.0]
    assert len(envs[(0, 3)].actions) == 5 + 5  # stops once every copy is done
    capped = Evaluator(lambda task, n: host(FakeVectorEnv([2, 5, 3][:n]), n), 1, None, 1, episodes=3,
                       random_episodes=0, max_steps=4)
    assert capped.run_episodes(0, 3, lambda obs: torch.zeros(3, 1)) == [2.0, 4.0, 3.0]
    assert capped.random_baselines() == [None]


def test_epsilon_in_evaluation_takes_random_valid_actions_at_its_rate():
    envs = {}
    ev = evaluator(envs, epsilon=0.5, max_steps=1)
    pol = ev.greedy_policy(type("A", (), {"greedy": lambda self, obs, task: torch.zeros(obs.shape[0], dtype=torch.long)})(), 0)
    acts = pol(torch.zeros(4000, 3))
    assert (acts == 1).float().mean().item() == pytest.approx(0.25, abs=0.03)  # ε · P(random = 1)
    only_zero = ev.greedy_policy(type("A", (), {"greedy": lambda self, obs, task: torch.ones(obs.shape[0],
                                                                                             dtype=torch.long)})(), 1)
    assert set(only_zero(torch.zeros(2000, 3)).tolist()) == {0, 1}  # task 1: random picks 0 only
    no_eps = evaluator({}, epsilon=0.0)
    greedy = no_eps.greedy_policy(Greedy(), 0)(torch.zeros(100, 3))
    assert greedy.tolist() == [0] * 100


def test_random_policies_and_baselines():
    envs = {}
    ev = evaluator(envs)
    acts = ev.random_policy(1)(torch.zeros(500, 3))
    assert set(acts.tolist()) == {0}  # task 1 has one valid action
    assert set(ev.random_policy(0)(torch.zeros(500, 3)).tolist()) == {0, 1}
    cont = Evaluator(lambda t, n: None, 1, None, 3, episodes=1, random_episodes=1, max_steps=1, seed=1)
    a = cont.random_policy(0)(torch.zeros(1000, 5))
    assert a.shape == (1000, 3) and a.min() >= -1 and a.max() <= 1 and a.min() < -0.9 and a.max() > 0.9
    # same seed, same random actions (the evaluator's own generator, seeded apart from training)
    twin = Evaluator(lambda t, n: None, 1, None, 3, episodes=1, random_episodes=1, max_steps=1, seed=1)
    torch.manual_seed(123)
    assert torch.equal(twin.random_policy(0)(torch.zeros(1000, 5)), a)
    baselines = ev.random_baselines()
    assert len(baselines) == 2 and baselines[1] == pytest.approx((2 + 5) / 2)  # action 0 only: 1 a step


def test_evaluation_draws_only_from_its_own_generator():
    """ε-exploration and the random baselines draw from the evaluator's generator, so evaluating
    leaves the global stream training draws from where it was; defaults: ε = 0, seed 0."""
    ev = evaluator({}, epsilon=0.5)
    torch.manual_seed(11)
    before = torch.get_rng_state()
    ev.evaluate(Greedy(), 0)
    ev.random_baselines()
    ev.random_policy(0)(torch.zeros(50, 3))
    assert torch.equal(torch.get_rng_state(), before)
    default = Evaluator(lambda t, n: host(FakeVectorEnv([2] * n), n), 1, None, 1, episodes=1, random_episodes=0,
                        max_steps=3)
    assert default.epsilon == 0.0
    default.run_episodes(0, 2, lambda obs: torch.zeros(2, 1))
    assert default._env(0, 2).env.seeds == [[_EVAL_SEED_OFFSET, _EVAL_SEED_OFFSET + 1]]


def test_epsilon_leaves_continuous_actions_to_the_policy():
    ev = Evaluator(lambda t, n: None, 1, None, 2, episodes=1, random_episodes=0, max_steps=1, epsilon=0.5)
    mean = type("A", (), {"greedy": lambda self, obs, task: torch.full((obs.shape[0], 2), 0.25)})()
    assert torch.equal(ev.greedy_policy(mean, 0)(torch.zeros(50, 3)), torch.full((50, 2), 0.25))
