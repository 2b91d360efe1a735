"""DQN on MinAtar Breakout (or another game, `--game`): this project (batched torch game through train.py) vs
Stable-Baselines3's DQN on the reference package's Gymnasium env, same network and settings.

Both sides: the MinAtar network (3x3 conv, 16 channels, ReLU, 128 units, ReLU, linear head over
the 6 actions), Adam lr 2.5e-4, batch 32, gamma 0.99, replay 100k, Huber loss, gradient norm
clipped at 10, one gradient step every 4 env steps after 5 000 random steps, a hard target
update every 1 000 env steps (= 250 gradient steps here), epsilon 1 -> 0.01 over the first
10% of the run, vanilla (not double) DQN targets, 1 env, sticky actions 0.1. Ours observes
uint8 (C, 10, 10) grids; SB3 observes the reference's bool (10, 10, C) grid transposed to
float32 (C, 10, 10) by a wrapper.

Per run: the mean training-episode return over the last quarter of the steps (raw returns;
ours from ``charts/episodic_return``, SB3's from its Monitor wrapper), and env steps per
second from the first gradient step to the end (ours from the wall times of the
``charts/SPS`` events, SB3's from a callback). Runs alternate sides seed by seed.

    python benchmarks/minatar_dqn.py --steps 100000 --seeds 0 1
    python benchmarks/minatar_dqn.py --steps 15000 --seeds 0 1 --sides ours ours-compile sb3
    python benchmarks/minatar_dqn.py --sps-table --steps 20000      # ours, SPS vs --env.num-envs
    python benchmarks/minatar_dqn.py --game Seaquest --num-envs 8 --sides ours ours-env-compile

``--game`` picks the game (both sides), ``--num-envs`` (one value) ours' batched envs in a side
comparison (SB3 runs 1 env); side ``ours-compile`` adds ``--dqn.compile``, ``ours-env-compile``
``--env.compile`` (the game's step compiled).

Prints markdown for ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LEARNING_STARTS = 5_000
TRAIN_FREQ = 4
TARGET_ENV_STEPS = 1_000


def ours_cmd(run_dir: str, steps: int, seed: int, num_envs: int = 1, compile: bool = False,
             game: str = "Breakout", env_compile: bool = False) -> list[str]:
    # train.py takes gradient_steps / train_freq updates per env step (all envs counted), so
    # the replay ratio (one update per 4 env steps) is the same for every number of envs.
    grad = ["--dqn.train-freq", str(TRAIN_FREQ), "--dqn.gradient-steps", "1"]
    return [sys.executable, str(ROOT / "train.py"), "--env.tasks", f"minatar:{game}",
            "--env.steps-per-visit", str(steps), "--env.cycles", "1", "--env.num-envs", str(num_envs),
            "--seed", str(seed), "--run-dir", run_dir, "--no-progress", "--threads", "1",
            "--dqn.encoder", "minatar_cnn", "--dqn.lr", "2.5e-4", "--dqn.batch-size", "32",
            "--dqn.gamma", "0.99", "--replay.capacity", "100000", "--dqn.learning-starts", str(LEARNING_STARTS),
            *grad, "--dqn.target-update-interval", str(TARGET_ENV_STEPS // TRAIN_FREQ),
            "--dqn.exploration-fraction", "0.1", "--dqn.epsilon-end", "0.01", "--dqn.no-double",
            "--dqn.max-grad-norm", "10", "--monitor.every", "0", "--eval.episodes", "0",
            "--eval.random-episodes", "0", "--checkpoint-every", "0", "--log-every", "1000",
            *(["--dqn.compile"] if compile else []), *(["--env.compile"] if env_compile else [])]


def ours_result(run_dir: str, steps: int) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    acc.Reload()
    rets = [e.value for e in acc.Scalars("charts/episodic_return") if e.step > 0.75 * steps]
    sps = [(e.step, e.wall_time) for e in acc.Scalars("charts/SPS") if e.step >= LEARNING_STARTS]
    (s0, t0), (s1, t1) = sps[0], sps[-1]
    return {"final_return": statistics.mean(rets), "episodes": len(rets), "sps": (s1 - s0) / (t1 - t0)}


def make_sb3(seed: int, learning_starts: int = LEARNING_STARTS, game: str = "Breakout"):
    """SB3's DQN on the reference's ``MinAtar/<game>-v0`` with the MinAtar network and the
    settings of the module docstring; ``(model, monitor)``, the Monitor wrapper holding its episodes."""
    import gymnasium as gym
    import numpy as np
    import torch
    from minatar.gym import register_envs
    from stable_baselines3 import DQN
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    from torch import nn

    torch.set_num_threads(1)
    register_envs()

    class ChannelsFirst(gym.ObservationWrapper):
        def __init__(self, env):
            super().__init__(env)
            h, w, c = env.observation_space.shape
            self.observation_space = gym.spaces.Box(0.0, 1.0, (c, h, w), np.float32)

        def observation(self, obs):
            return np.ascontiguousarray(np.moveaxis(obs, -1, 0), dtype=np.float32)

    class MinAtarNet(BaseFeaturesExtractor):
        def __init__(self, space, features_dim: int = 128):
            super().__init__(space, features_dim)
            c, h, w = space.shape
            self.net = nn.Sequential(nn.Conv2d(c, 16, 3), nn.ReLU(), nn.Flatten(),
                                     nn.Linear(16 * (h - 2) * (w - 2), features_dim), nn.ReLU())

        def forward(self, x):
            return self.net(x)

    env = Monitor(ChannelsFirst(gym.make(f"MinAtar/{game}-v0")))
    model = DQN("MlpPolicy", env, learning_rate=2.5e-4, buffer_size=100_000, learning_starts=learning_starts,
                batch_size=32, gamma=0.99, train_freq=TRAIN_FREQ, gradient_steps=1,
                target_update_interval=TARGET_ENV_STEPS, exploration_fraction=0.1,
                exploration_initial_eps=1.0, exploration_final_eps=0.01, max_grad_norm=10,
                policy_kwargs=dict(features_extractor_class=MinAtarNet, net_arch=[],
                                   optimizer_class=torch.optim.Adam),
                seed=seed, device="cpu", verbose=0)
    return model, env


def sb3_child(steps: int, seed: int, game: str) -> dict:
    import numpy as np
    from stable_baselines3.common.callbacks import BaseCallback

    class Clock(BaseCallback):
        def __init__(self):
            super().__init__()
            self.marks = {}

        def _on_step(self) -> bool:
            if self.num_timesteps in (LEARNING_STARTS, steps):
                self.marks[self.num_timesteps] = time.perf_counter()
            return True

    model, env = make_sb3(seed, game=game)
    clock = Clock()
    model.learn(steps, callback=clock)
    ends = np.cumsum(env.get_episode_lengths())
    rets = [r for r, e in zip(env.get_episode_rewards(), ends) if e > 0.75 * steps]
    sps = (steps - LEARNING_STARTS) / (clock.marks[steps] - clock.marks[LEARNING_STARTS])
    return {"final_return": float(np.mean(rets)), "episodes": len(rets), "sps": sps}


def run_ours(steps: int, seed: int, num_envs: int = 1, *, compile: bool = False, game: str = "Breakout",
             env_compile: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = str(Path(tmp) / "run")
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(ours_cmd(run_dir, steps, seed, num_envs, compile, game, env_compile),
                              capture_output=True, text=True,
                              cwd=ROOT, env=env)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-3000:])
        return ours_result(run_dir, steps)


def run_sb3(steps: int, seed: int, num_envs: int = 1, game: str = "Breakout") -> dict:
    """SB3 in a child process (``num_envs`` must be 1: checked by ``main``)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, __file__, "--child-sb3", "--steps", str(steps), "--seeds", str(seed),
                           "--game", game],
                          capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


