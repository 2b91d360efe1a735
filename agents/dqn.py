"""DQN with Double-DQN targets, Huber loss, hard target updates and ε-greedy exploration.

The learner (Mnih et al., 2015; van Hasselt et al., 2016):

    a*      = argmax_a Q_online(s', a)            (over the task's valid actions)
    y       = R + discount · Q_target(s', a*)     (R, discount from replay: n-step, 0 at terminal)
    loss    = mean_i w_i · Huber(Q_online(s, a) − y)   (w = importance weights, ones if uniform)

Every `target_update_interval` updates the target network copies the online network.
Rewards are clipped by the replay for the loss when `reward_clip` is set (Atari); the
loop logs raw returns. With `double=False` the target is max_a Q_target(s', a).
Invalid actions of a task with fewer actions than the shared head (padding) are masked
both when acting and in the target's argmax.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from agents.base import Agent, Learnable, after_step, make_adam
from agents.compile import CompiledGrad, optimizer_step
from agents.compile.gradients import loss_gradients
from agents.networks import QNetwork, default_encoder, make_encoder


@dataclass
class DQNConfig:
    """Hyper-parameters of DQN (defaults: the usual Atari settings, as in SB3's zoo)."""

    lr: float = 1e-4
    """Adam learning rate."""
    adam_eps: float = 1e-8
    """Adam epsilon (PyTorch's default, as in SB3 and CleanRL)."""
    batch_size: int = 32
    """Transitions per gradient step."""
    gamma: float = 0.99
    """Discount factor."""
    train_freq: int = 4
    """Environment steps (per env) between gradient steps."""
    gradient_steps: int = 1
    """Gradient steps each time training happens."""
    learning_starts: int = 80_000
    """Environment steps collected before the first gradient step."""
    target_update_interval: int = 1_000
    """Gradient steps between hard target-network updates."""
    exploration_fraction: float = 0.1
    """Fraction of the run (or of each visit with `epsilon_restart`) over which ε decays."""
    epsilon_start: float = 1.0
    """ε at the start of the decay."""
    epsilon_end: float = 0.01
    """ε after the decay."""
    epsilon_restart: bool = False
    """Restart the ε schedule at every task switch."""
    max_grad_norm: float = 10.0
    """Clip the gradient's global norm to this value (<= 0 disables)."""
    double: bool = True
    """Double-DQN target (argmax by the online network, value by the target network)."""
    dueling: bool = False
    """Dueling head: V(s) + A(s, a) − mean A."""
    n_step: int = 1
    """n-step returns (computed by the replay)."""
    reward_clip: float | None = None
    """Clip each one-step reward to [−c, c] for the loss (None: no clipping; Atari presets use 1)."""
    encoder: str = "auto"
    """Encoder: auto (minatar_cnn for MinAtar grids, nature_cnn for other images, mlp otherwise), mlp, nature_cnn, impala_cnn, minatar_cnn."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of the MLP encoder."""
    activation: str = "relu"
    """Activation: relu, leaky_relu, tanh, gelu, adalin, crelu."""
    norm: str | None = None
    """Normalisation after each hidden layer: None or layer."""
    compile: bool = False
    """Compile the loss' forward + backward into one Inductor graph (agents/compile/, as --sac.compile);
    eager while a hook watches the training forward."""

    def replay_options(self) -> dict[str, Any]:
        """How the replay treats this agent's transitions."""
        return {"n_step": self.n_step, "gamma": self.gamma, "reward_clip": self.reward_clip}

    def validate(self) -> None:
        checks = {
            "lr": self.lr > 0, "batch_size": self.batch_size > 0, "gamma": 0 <= self.gamma <= 1,
            "train_freq": self.train_freq > 0, "gradient_steps": self.gradient_steps > 0,
            "learning_starts": self.learning_starts >= 0,
            "target_update_interval": self.target_update_interval > 0,
            "exploration_fraction": 0 < self.exploration_fraction <= 1,
            "epsilon_start": 0 <= self.epsilon_start <= 1, "epsilon_end": 0 <= self.epsilon_end <= 1,
            "n_step": self.n_step >= 1,
        }
        valid = {"lr": "> 0", "batch_size": "> 0", "gamma": "in [0, 1]", "train_freq": "> 0",
                 "gradient_steps": "> 0", "learning_starts": ">= 0", "target_update_interval": "> 0",
                 "exploration_fraction": "in (0, 1]", "epsilon_start": "in [0, 1]",
                 "epsilon_end": "in [0, 1]", "n_step": ">= 1"}
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"--dqn.{name.replace('_', '-')} must be {valid[name]}, got {getattr(self, name)}")


