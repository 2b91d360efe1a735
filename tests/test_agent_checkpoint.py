"""An agent's checkpoint restores networks changed by an intervention (plasticity injection)."""

from __future__ import annotations

import copy

import torch

from agents.dqn import DQN, DQNConfig
from plasticity.injection import PlasticityInjection


def make_agent() -> DQN:
    agent = DQN(DQNConfig(hidden=(16,)), obs_shape=(4,), num_actions=2,
                action_masks=torch.ones(1, 2, dtype=torch.bool))
    q = agent.learnables["q"]
    q.interventions.append(PlasticityInjection(q.module, q.optimizer, targets=q.targets))
    return agent


def test_injected_agent_state_loads_into_a_fresh_agent():
    torch.manual_seed(0)
    agent = make_agent()
    obs = torch.randn(8, 4)
    batch = type("B", (), dict(obs=obs, actions=torch.zeros(8, dtype=torch.long), rewards=torch.ones(8),
                               next_obs=obs, discounts=torch.full((8,), 0.99), weights=torch.ones(8),
                               tasks=torch.zeros(8, dtype=torch.long)))()
    agent.update(batch)
    agent.on_task_switch(1, step=8)  # injects a new head
    agent.update(batch)
    state = copy.deepcopy(agent.state_dict())  # as torch.save / torch.load would: no shared tensors
    torch.manual_seed(123)
    fresh = make_agent()
    fresh.load_state_dict(state)
    assert type(fresh.q.head).__name__ == type(agent.q.head).__name__ == "InjectedHead"
    assert torch.equal(fresh.q(obs), agent.q(obs))
    assert torch.equal(fresh.q_target(obs), agent.q_target(obs))
    # and training continues identically
    agent.update(batch)
    fresh.update(batch)
    assert torch.equal(fresh.q(obs), agent.q(obs))
