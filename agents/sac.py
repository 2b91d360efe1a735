"""SAC: Soft Actor-Critic with twin Q networks and automatic entropy temperature.

The learner (Haarnoja et al., 2018, "Soft Actor-Critic Algorithms and Applications"), one
`update(batch)` being one critic step, an actor + temperature step every
`policy_frequency` critic steps, and a Polyak target step every `target_network_frequency`:

    policy      u = μ(s) + σ(s)·ε,  ε ~ N(0, I),  a = tanh(u) ∈ [-1, 1]^A
                log σ clamped to [LOG_STD_MIN, LOG_STD_MAX] = [-20, 2]  (SB3 / the authors' code)
    log-prob    log π(a|s) = Σ_j [ log N(u_j; μ_j, σ_j) − log(1 − tanh(u_j)²) ]
                with the stable identity  log(1 − tanh(u)²) = 2·(log 2 − u − softplus(−2u))
                (exact, no ε fudge, finite even where tanh(u) rounds to ±1)
    critic      a' ~ π(·|s'),  y = R + discount · (min(Q1', Q2')(s', a') − α·log π(a'|s'))
                (R, discount from replay: n-step sum and γ^m, 0 at termination)
                L_Qk = mean_i w_i · (Qk(s_i, a_i) − y_i)²,  k = 1, 2;  the critic minimises L_Q1 + L_Q2
    actor       ã ~ π(·|s) (reparameterised),  L_π = mean_i [ α·log π(ã_i|s_i) − min(Q1, Q2)(s_i, ã_i) ]
    temperature α = exp(log α),  H̄ = target_entropy (default −|A|)
                L_α = −mean_i [ log α · (log π(ã_i|s_i) + H̄) ]   (the log-α form of SB3;
                CleanRL multiplies by α instead: same sign of the step, a different scale)
                ∂L_α/∂log α = −mean_i (log π(ã_i|s_i) + H̄), reusing the actor step's log π
    targets     θ' ← τ·θ + (1 − τ)·θ'

Importance weights w (prioritized replay) multiply only the critic loss. The actor's
backward accumulates gradients into the actor's parameters only, so a monitor reading the
critic's gradients sees the critic loss alone. Delayed policy updates are TD3-style: one
actor step every `policy_frequency` critic steps (CleanRL instead takes `policy_frequency`
actor steps at once); the default 1 (SB3) updates the actor after every critic step.
Actions live in [-1, 1]^A; the environment layer rescales them to each task's bounds.
Networks are built from `seed` alone (the global RNG is left untouched), and all sampling
noise comes from the agent's own generator, so a seed fixes the run and a checkpoint
restores it exactly.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from agents.base import Agent, Learnable, after_step, make_adam
from agents.compile import CompiledGrad, lerp_, optimizer_step
from agents.compile.gradients import loss_gradients
from agents.networks import ACTIVATIONS, NORMS, MLPEncoder, ScalarHead

LOG_STD_MIN = -20.0
LOG_STD_MAX = 2.0
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass
class SACConfig:
    """Hyper-parameters of SAC (defaults: Haarnoja et al. 2018, as in SB3 and CleanRL)."""

    lr_actor: float = 3e-4
    """Adam learning rate of the policy."""
    lr_critic: float = 3e-4
    """Adam learning rate of the twin Q networks."""
    lr_alpha: float = 3e-4
    """Adam learning rate of log α (automatic temperature)."""
    batch_size: int = 256
    """Transitions per gradient step."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak coefficient of the target update: θ' ← τθ + (1 − τ)θ'."""
    train_freq: int = 1
    """Environment steps (per env) between training rounds."""
    gradient_steps: int = 1
    """Gradient steps per training round (the replay ratio when train_freq is 1)."""
    learning_starts: int = 5_000
    """Environment steps collected (uniform random actions) before the first gradient step."""
    policy_frequency: int = 1
    """Critic steps per actor + temperature step (1 as SB3; CleanRL uses 2)."""
    target_network_frequency: int = 1
    """Critic steps between Polyak target updates."""
    alpha_init: float = 1.0
    """Initial temperature α (SB3's 'auto' starts at 1.0); the fixed α when autotune is off."""
    autotune: bool = True
    """Learn α by matching the policy's entropy to target_entropy."""
    target_entropy: float | None = None
    """Target entropy H̄ of the automatic temperature (None: −|A|)."""
    n_step: int = 1
    """n-step returns (computed by the replay)."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of the actor and of each Q network."""
    activation: str = "relu"
    """Activation: relu, leaky_relu, tanh, gelu, adalin, crelu."""
    norm: str | None = None
    """Normalisation after each hidden layer: None or layer."""
    max_grad_norm: float = 0.0
    """Clip each network's gradient global norm to this value (<= 0 disables, as in SB3/CleanRL)."""
    compile: bool = False
    """Compile each network's forward + backward into one Inductor graph (agents/compile/):
    ~1.13x faster training on HalfCheetah with 2 CPU threads; the first compilation takes ~20 s
    (~3 s from Inductor's on-disk cache after); eager while a hook watches the training forward (e.g. CBP)."""

    def replay_options(self) -> dict[str, Any]:
        """How the replay treats this agent's transitions (rewards are never clipped)."""
        return {"n_step": self.n_step, "gamma": self.gamma, "reward_clip": None}

    def validate(self) -> None:
        checks = {
            "lr_actor": self.lr_actor > 0, "lr_critic": self.lr_critic > 0, "lr_alpha": self.lr_alpha > 0,
            "batch_size": self.batch_size > 0, "gamma": 0 <= self.gamma <= 1, "tau": 0 < self.tau <= 1,
            "train_freq": self.train_freq > 0, "gradient_steps": self.gradient_steps > 0,
            "learning_starts": self.learning_starts >= 0, "policy_frequency": self.policy_frequency > 0,
            "target_network_frequency": self.target_network_frequency > 0,
            "alpha_init": self.alpha_init > 0, "n_step": self.n_step >= 1,
            "hidden": len(self.hidden) > 0 and all(h > 0 for h in self.hidden),
            "activation": self.activation in ACTIVATIONS, "norm": self.norm in NORMS,
        }
        valid = {"lr_actor": "> 0", "lr_critic": "> 0", "lr_alpha": "> 0", "batch_size": "> 0",
                 "gamma": "in [0, 1]", "tau": "in (0, 1]", "train_freq": "> 0", "gradient_steps": "> 0",
                 "learning_starts": ">= 0", "policy_frequency": "> 0", "target_network_frequency": "> 0",
                 "alpha_init": "> 0", "n_step": ">= 1", "hidden": "a non-empty list of positive widths",
                 "activation": f"one of {', '.join(ACTIVATIONS)}", "norm": "one of none, layer"}
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"--sac.{name.replace('_', '-')} must be {valid[name]}, got {getattr(self, name)}")


