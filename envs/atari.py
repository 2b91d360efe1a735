"""Atari factories: ale-py's native vector env for training, a Gymnasium env for evaluation.

Defaults follow Machado et al. (2018, "Revisiting the Arcade Learning Environment") and
ALE v5: sticky actions with probability 0.25, full 18-action space (so one output layer
serves every game of a cycle), frame skip 4 with a max over the last two frames, 84x84
grey frames, 4 stacked frames, no life-loss terminal, an episode cap of 108 000 frames
(ends in ``truncated``), and **raw rewards** (ale-py's vector env clips them by default;
here clipping is off so returns are the game's score: clip for the loss in the learner).

No-op starts and fire reset are **off** by default. Machado et al. recommend sticky
actions as the only source of stochasticity (no-op starts are a weaker, start-only form of
it and were dropped in ALE v5), and fire reset is a game-specific trick that v5 does not
apply. Both stay available as options (``noop_max``, ``use_fire_reset``).

The vector env (:func:`make_atari_vector_env`) and the single env (:func:`make_atari_env`)
use the same settings and, with sticky actions off and no no-op starts, produce the same
frames pixel for pixel (both resize with OpenCV's area interpolation; both stack zeros
before the first frame of an episode). With sticky actions on, their random streams
differ. The single env's no-op starts are drawn differently from the vector env's.
"""

from __future__ import annotations

from dataclasses import dataclass

import ale_py
import gymnasium
import numpy as np
from ale_py.vector_env import AtariVectorEnv
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

from envs.tasks import TaskSpec

gymnasium.register_envs(ale_py)


