"""Named presets: each is a function returning a `TrainConfig`; options given on the command
line after `--preset NAME` override it. The docstring of each preset is its line in `--help`.
"""

from __future__ import annotations

import dataclasses

from agents.dqn import DQNConfig
from agents.sac import SACConfig
from runner.config import EnvConfig, EvalConfig, MonitorConfig, ReplayConfig, TrainConfig


def _replace(obj, **changes):
    return dataclasses.replace(obj, **changes)


def _quickstart() -> TrainConfig:
    """DQN cycling CartPole-v1 and Acrobot-v1 twice (observations padded to 6, actions masked to
    each task's own); a few minutes on 2 CPU cores."""
    return TrainConfig(
        preset="quickstart",
        env=EnvConfig(tasks=("gym:CartPole-v1", "gym:Acrobot-v1"), steps_per_visit=30_000, cycles=2),
        replay=ReplayConfig(capacity=50_000),
        dqn=DQNConfig(lr=1e-3, batch_size=64, train_freq=1, learning_starts=1_000,
                      target_update_interval=250, exploration_fraction=0.15, epsilon_end=0.02,
                      epsilon_restart=True, hidden=(128, 128)),
        monitor=MonitorConfig(every=500),
        eval=EvalConfig(episodes=5, random_episodes=10, max_steps=1_000),
        checkpoint_every=0, log_every=500, threads=1,
    )


def _atari_cycle() -> TrainConfig:
    """After Abbas et al. (2023), Loss of Plasticity in Continual Deep RL: DQN cycles Atari games
    with the full 18-action space and sticky actions 0.25 (Machado et al., 2018), no per-game
    head or reset at a switch; the paper plays each game 10M frames (2.5M agent steps) over
    many cycles, here 1M agent steps per visit, 3 games, 2 cycles."""
    return TrainConfig(
        preset="atari-cycle",
        env=EnvConfig(games=("Pong", "Breakout", "SpaceInvaders"), steps_per_visit=1_000_000, cycles=2,
                      sticky_actions=0.25),
        replay=ReplayConfig(capacity=1_000_000),
        dqn=DQNConfig(reward_clip=1.0),
        monitor=MonitorConfig(every=5_000, batch_size=256),
        checkpoint_every=1_000_000, log_every=5_000,
    )


def _classic_cycle() -> TrainConfig:
    """DQN cycling three classic-control tasks (CartPole, Acrobot, MountainCar)."""
    cfg = _quickstart()
    return _replace(cfg, preset="classic-cycle",
                    env=EnvConfig(tasks=("gym:CartPole-v1", "gym:Acrobot-v1", "gym:MountainCar-v0"),
                                  steps_per_visit=50_000, cycles=3))


def _pendulum() -> TrainConfig:
    """SAC on Pendulum-v1 (one task, one visit): a quick check that SAC learns."""
    return TrainConfig(
        preset="pendulum", agent="sac",
        env=EnvConfig(tasks=("gym:Pendulum-v1",), steps_per_visit=15_000, cycles=1),
        replay=ReplayConfig(capacity=100_000),
        sac=SACConfig(learning_starts=1_000),
        eval=EvalConfig(episodes=10, random_episodes=5, max_steps=1_000),
        checkpoint_every=0, log_every=1_000, threads=1,
    )


def _mujoco_cycle() -> TrainConfig:
    """SAC on one body under changing dynamics is not in Gymnasium; this cycles several bodies:
    HalfCheetah-v5 (17 obs, 6 actions) and Hopper-v5 (11 obs, 3 actions) and Walker2d-v5
    (17 obs, 6 actions), observations zero-padded to 17 and actions to 6 (a smaller task ignores
    the extra dimensions); each visit 100k steps, two cycles; compiled SAC updates (~20 s of
    compilation the first time, ~3 s from the cache after, for ~1.13x faster training over
    600k steps). Needs the [mujoco] extra."""
    return TrainConfig(
        preset="mujoco-cycle", agent="sac",
        env=EnvConfig(tasks=("gym:HalfCheetah-v5", "gym:Hopper-v5", "gym:Walker2d-v5"),
                      steps_per_visit=100_000, cycles=2),
        replay=ReplayConfig(capacity=1_000_000),
        sac=SACConfig(learning_starts=5_000, compile=True),
        monitor=MonitorConfig(every=5_000),
        checkpoint_every=100_000, log_every=5_000,
    )


def _continual_gym() -> TrainConfig:
    """After the continual Gym control of TRAC (Muppidi et al., 2024) and C-CHAIN (Tang et al.,
    2025): DQN cycles CartPole-v1 and Acrobot-v1 three times, each visit adding a fresh constant
    offset b ~ N(0, 1) to every observation feature (--env.shift obs-offset). Scaled down: their
    levels use PPO and millions of steps, here 20k steps per visit (120k in all), a few minutes
    on one CPU core. At every visit's end each task is evaluated, 5 episodes at once under the
    offset of its latest visit, with evaluation epsilon 0.05 (Mnih et al., 2015: a purely greedy
    policy can stall Acrobot at its 500-step cap); a random policy's return (10 episodes) is
    the scores' baseline."""
    cfg = _quickstart()
    return _replace(cfg, preset="continual-gym",
                    env=EnvConfig(tasks=("gym:CartPole-v1", "gym:Acrobot-v1"), shift="obs-offset",
                                  steps_per_visit=20_000, cycles=3),
                    eval=_replace(cfg.eval, epsilon=0.05),
                    monitor=MonitorConfig(every=1_000))