# --- networks -------------------------------------------------------------------------------


class GaussianPolicy(nn.Module):
    """π(·|s): an MLP encoder, then linear heads for the mean and the (clamped) log std of u."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...] = (256, 256),
                 activation: str = "relu", norm: str | None = None):
        super().__init__()
        self.encoder = MLPEncoder(obs_dim, hidden, activation, norm)
        self.mean = nn.Linear(self.encoder.out_dim, action_dim)
        self.log_std = nn.Linear(self.encoder.out_dim, action_dim)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(obs)
        return self.mean(z), self.log_std(z).clamp(LOG_STD_MIN, LOG_STD_MAX)


class QNetworkSA(nn.Sequential):
    """Q(s, a) = head(MLP(concat(flatten(s), a))), one scalar per sample."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...] = (256, 256),
                 activation: str = "relu", norm: str | None = None):
        encoder = MLPEncoder(obs_dim + action_dim, hidden, activation, norm)
        super().__init__(encoder, ScalarHead(encoder.out_dim))


class TwinQ(nn.Module):
    """Two independent Q networks on (obs, action); forward returns (q1, q2), each of shape (B,)."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...] = (256, 256),
                 activation: str = "relu", norm: str | None = None):
        super().__init__()
        self.q1 = QNetworkSA(obs_dim, action_dim, hidden, activation, norm)
        self.q2 = QNetworkSA(obs_dim, action_dim, hidden, activation, norm)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([obs.flatten(1).float(), actions.float()], dim=1)
        return self.q1(x).squeeze(1), self.q2(x).squeeze(1)


def tanh_log_det(u: torch.Tensor) -> torch.Tensor:
    """log(1 − tanh(u)²) = 2·(log 2 − u − softplus(−2u)), elementwise and stable for any u."""
    return 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))


def squashed_sample(mean: torch.Tensor, log_std: torch.Tensor,
                    eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reparameterised tanh-Gaussian sample a = tanh(μ + σε) and its log-probability (B,).

    log N(u; μ, σ) is written with ε = (u − μ)/σ directly: −ε²/2 − log σ − ½ log 2π.
    """
    u = mean + log_std.exp() * eps
    log_normal = -0.5 * eps.pow(2) - log_std - _HALF_LOG_2PI
    log_prob = (log_normal - tanh_log_det(u)).sum(dim=-1)
    return torch.tanh(u), log_prob


def temperature_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """L(α) = −mean[log α · (log π + H̄)], with log π treated as a constant (detached)."""
    return -(log_alpha * (log_prob.detach() + target_entropy)).mean()


