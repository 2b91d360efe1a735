"""Each agent's hyper-parameter checks at their boundaries: the last valid value passes, the
first invalid one is refused in one line naming the option, its valid range and the value;
the loop numbers and the replay options an agent derives from its config."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from agents.dqn import DQN, DQNConfig
from agents.sac import SAC, SACConfig

# field -> (valid boundary values, invalid values, the range as the message gives it)
DQN_CHECKS = {
    "lr": ([1e-12], [0.0, -1.0], "> 0"), "batch_size": ([1], [0], "> 0"), "gamma": ([0.0, 1.0], [-0.01, 1.01], "in [0, 1]"),
    "train_freq": ([1], [0], "> 0"), "gradient_steps": ([1], [0], "> 0"), "learning_starts": ([0], [-1], ">= 0"),
    "target_update_interval": ([1], [0], "> 0"), "exploration_fraction": ([1.0, 1e-9], [0.0, 1.01], "in (0, 1]"),
    "epsilon_start": ([0.0, 1.0], [-0.01, 1.01], "in [0, 1]"), "epsilon_end": ([0.0, 1.0], [-0.01, 1.01], "in [0, 1]"),
    "n_step": ([1], [0], ">= 1"),
}
SAC_CHECKS = {
    "lr_actor": ([1e-12], [0.0], "> 0"), "lr_critic": ([1e-12], [0.0], "> 0"), "lr_alpha": ([1e-12], [0.0], "> 0"),
    "batch_size": ([1], [0], "> 0"), "gamma": ([0.0, 1.0], [-0.01, 1.01], "in [0, 1]"), "tau": ([1.0, 1e-9], [0.0, 1.01], "in (0, 1]"),
    "train_freq": ([1], [0], "> 0"), "gradient_steps": ([1], [0], "> 0"), "learning_starts": ([0], [-1], ">= 0"),
    "policy_frequency": ([1], [0], "> 0"), "target_network_frequency": ([1], [0], "> 0"),
    "alpha_init": ([1e-9], [0.0], "> 0"), "n_step": ([1], [0], ">= 1"),
    "hidden": ([(1,), (3, 1)], [(), (4, 0)], "a non-empty list of positive widths"),
    "activation": (["tanh", "crelu"], ["relu6"], "one of relu, leaky_relu, tanh, gelu, adalin, crelu"),
    "norm": ([None, "layer"], ["batch"], "one of none, layer"),
}


def _cases(agent, checks):
    for field, (good, bad, valid) in checks.items():
        for v in good:
            yield pytest.param(agent, field, v, None, id=f"{agent}-{field}-ok-{v}")
        for v in bad:
            yield pytest.param(agent, field, v, valid, id=f"{agent}-{field}-bad-{v}")


@pytest.mark.parametrize(("agent", "field", "value", "valid"),
                         [*_cases("dqn", DQN_CHECKS), *_cases("sac", SAC_CHECKS)])
def test_validate_at_the_boundaries(agent, field, value, valid):
    cfg = dataclasses.replace(DQNConfig() if agent == "dqn" else SACConfig(), **{field: value})
    if valid is None:
        cfg.validate()
        return
    with pytest.raises(ValueError) as info:
        cfg.validate()
    assert str(info.value) == f"--{agent}.{field.replace('_', '-')} must be {valid}, got {value}"


def test_loop_numbers_and_replay_options():
    masks = torch.ones(1, 2, dtype=torch.bool)
    dqn = DQN(DQNConfig(hidden=(4,), batch_size=7, learning_starts=13, train_freq=4, gradient_steps=2, n_step=3,
                        gamma=0.9, reward_clip=1.0), (3,), 2, masks)
    assert (dqn.batch_size, dqn.learning_starts, dqn.updates_per_env_step) == (7, 13, 0.5)
    assert dqn.cfg.replay_options() == {"n_step": 3, "gamma": 0.9, "reward_clip": 1.0}
    assert not any(p.requires_grad for p in dqn.q_target.parameters())
    assert dqn.optimizer.param_groups[0]["eps"] == dqn.cfg.adam_eps == 1e-8
    sac = SAC(SACConfig(hidden=(4,), batch_size=5, learning_starts=11, train_freq=2, gradient_steps=3, n_step=2,
                        gamma=0.8), (3,), 2)
    assert (sac.batch_size, sac.learning_starts, sac.updates_per_env_step) == (5, 11, 1.5)
    assert sac.cfg.replay_options() == {"n_step": 2, "gamma": 0.8, "reward_clip": None}
    assert not any(p.requires_grad for p in sac.critic_target.parameters())
    assert sac.target_entropy == -2.0
    assert SAC(SACConfig(hidden=(4,), target_entropy=-0.5), (3,), 2).target_entropy == -0.5
    lrs = [o.param_groups[0]["lr"] for o in (sac.actor_optimizer, sac.critic_optimizer, sac.alpha_optimizer)]
    cfg = SACConfig(hidden=(4,), lr_actor=1e-3, lr_critic=2e-3, lr_alpha=3e-3)
    s2 = SAC(cfg, (3,), 2)
    assert lrs == [3e-4] * 3
    assert [o.param_groups[0]["lr"] for o in (s2.actor_optimizer, s2.critic_optimizer, s2.alpha_optimizer)] == \
        [1e-3, 2e-3, 3e-3]
    # the batch's observations are what the networks' monitors and interventions see
    batch = type("B", (), {"obs": torch.ones(2, 3), "actions": torch.zeros(2, 2)})()
    assert dqn.learnables["q"].inputs(batch) is batch.obs
    assert sac.learnables["actor"].inputs(batch) is batch.obs
    assert sac.learnables["critic"].inputs(batch) == (batch.obs, batch.actions)