def _permuted_cartpole() -> TrainConfig:
    """One task, CartPole-v1, whose observation features are permuted afresh at every visit
    (--env.shift permute-obs): the RL counterpart of Permuted MNIST (Goodfellow et al., 2013),
    which Dohare et al. (2024) use to show loss of plasticity; five visits of 20k steps."""
    cfg = _quickstart()
    return _replace(cfg, preset="permuted-cartpole",
                    env=EnvConfig(tasks=("gym:CartPole-v1",), shift="permute-obs",
                                  steps_per_visit=20_000, cycles=5),
                    monitor=MonitorConfig(every=1_000))


def _atari_screen() -> TrainConfig:
    """atari-cycle on a budget: the same settings (full action space, sticky actions 0.25),
    3 games x 2 cycles of 200k agent steps each (1.2M steps), replay 200k, 4 envs."""
    cfg = _atari_cycle()
    return _replace(cfg, preset="atari-screen",
                    env=_replace(cfg.env, steps_per_visit=200_000, num_envs=4),
                    replay=ReplayConfig(capacity=200_000),
                    dqn=_replace(cfg.dqn, learning_starts=20_000),
                    eval=EvalConfig(episodes=3, random_episodes=3),
                    checkpoint_every=200_000)


def _slippery_ant() -> TrainConfig:
    """After Dohare et al. (2024)'s SlipperyAnt: SAC (PPO in the paper) on Ant-v5 whose ground
    friction is resampled log-uniformly in [0.02, 2] (times the default) at every visit
    (--env.shift dynamics:params=friction,low=0.02,high=2); the paper changes it every 2M
    steps for 50M+ steps, here 5 visits of 200k steps (1M). Needs the [mujoco] extra."""
    return TrainConfig(
        preset="slippery-ant", agent="sac",
        env=EnvConfig(tasks=("gym:Ant-v5",), shift="dynamics:params=friction,low=0.02,high=2",
                      steps_per_visit=200_000, cycles=5),
        replay=ReplayConfig(capacity=1_000_000),
        sac=SACConfig(learning_starts=5_000, compile=True),
        monitor=MonitorConfig(every=5_000),
        eval=EvalConfig(episodes=5, random_episodes=5, max_steps=1_000),
        checkpoint_every=100_000, log_every=5_000,
    )


def _minatar_cycle() -> TrainConfig:
    """DQN cycling MinAtar SpaceInvaders -> Asterix -> Seaquest, the C-CHAIN order, scaled for a
    laptop: 100k env steps per visit (not millions), 2 cycles, 8 batched envs on the training
    device, the MinAtar network (3x3 conv with 16 channels, 128 units), channels padded to 10,
    MinAtar's sticky actions 0.1; replay 100k, batch 32, one update per 4 env steps, epsilon
    1 -> 0.01 over each visit's first 10% (restarted at every switch)."""
    return TrainConfig(
        preset="minatar-cycle",
        env=EnvConfig(tasks=("minatar:SpaceInvaders", "minatar:Asterix", "minatar:Seaquest"),
                      steps_per_visit=100_000, cycles=2, num_envs=8, sticky_actions=0.1),
        replay=ReplayConfig(capacity=100_000),
        dqn=DQNConfig(lr=2.5e-4, batch_size=32, train_freq=4, learning_starts=5_000,
                      target_update_interval=1_000, exploration_fraction=0.1, epsilon_end=0.01,
                      epsilon_restart=True, encoder="minatar_cnn"),
        monitor=MonitorConfig(every=2_000),
        eval=EvalConfig(episodes=5, random_episodes=5, max_steps=10_000),
        checkpoint_every=50_000, log_every=5_000,
    )


PRESETS = {
    "quickstart": _quickstart,
    "atari-cycle": _atari_cycle,
    "classic-cycle": _classic_cycle,
    "pendulum": _pendulum,
    "mujoco-cycle": _mujoco_cycle,
    "continual-gym": _continual_gym,
    "permuted-cartpole": _permuted_cartpole,
    "atari-screen": _atari_screen,
    "slippery-ant": _slippery_ant,
    "minatar-cycle": _minatar_cycle,
}


def preset(name: str) -> TrainConfig:
    """The named preset; an unknown name is refused in one line listing the valid ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    return PRESETS[name]()


def preset_help() -> str:
    lines = ["Presets (--preset NAME; options given after it override it):"]
    for name, make in PRESETS.items():
        doc = " ".join((make.__doc__ or "").split())
        lines.append(f"  {name:17s} {doc}")
    return "\n".join(lines)