def temperature_grad(log_prob: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """∂L(α)/∂log α = −mean[log π + H̄] (the temperature loss is linear in log α)."""
    return -(log_prob.detach() + target_entropy).mean()


@torch.no_grad()
def soft_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """Polyak step θ' ← τθ + (1 − τ)θ' on parameters (one multi-tensor kernel); buffers (if any) are copied."""
    lerp_(target.parameters(), online.parameters(), tau)
    for tb, b in zip(target.buffers(), online.buffers()):
        tb.copy_(b)


# --- agent ----------------------------------------------------------------------------------


class SAC(Agent):
    """Tanh-Gaussian actor, twin Q critic with a Polyak target, learned temperature."""

    def __init__(self, cfg: SACConfig, obs_shape: tuple[int, ...], action_dim: int,
                 device: torch.device | str = "cpu", seed: int = 0):
        cfg.validate()
        self.cfg = cfg
        self.batch_size = cfg.batch_size
        self.learning_starts = cfg.learning_starts
        self.updates_per_env_step = cfg.gradient_steps / cfg.train_freq
        self.device = torch.device(device)
        self.action_dim = action_dim
        obs_dim = math.prod(obs_shape)
        with torch.random.fork_rng(devices=[]):  # initial weights depend on `seed` only
            torch.manual_seed(seed)
            self.actor = GaussianPolicy(obs_dim, action_dim, cfg.hidden, cfg.activation, cfg.norm)
            self.critic = TwinQ(obs_dim, action_dim, cfg.hidden, cfg.activation, cfg.norm)
        self.actor = self.actor.to(self.device)
        self.critic = self.critic.to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optimizer = make_adam(self.actor.parameters(), lr=cfg.lr_actor)
        self.critic_optimizer = make_adam(self.critic.parameters(), lr=cfg.lr_critic)
        self.target_entropy = float(-action_dim if cfg.target_entropy is None else cfg.target_entropy)
        self.log_alpha = torch.tensor(math.log(cfg.alpha_init), device=self.device,
                                      requires_grad=cfg.autotune)
        self.alpha_optimizer = make_adam([self.log_alpha], lr=cfg.lr_alpha)
        self.learnables = {
            "actor": Learnable(self.actor, self.actor_optimizer, [], inputs=lambda b: b.obs),
            "critic": Learnable(self.critic, self.critic_optimizer, [self.critic_target],
                                inputs=lambda b: (b.obs, b.actions)),
        }
        self.updates = 0  # critic steps taken
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        zero = torch.zeros((), device=self.device)
        # the actor's metrics of its last step, returned on steps that skip the actor
        self._actor_metrics = {"actor_loss": zero, "alpha_loss": zero.clone(), "entropy": zero.clone()}
        # a hook on any network a loss calls (CBP watching the training forward) means eager
        self._critic_grad = (CompiledGrad(self.critic, self._critic_objective, watch=[self.actor, self.critic_target])
                             if cfg.compile else None)
        self._actor_grad = CompiledGrad(self.actor, self._actor_objective, watch=[self.critic]) if cfg.compile else None

    @property
    def alpha(self) -> torch.Tensor:
        """The current temperature α = exp(log α), detached."""
        return self.log_alpha.detach().exp()

    def _noise(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.action_dim, device=self.device, generator=self.generator)

    # --- acting -----------------------------------------------------------------------------

    @torch.no_grad()
    def act(self, obs: torch.Tensor, task: int, step: int) -> torch.Tensor:
        """(N, A) actions in [-1, 1] on the device: uniform before `learning_starts`, then
        tanh(μ + σ·ε) sampled from the policy."""
        n = obs.shape[0]
        if step < self.learning_starts:
            return torch.rand(n, self.action_dim, device=self.device, generator=self.generator) * 2 - 1
        mean, log_std = self.actor(obs.flatten(1).float())
        return torch.tanh(mean + log_std.exp() * self._noise(n))

    @torch.no_grad()
    def greedy(self, obs: torch.Tensor, task: int) -> torch.Tensor:
        """tanh(μ(s)): the policy's mode, for evaluation."""
        mean, _ = self.actor(obs.flatten(1).float())
        return torch.tanh(mean)

    @torch.no_grad()
    def extra_metrics(self, batch: Any) -> dict[str, float]:
        """Policy entropy −E[log π(a|s)] and the critic's mean Q on a monitoring batch (its own
        noise generator, so measuring does not change the training run's random stream)."""
        obs = batch.obs.flatten(1).float()
        gen = torch.Generator(device=self.device).manual_seed(self.updates)
        eps = torch.randn(obs.shape[0], self.action_dim, device=self.device, generator=gen)
        actions, log_prob = squashed_sample(*self.actor(obs), eps)
        q1, q2 = self.critic(obs, actions)
        return {"policy_entropy": float(-log_prob.mean()), "q_mean": float(torch.min(q1, q2).mean())}

    # --- learning ---------------------------------------------------------------------------

    def _critic_loss(self, obs, actions, rewards, next_obs, discounts, weights, alpha, eps_next):
        with torch.no_grad():
            next_actions, next_log_prob = squashed_sample(*self.actor(next_obs), eps_next)
            q1_next, q2_next = self.critic_target(next_obs, next_actions)
            next_v = torch.min(q1_next, q2_next) - alpha * next_log_prob
            target = rewards + discounts * next_v
        q1, q2 = self.critic(obs, actions)
        qf1_loss = (weights * (q1 - target).pow(2)).mean()
        qf2_loss = (weights * (q2 - target).pow(2)).mean()
        td_abs = 0.5 * ((q1 - target).abs() + (q2 - target).abs()).detach()
        return qf1_loss, qf2_loss, q1.detach(), td_abs

    def _actor_loss(self, obs, alpha, eps):
        actions, log_prob = squashed_sample(*self.actor(obs), eps)
        q1, q2 = self.critic(obs, actions)
        actor_loss = (alpha * log_prob - torch.min(q1, q2)).mean()
        return actor_loss, log_prob

    # (loss, detached aux) forms of the two losses, for loss_gradients and CompiledGrad
    def _critic_objective(self, *args):
        qf1_loss, qf2_loss, q1, td_abs = self._critic_loss(*args)
        return qf1_loss + qf2_loss, (qf1_loss.detach(), qf2_loss.detach(), q1, td_abs)

    def _actor_objective(self, obs, alpha, eps):
        actor_loss, log_prob = self._actor_loss(obs, alpha, eps)
        return actor_loss, (actor_loss.detach(), log_prob.detach())

    def update(self, batch: Any) -> dict[str, torch.Tensor]:
        """One critic step (+ actor and α every policy_frequency); detached scalars, no host sync."""
        cfg = self.cfg
        obs = batch.obs.flatten(1).float()
        next_obs = batch.next_obs.flatten(1).float()
        actions = batch.actions.float()
        alpha = self.alpha
        n = obs.shape[0]

        # critic
        critic = self.learnables["critic"]
        args = (obs, actions, batch.rewards, next_obs, batch.discounts, batch.weights, alpha, self._noise(n))
        qf1_loss, qf2_loss, q1, td_abs = loss_gradients(critic, self._critic_grad, self._critic_objective, args)
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.max_grad_norm)
        optimizer_step(self.critic_optimizer)
        after_step(critic, batch)

        # actor and temperature (delayed: every policy_frequency critic steps, first on step 0)
        if self.updates % cfg.policy_frequency == 0:
            actor = self.learnables["actor"]
            params = [p for p in self.actor.parameters() if p.requires_grad]
            # inputs=params: no gradient lands on the critic
            actor_loss, log_prob = loss_gradients(actor, self._actor_grad, self._actor_objective,
                                                  (obs, alpha, self._noise(n)), inputs=params)
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer_step(self.actor_optimizer)
            after_step(actor, batch)
            if cfg.autotune:
                # ∂L_α/∂log α = −mean(log π + H̄), written directly: no autograd pass for one scalar
                grad = temperature_grad(log_prob, self.target_entropy)
                alpha_loss = self.log_alpha.detach() * grad  # = temperature_loss(log α, log π, H̄)
                self.log_alpha.grad = grad
                optimizer_step(self.alpha_optimizer)
            else:
                alpha_loss = torch.zeros((), device=self.device)
            self._actor_metrics = {"actor_loss": actor_loss, "alpha_loss": alpha_loss.detach(),
                                   "entropy": -log_prob.mean()}

        self.updates += 1
        if self.updates % cfg.target_network_frequency == 0:
            for t in critic.targets:
                soft_update(t, self.critic, cfg.tau)
        return {"qf1_loss": qf1_loss.detach(), "qf2_loss": qf2_loss.detach(), "q_values": q1.mean(),
                "alpha": self.alpha, "td_abs": td_abs, **self._actor_metrics}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["log_alpha"] = self.log_alpha.detach().clone()
        state["alpha_optimizer"] = self.alpha_optimizer.state_dict()
        state["updates"] = self.updates
        state["generator"] = self.generator.get_state()
        state["actor_metrics"] = {k: v.clone() for k, v in self._actor_metrics.items()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])
        self.updates = int(state["updates"])
        self.generator.set_state(state["generator"])
        self._actor_metrics = {k: v.to(self.device).clone() for k, v in state["actor_metrics"].items()}


def build(cfg: SACConfig, schedule: Any, device: torch.device, seed: int) -> SAC:
    """A SAC agent for `schedule`'s tasks (the agent registry's constructor); refuses discrete actions."""
    if schedule.discrete:
        raise ValueError(f"--agent sac needs continuous actions; {schedule.tasks[0].id} is discrete: use --agent dqn")
    return SAC(cfg, schedule.obs_shape, schedule.action_dim, device, seed)