SIDES = {
    "ours": lambda steps, seed, num_envs, game: run_ours(steps, seed, num_envs, game=game),
    "ours-compile": lambda steps, seed, num_envs, game: run_ours(steps, seed, num_envs, compile=True, game=game),
    "ours-env-compile": lambda steps, seed, num_envs, game: run_ours(steps, seed, num_envs, game=game, env_compile=True),
    "sb3": run_sb3,
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--child-sb3", action="store_true")
    p.add_argument("--sps-table", action="store_true", help="ours only: SPS for --env.num-envs 1 8 64 256")
    p.add_argument("--num-envs", type=int, nargs="+", default=None,
                   help="the SPS table's (default 1 8 64 256); a side comparison's ours (one value, default 1)")
    sys.path.insert(0, str(ROOT))
    from envs.minatar import GAMES

    p.add_argument("--game", default="Breakout", choices=sorted(GAMES))
    p.add_argument("--sides", nargs="+", default=["ours", "sb3"], choices=list(SIDES),
                   help="ours-compile: ours with --dqn.compile; ours-env-compile: ours with --env.compile")
    args = p.parse_args()
    if args.child_sb3:
        print(json.dumps(sb3_child(args.steps, args.seeds[0], args.game)))
        return
    if not args.sps_table and args.num_envs is not None and (len(args.num_envs) != 1 or (
            args.num_envs[0] != 1 and "sb3" in args.sides)):
        p.error(f"--num-envs {' '.join(map(str, args.num_envs))}: a side comparison takes one value, "
                "and 1 when sb3 is a side (SB3 runs 1 env)")
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, load average "
          f"{os.getloadavg()[0]:.1f}, cpus {os.cpu_count()}, steps {args.steps}, game {args.game}")
    if args.sps_table:
        print("| --env.num-envs | gradient steps per env step | env steps/s | final return (last 25%) |")
        print("|---:|---:|---:|---:|")
        for n in args.num_envs or [1, 8, 64, 256]:
            res = run_ours(args.steps, args.seeds[0], n, game=args.game)
            print(f"| {n} | 0.25 | {res['sps']:,.0f} | {res['final_return']:.2f} |", flush=True)
        return
    rows = []
    for seed in args.seeds:
        for side in args.sides if seed % 2 == 0 else args.sides[::-1]:
            t = time.perf_counter()
            res = SIDES[side](args.steps, seed, (args.num_envs or [1])[0], args.game)
            res.update(side=side, seed=seed, wall=time.perf_counter() - t)
            rows.append(res)
            print(json.dumps(res), flush=True)
    print("\n| side | seed | final return (last 25% of steps) | episodes | env steps/s | wall s |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['side']} | {r['seed']} | {r['final_return']:.2f} | {r['episodes']} | {r['sps']:,.0f} | {r['wall']:.0f} |")
    sps = {}
    for side in args.sides:
        mine = [r for r in rows if r["side"] == side]
        sps[side] = statistics.mean(r["sps"] for r in mine)
        print(f"{side}: mean final return {statistics.mean(r['final_return'] for r in mine):.2f}, "
              f"mean SPS {sps[side]:,.0f}")
    if "sb3" in sps:
        for side in sps.keys() - {"sb3"}:
            pairs = [a["sps"] / b["sps"] for a in rows for b in rows
                     if a["side"] == side and b["side"] == "sb3" and a["seed"] == b["seed"]]
            print(f"SPS ratio {side} / SB3: {sps[side] / sps['sb3']:.2f}x (per seed "
                  f"{', '.join(f'{x:.2f}' for x in pairs)})")


if __name__ == "__main__":
    main()
