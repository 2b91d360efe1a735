"""DQN: the Double-DQN target and loss on a hand-built batch, target updates, masking, ε."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from agents.dqn import DQN, DQNConfig, linear_epsilon


def linear_dqn(double: bool = True, **overrides) -> DQN:
    """A DQN whose Q-network is one linear layer (no hidden layers): Q(s) = W s + b."""
    masks = torch.tensor([[True, True, True], [False, True, True]])
    cfg = DQNConfig(hidden=(), double=double, lr=0.1, max_grad_norm=0.0, **overrides)
    agent = DQN(cfg, obs_shape=(2,), num_actions=3, action_masks=masks)
    with torch.no_grad():
        agent.q.head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        agent.q.head.bias.zero_()
        agent.q_target.head.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 2.0], [0.0, 0.0]]))
        agent.q_target.head.bias.copy_(torch.tensor([0.0, 0.0, 0.5]))
    return agent


def batch(tasks=(0, 1), discounts=(0.99, 0.99)):
    return SimpleNamespace(
        obs=torch.tensor([[0.5, 0.5], [1.0, 0.0]]),
        actions=torch.tensor([0, 1]),
        rewards=torch.tensor([1.0, 1.0]),
        next_obs=torch.tensor([[1.0, 2.0], [1.0, 2.0]]),
        discounts=torch.tensor(discounts),
        weights=torch.tensor([1.0, 1.0]),
        tasks=torch.tensor(tasks),
        indices=torch.tensor([0, 1]),
    )


def huber(x: float) -> float:
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


def test_double_dqn_target_and_loss_by_hand():
    agent = linear_dqn(double=True)
    b = batch()
    # online Q(s') = [1, 2, 3]: argmax 2 for task 0; task 1 masks action 0 -> still 2
    # target Q(s') = [2, 4, 0.5] -> values 0.5 and 0.5
    y = [1 + 0.99 * 0.5, 1 + 0.99 * 0.5]
    q = [0.5, 0.0]  # Q(s0, a=0) = 0.5 ; Q(s1, a=1) = 0.0
    loss, td, _ = agent._loss(b.obs, b.actions, b.rewards, b.next_obs, b.discounts, b.weights,
                              agent.action_masks[b.tasks])
    assert td.tolist() == pytest.approx([q[0] - y[0], q[1] - y[1]])
    assert loss.item() == pytest.approx((huber(q[0] - y[0]) + huber(q[1] - y[1])) / 2)


def test_vanilla_target_uses_masked_max_of_target_network():
    agent = linear_dqn(double=False)
    b = batch()
    _, td, _ = agent._loss(b.obs, b.actions, b.rewards, b.next_obs, b.discounts, b.weights,
                           agent.action_masks[b.tasks])
    # max target Q(s') = 4 (action 1) for both tasks
    assert td.tolist() == pytest.approx([0.5 - (1 + 0.99 * 4), 0.0 - (1 + 0.99 * 4)])


def test_double_dqn_argmax_respects_task_mask():
    agent = linear_dqn(double=True)
    with torch.no_grad():  # make action 0 the online argmax at s'
        agent.q.head.weight.copy_(torch.tensor([[10.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    b = batch()
    _, td, _ = agent._loss(b.obs, b.actions, b.rewards, b.next_obs, b.discounts, b.weights,
                           agent.action_masks[b.tasks])
    # task 0 may take action 0 -> target Q = 2; task 1 may not -> argmax 2 -> 0.5
    assert td.tolist() == pytest.approx([5.0 - (1 + 0.99 * 2.0), 0.0 - (1 + 0.99 * 0.5)])


def test_terminal_discount_zero_does_not_bootstrap_and_weights_scale_loss():
    agent = linear_dqn()
    b = batch(discounts=(0.0, 0.0))
    b.weights = torch.tensor([2.0, 0.0])
    loss, td, _ = agent._loss(b.obs, b.actions, b.rewards, b.next_obs, b.discounts, b.weights,
                              agent.action_masks[b.tasks])
    assert td.tolist() == pytest.approx([0.5 - 1.0, 0.0 - 1.0])
    assert loss.item() == pytest.approx(2.0 * huber(-0.5) / 2)


def test_update_takes_one_adam_step_on_the_huber_gradient():
    agent = linear_dqn(double=True, target_update_interval=100)
    b = batch()
    w0 = agent.q.head.weight.detach().clone()
    out = agent.update(b)
    # gradient of mean Huber wrt W row a: sum_i dHuber(td_i)/2 * s_i ; Adam's first step moves each
    # entry with a non-zero gradient by lr * sign(grad)
    d0, d1 = 0.5 - 1.495, 0.0 - 1.495
    g = torch.zeros(3, 2)
    g[0] += max(-1.0, min(1.0, d0)) / 2 * b.obs[0]
    g[1] += max(-1.0, min(1.0, d1)) / 2 * b.obs[1]
    expected = w0 - 0.1 * torch.sign(g)
    assert torch.allclose(agent.q.head.weight, expected, atol=1e-6)
    assert out["td_loss"].item() == pytest.approx((huber(d0) + huber(d1)) / 2)


def test_target_network_hard_update_copies_exactly():
    agent = linear_dqn(target_update_interval=3)
    b = batch()
    for i in range(1, 4):
        agent.update(b)
        same = all(torch.equal(p, t) for p, t in zip(agent.q.parameters(), agent.q_target.parameters()))
        assert same == (i == 3), f"after {i} updates the target should {'' if i == 3 else 'not '}equal online"


def test_act_never_picks_a_masked_action():
    agent = linear_dqn()
    obs = torch.randn(500, 2)
    for eps in (0.0, 0.5, 1.0):
        a = agent.epsilon_greedy(obs, task=1, epsilon=eps)
        assert (a != 0).all()
    a = agent.epsilon_greedy(obs, task=0, epsilon=1.0)
    assert set(a.tolist()) == {0, 1, 2}


def test_epsilon_greedy_on_a_cpu_draws_random_actions_only_when_an_env_explores():
    agent = linear_dqn()
    obs = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    start = agent.generator.get_state()
    explore = torch.rand(2, generator=agent.generator) < 1e-9  # the draw epsilon_greedy makes first
    after_one_draw = agent.generator.get_state()
    assert not explore.any()
    agent.generator.set_state(start)
    assert torch.equal(agent.epsilon_greedy(obs, task=0, epsilon=1e-9), agent.greedy(obs, task=0))
    assert torch.equal(agent.generator.get_state(), after_one_draw)  # no random actions were drawn
    agent.generator.set_state(start)
    agent.epsilon_greedy(obs, task=0, epsilon=1.0)
    assert not torch.equal(agent.generator.get_state(), after_one_draw)


def test_act_owns_exploration_random_then_epsilon_schedule_restarting_at_switches():
    cfg = DQNConfig(hidden=(), learning_starts=10, exploration_fraction=0.5, epsilon_start=1.0,
                    epsilon_end=0.0, epsilon_restart=True)
    agent = DQN(cfg, (2,), 3, torch.tensor([[True, True, True], [False, True, True]]), exploration_horizon=100)
    with torch.no_grad():  # greedy action is always 2
        agent.q.head.weight.zero_()
        agent.q.head.bias.copy_(torch.tensor([0.0, 0.0, 1.0]))
    obs = torch.zeros(4000, 2)
    early = agent.act(obs, 1, step=9)  # before learning_starts: uniform over the valid actions 1, 2
    assert set(early.tolist()) == {1, 2} and abs((early == 2).float().mean().item() - 0.5) < 0.05
    # ε = 1 - step/50 from step 0: at 25, ε = 0.5 -> P(greedy) = 0.5 + 0.5/2 over task 1's two actions
    assert agent.epsilon(25) == pytest.approx(0.5)
    assert abs((agent.act(obs, 1, step=25) == 2).float().mean().item() - 0.75) < 0.05
    assert agent.epsilon(60) == 0.0 and (agent.act(obs, 1, step=60) == 2).all()
    agent.on_task_switch(0, step=60)  # the schedule restarts: ε = 1 at the switch
    assert agent.epsilon(60) == 1.0 and agent.epsilon(85) == pytest.approx(0.5)
    assert agent.log_scalars(85) == {"charts/epsilon": pytest.approx(0.5)}
    assert agent.state_dict()["explore_origin"] == 60


def test_linear_epsilon_schedule():
    cfg = DQNConfig(exploration_fraction=0.1, epsilon_start=1.0, epsilon_end=0.01)
    assert linear_epsilon(cfg, 0, 1000) == 1.0
    assert linear_epsilon(cfg, 50, 1000) == pytest.approx(1.0 - 0.5 * 0.99)
    assert linear_epsilon(cfg, 100, 1000) == pytest.approx(0.01)
    assert linear_epsilon(cfg, 10_000, 1000) == pytest.approx(0.01)


def test_bad_hyper_parameter_names_the_option():
    with pytest.raises(ValueError, match=r"--dqn.batch-size must be > 0, got 0"):
        DQNConfig(batch_size=0).validate()


def test_dueling_head_is_value_plus_centred_advantage():
    agent = DQN(DQNConfig(hidden=(), dueling=True), (2,), 3, torch.ones(1, 3, dtype=torch.bool))
    with torch.no_grad():
        agent.q.head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        agent.q.head.bias.zero_()
        agent.q.value.weight.copy_(torch.tensor([[3.0, 0.0]]))
        agent.q.value.bias.fill_(1.0)
    q = agent.q(torch.tensor([[1.0, 2.0]]))
    # A = [1, 2, 3], mean 2; V = 4
    assert q.tolist() == [[3.0, 4.0, 5.0]]
