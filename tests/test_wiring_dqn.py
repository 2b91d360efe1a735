"""DQN wiring checked by value: importance weights that do not sum to the batch size, the
gradient-norm clip with a small `max_grad_norm`, and ε-greedy's measured explore rate."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from agents.dqn import DQN, DQNConfig


def huber(x: float) -> float:
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


def linear_dqn(**overrides) -> DQN:
    """Q(s) = W s + b with W = [[1, 0], [0, 1]], b = 0: Q(s, a) = s_a."""
    cfg = DQNConfig(**{"hidden": (), "lr": 0.1, "max_grad_norm": 0.0, "learning_starts": 0, **overrides})
    agent = DQN(cfg, obs_shape=(2,), num_actions=2, action_masks=torch.ones(1, 2, dtype=torch.bool))
    with torch.no_grad():
        for net in (agent.q, agent.q_target):
            net.head.weight.copy_(torch.eye(2))
            net.head.bias.zero_()
    return agent


def weighted_batch():
    # discount 0: the target is the reward alone; Q(s, a) = s_a
    return SimpleNamespace(
        obs=torch.tensor([[0.5, -1.0], [2.0, 0.0], [0.0, 3.0], [1.0, 1.0]]),
        actions=torch.tensor([0, 0, 1, 1]),
        rewards=torch.tensor([0.0, -0.5, 0.5, 1.25]),
        next_obs=torch.zeros(4, 2), discounts=torch.zeros(4),
        weights=torch.tensor([2.0, 0.0, 0.5, 0.25]),  # sums to 2.75, not 4
        tasks=torch.zeros(4, dtype=torch.long), indices=torch.arange(4),
    )


def test_loss_is_the_weighted_huber_sum_over_the_batch_size_not_over_the_weights():
    agent = linear_dqn()
    b = weighted_batch()
    td = [0.5 - 0.0, 2.0 + 0.5, 3.0 - 0.5, 1.0 - 1.25]  # q − y: two inside, two outside the quadratic zone
    w = b.weights.tolist()
    expected = sum(wi * huber(t) for wi, t in zip(w, td)) / 4
    m = agent.update(b)
    assert m["td_loss"].item() == pytest.approx(expected, rel=1e-6)
    assert sum(w) != 4 and m["td_loss"].item() != pytest.approx(expected * 4 / sum(w), rel=1e-3)
    assert m["td_abs"].tolist() == pytest.approx([abs(t) for t in td])
    # its gradient too: ∂L/∂b_a = Σ_{i: a_i = a} w_i · huber'(td_i) / B, huber' = clamp(td, −1, 1)
    grad_b = [(2.0 * 0.5 + 0.0 * 1.0) / 4, (0.5 * 1.0 + 0.25 * -0.25) / 4]
    assert agent.q.head.bias.grad.tolist() == pytest.approx(grad_b, rel=1e-6)


@pytest.mark.parametrize("max_norm", [0.05, 0.2])
def test_small_max_grad_norm_clips_the_global_gradient_norm(max_norm):
    agent = linear_dqn(max_grad_norm=max_norm)
    twin = copy.deepcopy(agent)
    b = weighted_batch()
    loss, _, _ = twin._loss(b.obs, b.actions, b.rewards, b.next_obs, b.discounts, b.weights,
                            twin.action_masks[b.tasks])
    loss.backward()
    raw = torch.cat([p.grad.flatten() for p in twin.q.parameters()])
    assert raw.norm().item() > 0.5  # above both limits
    agent.update(b)
    clipped = torch.cat([p.grad.flatten() for p in agent.q.parameters()])
    assert clipped.norm().item() == pytest.approx(max_norm, rel=1e-5)
    assert torch.allclose(clipped, raw * (max_norm / raw.norm()), atol=1e-7)


def test_no_clip_when_the_norm_is_below_max_grad_norm():
    agent = linear_dqn(max_grad_norm=100.0)
    twin = linear_dqn(max_grad_norm=0.0)
    b = weighted_batch()
    agent.update(b)
    twin.update(b)
    for p, q in zip(agent.q.parameters(), twin.q.parameters()):
        assert torch.equal(p.grad, q.grad)


@pytest.mark.parametrize("epsilon", [0.1, 0.9])
def test_act_explores_at_rate_epsilon(epsilon):
    # ε-greedy over 2 valid actions: a non-greedy action with probability ε/2
    agent = linear_dqn(epsilon_start=epsilon, epsilon_end=epsilon, learning_starts=10)
    n = 20_000
    obs = torch.tensor([[1.0, 0.0]]).expand(n, 2)  # greedy action 0
    assert agent.greedy(obs[:1], 0).item() == 0
    actions = agent.act(obs, 0, step=10)
    rate = (actions != 0).float().mean().item()
    assert rate == pytest.approx(epsilon / 2, abs=0.015)  # 4+ standard errors of the binomial
    # before learning_starts: uniform over the valid actions whatever ε
    early = (agent.act(obs, 0, step=9) != 0).float().mean().item()
    assert early == pytest.approx(0.5, abs=0.02)


class Penalty:
    """A fake intervention: loss term c·Σ bias (gradient c on every bias entry); records switches."""

    needs_inputs = False

    def __init__(self, bias, c):
        self.bias, self.c, self.switches, self.steps = bias, c, [], 0

    def loss(self):
        return self.c * self.bias.sum()

    def after_step(self, inputs):
        self.steps += 1

    def on_task_switch(self, task):
        self.switches.append(task)

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_update_adds_the_interventions_loss_term_counts_updates_and_reports_metrics():
    agent, plain = linear_dqn(target_update_interval=2), linear_dqn(target_update_interval=2)
    iv = Penalty(agent.q.head.bias, 0.25)
    agent.learnables["q"].interventions.append(iv)
    b = weighted_batch()
    m = agent.update(b)
    plain.update(b)
    assert torch.allclose(agent.q.head.bias.grad, plain.q.head.bias.grad + 0.25)
    assert torch.equal(agent.q.head.weight.grad, plain.q.head.weight.grad)
    assert agent.updates == 1 and iv.steps == 1
    assert set(m) == {"td_loss", "q_values", "td_abs", "q_spread"}
    assert m["q_values"].item() == pytest.approx((0.5 + 2.0 + 3.0 + 1.0) / 4)
    q_all = b.obs  # Q(s, ·) = s before the step
    assert m["q_spread"].item() == pytest.approx(q_all.std(dim=1).mean().item())
    assert not torch.equal(agent.q_target.head.weight, agent.q.head.weight)
    agent.update(b)  # the second update syncs the target (interval 2)
    assert agent.updates == 2 and torch.equal(agent.q_target.head.weight, agent.q.head.weight)
    agent.on_task_switch(3, step=40)
    assert iv.switches == [3]


def test_epsilon_restart_origin_survives_a_checkpoint():
    agent = linear_dqn(epsilon_restart=True, exploration_fraction=1.0, epsilon_start=1.0, epsilon_end=0.0,
                       learning_starts=0)
    agent.exploration_horizon = 100
    agent.on_task_switch(0, step=50)
    assert agent.epsilon(75) == pytest.approx(0.75)
    twin = linear_dqn(epsilon_restart=True, exploration_fraction=1.0, epsilon_start=1.0, epsilon_end=0.0)
    twin.exploration_horizon = 100
    twin.load_state_dict(agent.state_dict())
    assert twin.epsilon(75) == pytest.approx(0.75) and twin.log_scalars(75) == {"charts/epsilon": pytest.approx(0.75)}
    state = agent.state_dict()
    del state["explore_origin"]  # a checkpoint from before the restart was saved: origin 0
    twin.load_state_dict(state)
    assert twin.epsilon(75) == pytest.approx(0.25)


@pytest.mark.parametrize("restart", [False, True])
def test_build_decays_epsilon_over_the_run_or_over_each_visit(restart):
    """`--dqn.epsilon-restart` decays ε over each visit (steps_per_visit), else over the whole run
    (total_steps); continuous actions are refused naming the task."""
    from agents.dqn import build

    schedule = SimpleNamespace(discrete=True, steps_per_visit=100, total_steps=1000, obs_shape=(2,), num_actions=2,
                               action_masks=torch.ones(1, 2, dtype=torch.bool))
    cfg = DQNConfig(hidden=(4,), exploration_fraction=0.5, epsilon_start=1.0, epsilon_end=0.0, epsilon_restart=restart)
    agent = build(cfg, schedule, torch.device("cpu"), seed=3)
    assert agent.exploration_horizon == (100 if restart else 1000)
    assert agent.epsilon(25) == pytest.approx(0.5 if restart else 0.95)
    twin = build(cfg, schedule, torch.device("cpu"), seed=3)
    assert torch.equal(agent.generator.get_state(), twin.generator.get_state())
    other = build(cfg, schedule, torch.device("cpu"), seed=4)
    assert not torch.equal(agent.generator.get_state(), other.generator.get_state())
    continuous = SimpleNamespace(discrete=False, tasks=[SimpleNamespace(id="Pendulum-v1")])
    with pytest.raises(ValueError) as err:
        build(cfg, continuous, torch.device("cpu"), seed=0)
    assert str(err.value) == "--agent dqn needs discrete actions; Pendulum-v1 is continuous: use --agent sac"


def test_dqn_defaults_seed_0_and_a_one_step_horizon():
    cfg = DQNConfig(hidden=(4,), epsilon_start=1.0, epsilon_end=0.1)
    agent = DQN(cfg, obs_shape=(2,), num_actions=2, action_masks=torch.ones(1, 2, dtype=torch.bool))
    assert agent.exploration_horizon == 1 and agent.epsilon(1) == pytest.approx(0.1)
    seeded = DQN(cfg, obs_shape=(2,), num_actions=2, action_masks=torch.ones(1, 2, dtype=torch.bool), seed=0)
    assert torch.equal(agent.generator.get_state(), seeded.generator.get_state())


def test_config_options_reach_the_network_and_the_optimizer():
    from agents.networks import ImpalaCNN, MinAtarCNN, MLPEncoder

    masks = torch.ones(1, 3, dtype=torch.bool)
    impala = DQN(DQNConfig(encoder="impala_cnn", adam_eps=1e-4, lr=3e-3), (3, 16, 16), 3, masks)
    assert isinstance(impala.q.encoder, ImpalaCNN) and impala.image
    assert impala.optimizer.param_groups[0]["eps"] == 1e-4 and impala.optimizer.param_groups[0]["lr"] == 3e-3
    auto = DQN(DQNConfig(), (4, 10, 10), 3, masks)
    assert isinstance(auto.q.encoder, MinAtarCNN) and auto.image
    flat = DQN(DQNConfig(encoder="mlp", hidden=(5,)), (2, 10, 10), 3, masks)
    assert isinstance(flat.q.encoder, MLPEncoder) and flat.q.head.out_features == 3
    vector = DQN(DQNConfig(hidden=(5,)), (4,), 3, masks)
    assert not vector.image and isinstance(vector.q.encoder, MLPEncoder)


def test_compiled_gradient_is_wired_to_the_online_network_and_reads_the_target():
    agent = DQN(DQNConfig(hidden=(8,), compile=True), (4,), 2, torch.ones(1, 2, dtype=torch.bool))
    assert agent._q_grad.watch == [agent.q, agent.q_target]
    assert agent._q_grad._objective.fn == agent._objective and agent._q_grad.compile
    assert DQN(DQNConfig(hidden=(8,)), (4,), 2, torch.ones(1, 2, dtype=torch.bool))._q_grad is None