@dataclass(frozen=True)
class AtariOptions:
    """Settings of every Atari environment of a run (defaults: Machado et al. 2018, ALE v5)."""

    repeat_action_probability: float = 0.25
    """Sticky actions: chance that the emulator repeats the previous action on each frame."""
    full_action_space: bool = True
    """Use all 18 actions in every game (needed to share one Q head across games)."""
    frameskip: int = 4
    """Emulator frames per agent step (the max over the last two is observed)."""
    img_height: int = 84
    """Height of an observed frame after resizing."""
    img_width: int = 84
    """Width of an observed frame after resizing."""
    grayscale: bool = True
    """Grey frames (RGB adds a trailing channel axis of 3)."""
    stack_num: int = 4
    """Number of stacked frames in one observation."""
    max_num_frames_per_episode: int = 108_000
    """Episode cap in emulator frames (27 000 agent steps at frameskip 4); ends in truncated."""
    episodic_life: bool = False
    """End the episode (terminated) on a life loss; Machado et al. advise against it."""
    reward_clipping: bool = False
    """Clip rewards to [-1, 1] in the env; keep off and clip in the learner to log raw returns."""
    noop_max: int = 0
    """Random no-op frames at reset (0 = none, as recommended with sticky actions)."""
    use_fire_reset: bool = False
    """Press FIRE for one frame at reset in games that have it (off in ALE v5)."""
    num_threads: int = 0
    """Worker threads of the vector env (0 = ale-py's default)."""

    def __post_init__(self) -> None:
        """Reject values that would fail deep inside ale-py with one-line errors."""
        if not 0.0 <= self.repeat_action_probability <= 1.0:
            raise ValueError(
                f"repeat_action_probability={self.repeat_action_probability} must be in [0, 1]"
            )
        for name in ("frameskip", "img_height", "img_width", "stack_num"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.max_num_frames_per_episode < 1:
            raise ValueError(
                f"max_num_frames_per_episode={self.max_num_frames_per_episode} must be >= 1"
            )
        if self.noop_max < 0 or self.num_threads < 0:
            raise ValueError(
                f"noop_max={self.noop_max} and num_threads={self.num_threads} must be >= 0"
            )


def _require_atari(spec: TaskSpec) -> None:
    """Raise ``ValueError`` when ``spec`` is not an Atari task."""
    if spec.kind != "atari":
        raise ValueError(f"task {spec.id!r} is not an Atari task")


def make_atari_vector_env(
    spec: TaskSpec, num_envs: int, options: AtariOptions | None = None
) -> AtariVectorEnv:
    """ale-py's native vector env for ``spec`` with ``num_envs`` copies.

    It auto-resets on the next step (the step after ``terminated | truncated`` returns the
    first observation of a new episode, ignores its action and is not a transition),
    returns ``int32`` raw rewards and no episode statistics. ``reset(seed=s)`` seeds copy
    ``i`` with ``s + i``.
    """
    _require_atari(spec)
    o = options or AtariOptions()
    return AtariVectorEnv(
        spec.target,
        num_envs,
        num_threads=o.num_threads,
        max_num_frames_per_episode=o.max_num_frames_per_episode,
        repeat_action_probability=o.repeat_action_probability,
        full_action_space=o.full_action_space,
        img_height=o.img_height,
        img_width=o.img_width,
        grayscale=o.grayscale,
        stack_num=o.stack_num,
        frameskip=o.frameskip,
        maxpool=True,
        noop_max=o.noop_max,
        episodic_life=o.episodic_life,
        reward_clipping=o.reward_clipping,
        use_fire_reset=o.use_fire_reset,
    )


class FireOnReset(gymnasium.Wrapper, gymnasium.utils.RecordConstructorArgs):
    """After each reset, press FIRE for one emulator frame (if the game has FIRE).

    Wraps the raw (frameskip 1) ``AtariEnv`` below the preprocessing, which is where ale-py's
    vector env presses it too, so the first observed frame matches.
    """

    def __init__(self, env: gymnasium.Env) -> None:
        gymnasium.utils.RecordConstructorArgs.__init__(self)
        gymnasium.Wrapper.__init__(self, env)
        action_set = list(env.unwrapped._action_set)
        self._fire = action_set.index(ale_py.Action.FIRE) if ale_py.Action.FIRE in action_set else None

    def reset(self, **kwargs):  # type: ignore[override]
        """Reset, then one FIRE frame; reset again in the unlikely case that ends the game."""
        obs, info = self.env.reset(**kwargs)
        if self._fire is not None:
            obs, _, terminated, truncated, info = self.env.step(self._fire)
            if terminated or truncated:
                obs, info = self.env.reset()
        return obs, info


class RewardClip(gymnasium.RewardWrapper, gymnasium.utils.RecordConstructorArgs):
    """Clip each reward to [-1, 1] (only when ``AtariOptions.reward_clipping`` is on)."""

    def reward(self, reward: float) -> float:  # type: ignore[override]
        """The reward clipped to [-1, 1]."""
        return float(np.clip(reward, -1.0, 1.0))


def make_atari_env(spec: TaskSpec, options: AtariOptions | None = None) -> gymnasium.Env:
    """One Gymnasium Atari env with the same settings as :func:`make_atari_vector_env`.

    ``gymnasium.make("ALE/<Game>-v5", frameskip=1, ...)`` wrapped in ``AtariPreprocessing``
    (frame skip with max-pooling, resize, grey) and ``FrameStackObservation`` with zero
    padding. Observations are ``uint8`` of shape ``(stack, H, W)`` (``(stack, H, W, 3)``
    in RGB). Gymnasium's ``AtariPreprocessing`` needs OpenCV (``opencv-python-headless``).
    """
    _require_atari(spec)
    o = options or AtariOptions()
    env = gymnasium.make(
        spec.gym_id,
        frameskip=1,
        repeat_action_probability=o.repeat_action_probability,
        full_action_space=o.full_action_space,
        max_num_frames_per_episode=o.max_num_frames_per_episode,
    )
    if o.use_fire_reset:
        env = FireOnReset(env)
    env = AtariPreprocessing(
        env,
        noop_max=o.noop_max,
        frame_skip=o.frameskip,
        screen_size=(o.img_width, o.img_height),
        terminal_on_life_loss=o.episodic_life,
        grayscale_obs=o.grayscale,
        scale_obs=False,
    )
    if o.reward_clipping:
        env = RewardClip(env)
    return FrameStackObservation(env, o.stack_num, padding_type="zero")