def linear_epsilon(cfg: DQNConfig, steps: int, horizon: int) -> float:
    """ε decays linearly from epsilon_start to epsilon_end over exploration_fraction·horizon steps."""
    duration = max(1.0, cfg.exploration_fraction * horizon)
    frac = min(1.0, steps / duration)
    return cfg.epsilon_start + frac * (cfg.epsilon_end - cfg.epsilon_start)


class DQN(Agent):
    """Online and target Q networks, Adam, the Double-DQN update, and ε-greedy exploration.

    Exploration is the agent's own (as in SB3's DQN): `act(obs, task, step)` returns uniformly
    random valid actions before `learning_starts`, then ε-greedy actions with ε from
    `linear_epsilon` over `exploration_horizon` environment steps — counted from the start of
    the run, or from the last task switch with `epsilon_restart`.
    """

    def __init__(self, cfg: DQNConfig, obs_shape: tuple[int, ...], num_actions: int,
                 action_masks: torch.Tensor, device: torch.device | str = "cpu", seed: int = 0,
                 exploration_horizon: int = 1):
        cfg.validate()
        self.cfg = cfg
        self.batch_size = cfg.batch_size
        self.learning_starts = cfg.learning_starts
        self.updates_per_env_step = cfg.gradient_steps / cfg.train_freq
        self.exploration_horizon = int(exploration_horizon)
        self._explore_origin = 0  # step at which the ε schedule (re)started
        self.device = torch.device(device)
        self.action_masks = action_masks.to(self.device)  # (num_tasks, num_actions) bool
        self._valid_actions = [m.nonzero().squeeze(1) for m in self.action_masks]  # per task, on the device
        self._all_valid = [bool(m.all()) for m in action_masks]
        self.image = len(obs_shape) == 3
        kind = cfg.encoder if cfg.encoder != "auto" else default_encoder(obs_shape)
        encoder = make_encoder(kind, obs_shape, cfg.activation, cfg.norm, cfg.hidden)
        self.q = QNetwork(encoder, num_actions, cfg.dueling).to(self.device)
        # the encoder's layout (channels-last for the Atari CNNs, see agents/networks.py)
        self.memory_format = getattr(encoder, "memory_format", torch.contiguous_format)
        self.q = self.q.to(memory_format=self.memory_format)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.optimizer = make_adam(self.q.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
        self.learnables = {"q": Learnable(self.q, self.optimizer, [self.q_target], inputs=lambda b: b.obs)}
        self.updates = 0
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        # the loss reads the online and the target network; a hook on either means eager
        self._q_grad = CompiledGrad(self.q, self._objective, watch=[self.q_target]) if cfg.compile else None

    # --- acting -----------------------------------------------------------------------------

    def _format(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.contiguous(memory_format=self.memory_format) if self.image else obs

    def epsilon(self, step: int) -> float:
        """ε of the exploration policy at environment step `step`."""
        return linear_epsilon(self.cfg, step - self._explore_origin, self.exploration_horizon)

    @torch.no_grad()
    def _random(self, n: int, task: int) -> torch.Tensor:
        """Uniformly random valid actions of `task` for `n` envs."""
        valid = self._valid_actions[task]
        pick = torch.randint(valid.numel(), (n,), generator=self.generator, device=self.device)
        return pick if self._all_valid[task] else valid[pick]

    @torch.no_grad()
    def greedy(self, obs: torch.Tensor, task: int) -> torch.Tensor:
        """argmax_a Q(s, a) over the task's valid actions, on the device."""
        q = self.q(self._format(obs))
        if not self._all_valid[task]:
            q = q.masked_fill(~self.action_masks[task], float("-inf"))
        return q.argmax(dim=1)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, task: int, step: int) -> torch.Tensor:
        """Random valid actions before `learning_starts`, ε-greedy (ε = `epsilon(step)`) after."""
        n = obs.shape[0]
        if step < self.learning_starts:
            return self._random(n, task)
        return self.epsilon_greedy(obs, task, self.epsilon(step))

    @torch.no_grad()
    def epsilon_greedy(self, obs: torch.Tensor, task: int, epsilon: float) -> torch.Tensor:
        """With probability ε a uniformly random valid action, else the greedy one."""
        greedy = self.greedy(obs, task)
        if epsilon <= 0.0:
            return greedy
        n = obs.shape[0]
        explore = torch.rand(n, device=self.device, generator=self.generator) < epsilon
        if self.device.type == "cpu" and not bool(explore.any()):  # reading is free on a CPU
            return greedy
        return torch.where(explore, self._random(n, task), greedy)

    def on_task_switch(self, task: int, step: int) -> None:
        super().on_task_switch(task, step)
        if self.cfg.epsilon_restart:
            self._explore_origin = step

    def log_scalars(self, step: int) -> dict[str, float]:
        return {"charts/epsilon": self.epsilon(step)}

    # --- learning ---------------------------------------------------------------------------

    def _loss(self, obs, actions, rewards, next_obs, discounts, weights, masks):
        with torch.no_grad():
            next_q_target = self.q_target(next_obs)
            if self.cfg.double:
                next_q_online = self.q(next_obs).masked_fill(~masks, float("-inf"))
                next_a = next_q_online.argmax(dim=1, keepdim=True)
                next_v = next_q_target.gather(1, next_a).squeeze(1)
            else:
                next_v = next_q_target.masked_fill(~masks, float("-inf")).max(dim=1).values
            target = rewards + discounts * next_v
        q_all = self.q(obs)
        q = q_all.gather(1, actions.long().unsqueeze(1)).squeeze(1)
        td = q - target
        loss = (weights * F.smooth_l1_loss(q, target, reduction="none")).mean()
        return loss, td.detach(), q_all.detach()

    def _objective(self, *args):
        """(loss, detached aux): the form loss_gradients and CompiledGrad take."""
        loss, td, q_all = self._loss(*args)
        return loss, (loss.detach(), td, q_all)

    def update(self, batch: Any) -> dict[str, torch.Tensor]:
        """One gradient step on `batch`; returns detached scalars (no host sync)."""
        learnable = self.learnables["q"]
        masks = self.action_masks[batch.tasks]
        args = (self._format(batch.obs), batch.actions, batch.rewards, self._format(batch.next_obs),
                batch.discounts, batch.weights, masks)
        loss, td, q_all = loss_gradients(learnable, self._q_grad, self._objective, args)
        if self.cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.q.parameters(), self.cfg.max_grad_norm)
        optimizer_step(self.optimizer)
        after_step(learnable, batch)
        self.updates += 1
        if self.updates % self.cfg.target_update_interval == 0:
            self.sync_target()
        q_taken = q_all.gather(1, batch.actions.long().unsqueeze(1)).squeeze(1)
        return {"td_loss": loss.detach(), "q_values": q_taken.mean(), "td_abs": td.abs(),
                "q_spread": q_all.std(dim=1).mean()}

    @torch.no_grad()
    def extra_metrics(self, batch: Any) -> dict[str, float]:
        """Mean and spread (std over actions, averaged over states) of Q on a batch."""
        q = self.q(self._format(batch.obs)).masked_fill(~self.action_masks[batch.tasks], float("nan"))
        mean = q.nanmean()
        spread = (q - q.nanmean(dim=1, keepdim=True)).pow(2).nanmean(dim=1).sqrt().mean()
        return {"q_mean": float(mean), "q_spread": float(spread)}

    @torch.no_grad()
    def sync_target(self) -> None:
        """Hard update: the target network becomes an exact copy of the online network."""
        for t in self.learnables["q"].targets:
            t.load_state_dict(self.q.state_dict())

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["updates"] = self.updates
        state["generator"] = self.generator.get_state()
        state["explore_origin"] = self._explore_origin
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.updates = int(state["updates"])
        self.generator.set_state(state["generator"])
        self._explore_origin = int(state.get("explore_origin", 0))


def build(cfg: DQNConfig, schedule: Any, device: torch.device, seed: int) -> DQN:
    """A DQN for `schedule`'s tasks (the agent registry's constructor); refuses continuous actions."""
    if not schedule.discrete:
        raise ValueError(f"--agent dqn needs discrete actions; {schedule.tasks[0].id} is continuous: use --agent sac")
    horizon = schedule.steps_per_visit if cfg.epsilon_restart else schedule.total_steps
    return DQN(cfg, schedule.obs_shape, schedule.num_actions, schedule.action_masks, device, seed,
               exploration_horizon=horizon)
