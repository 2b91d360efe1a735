"""The vector envs of a schedule's tasks, built once, with one shared layout.

:func:`build_task_envs` checks that the tasks can share one network (all Atari or none;
all discrete or all continuous), works out the common observation shape and action size,
and builds one vector env per task, each wrapped to that layout. The schedule keeps these
envs for the whole run and reuses each on every revisit of its task.

MinAtar tasks are *device-native* (``device_native``): each task's env is an
``envs.minatar.vector.MinAtarVectorEnv`` on the training device, which takes and returns
tensors there; when the schedule has more than one game, every game's channels are
zero-padded to 10 (Seaquest's count, the most of any game), so one network serves any cycle;
a single game keeps its own channels. Every game has MinAtar's six actions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium
import numpy as np
import torch
from gymnasium.vector import VectorEnv

from envs.atari import AtariOptions, make_atari_env, make_atari_vector_env
from envs.gym_tasks import make_gym_env, make_gym_vector_env, read_spaces
from envs.minatar.vector import MinAtarOptions
from envs.tasks import TaskSpec


@dataclass
class TaskEnvs:
    """One vector env per task plus the layout they share."""

    specs: list[TaskSpec]
    """The tasks, in schedule order."""
    envs: list[VectorEnv]
    """``envs[i]`` runs ``specs[i]`` with ``num_envs`` copies."""
    obs_shape: tuple[int, ...]
    """Shape of one observation, common to every task (padded for gym tasks)."""
    obs_dtype: torch.dtype
    """``torch.uint8`` for Atari frames, ``torch.float32`` for vectors."""
    frame_stack: int
    """Frames stacked in one observation: the Atari stack size, 1 otherwise."""
    discrete: bool
    """Whether actions are discrete (every task agrees)."""
    task_sizes: list[int]
    """Per task: its number of actions (discrete) or action dimensions (continuous)."""
    atari: AtariOptions | None = None
    """Atari settings when the tasks are Atari games."""
    device_native: bool = False
    """Whether the envs take and return tensors on the training device (MinAtar tasks)."""
    minatar: MinAtarOptions | None = None
    """MinAtar settings when the tasks are MinAtar games."""
    device: torch.device | None = None
    """Where device-native envs run (the training device)."""
    action_size: int = field(init=False)
    """Largest entry of ``task_sizes``: the agent's number of actions or action dimensions."""

    def __post_init__(self) -> None:
        self.action_size = max(self.task_sizes)

    def action_masks(self) -> np.ndarray:
        """``(num_tasks, action_size)`` bool: which actions (or dims) each task uses."""
        masks = np.zeros((len(self.specs), self.action_size), dtype=bool)
        for i, size in enumerate(self.task_sizes):
            masks[i, :size] = True
        return masks

    def make_single_env(self, task: int) -> gymnasium.Env:
        """A single (non-vector) env of task ``task`` with exactly this layout (for evaluation)."""
        spec = self.specs[task]
        if spec.kind == "minatar":
            from envs.minatar.vector import MinAtarGymEnv

            return MinAtarGymEnv(spec.target, channels=self.obs_shape[0], device="cpu", **self.minatar.env_options())
        if spec.kind == "atari":
            return make_atari_env(spec, self.atari)
        return make_gym_env(spec, self.obs_shape[0], None if self.discrete else self.action_size)

    def make_vector_env(self, task: int, num_envs: int):
        """A separate batched env of MinAtar task ``task`` with this layout, on the training
        device (for evaluation; next-step auto-reset, see ``envs.minatar.vector``)."""
        spec = self.specs[task]
        if spec.kind != "minatar":
            raise ValueError(f"make_vector_env is for MinAtar tasks; {spec.id!r} is not one")
        from envs.minatar.vector import MinAtarVectorEnv

        return MinAtarVectorEnv(spec.target, num_envs, self.device, channels=self.obs_shape[0],
                                **self.minatar.env_options())

    def close(self) -> None:
        """Close every env."""
        for env in self.envs:
            env.close()


def _build_atari(specs: list[TaskSpec], num_envs: int, options: AtariOptions) -> TaskEnvs:
    """Atari games: vector envs first, layout read from them."""
    envs: list[VectorEnv] = [make_atari_vector_env(s, num_envs, options) for s in specs]
    return TaskEnvs(
        specs=specs,
        envs=envs,
        obs_shape=tuple(envs[0].single_observation_space.shape),
        obs_dtype=torch.uint8,
        frame_stack=options.stack_num,
        discrete=True,
        task_sizes=[int(e.single_action_space.n) for e in envs],
        atari=options,
    )


def _build_gym(specs: list[TaskSpec], num_envs: int) -> TaskEnvs:
    """Gymnasium tasks: read raw spaces, check they agree, then build padded vector envs."""
    task_spaces = [read_spaces(s) for s in specs]
    kinds = {sp.discrete for sp in task_spaces}
    if len(kinds) > 1:
        disc = [s.id for s, sp in zip(specs, task_spaces) if sp.discrete]
        cont = [s.id for s, sp in zip(specs, task_spaces) if not sp.discrete]
        raise ValueError(
            f"cannot mix discrete-action tasks {disc} with continuous-action tasks {cont} "
            "in one schedule (DQN and SAC need different heads)"
        )
    discrete = kinds.pop()
    obs_dim = max(sp.obs_dim for sp in task_spaces)
    sizes = [sp.num_actions for sp in task_spaces]
    action_dim = None if discrete else max(sizes)
    envs: list[VectorEnv] = [
        make_gym_vector_env(s, num_envs, obs_dim, action_dim) for s in specs
    ]
    return TaskEnvs(
        specs=specs,
        envs=envs,
        obs_shape=(obs_dim,),
        obs_dtype=torch.float32,
        frame_stack=1,
        discrete=discrete,
        task_sizes=sizes,
    )


def _build_minatar(specs: list[TaskSpec], num_envs: int, device: str | torch.device,
                   options: MinAtarOptions) -> TaskEnvs:
    """MinAtar games: batched on ``device``; a cycle of games pads every game's channels to 10."""
    from envs.minatar import MAX_CHANNELS, game_class
    from envs.minatar.vector import MinAtarVectorEnv

    channels = game_class(specs[0].target).num_channels if len(specs) == 1 else MAX_CHANNELS
    envs = [MinAtarVectorEnv(s.target, num_envs, device, channels=channels, compile=options.compile,
                             **options.env_options())
            for s in specs]
    return TaskEnvs(
        specs=specs,
        envs=envs,  # type: ignore[arg-type]
        obs_shape=(channels, 10, 10),
        obs_dtype=torch.uint8,
        frame_stack=1,
        discrete=True,
        task_sizes=[e.num_actions for e in envs],
        device_native=True,
        minatar=options,
        device=torch.device(device),
    )


def build_task_envs(
    specs: list[TaskSpec], num_envs: int, atari: AtariOptions | None = None,
    device: str | torch.device = "cpu", minatar: MinAtarOptions | None = None,
) -> TaskEnvs:
    """Build one vector env per task (specs from :func:`envs.tasks.parse_tasks`, which refuses a
    schedule that mixes Atari or MinAtar tasks with others); ``device`` and ``minatar`` serve
    MinAtar tasks only."""
    if num_envs < 1:
        raise ValueError(f"num_envs={num_envs} must be >= 1")
    if {s.kind for s in specs} == {"minatar"}:
        return _build_minatar(specs, num_envs, device, minatar or MinAtarOptions())
    if {s.kind for s in specs} == {"atari"}:
        return _build_atari(specs, num_envs, atari or AtariOptions())
    return _build_gym(specs, num_envs)
