"""Environments: factories for Atari and Gymnasium tasks, and the task schedule.

``envs`` imports nothing from ``agents`` or ``plasticity``.
"""

from __future__ import annotations

from envs.atari import AtariOptions, make_atari_env, make_atari_vector_env
from envs.gym_tasks import (
    PadObservation,
    RescaleActionToTask,
    make_gym_env,
    make_gym_vector_env,
)
from envs.schedule import Episode, StepResult, TaskSchedule, TaskSwitch, visit_seed
from envs.task_envs import TaskEnvs, build_task_envs
from envs.tasks import TaskSpec, atari_games, parse_task, parse_tasks

__all__ = [
    "AtariOptions",
    "Episode",
    "PadObservation",
    "RescaleActionToTask",
    "StepResult",
    "TaskEnvs",
    "TaskSchedule",
    "TaskSpec",
    "TaskSwitch",
    "atari_games",
    "build_task_envs",
    "make_atari_env",
    "make_atari_vector_env",
    "make_gym_env",
    "make_gym_vector_env",
    "parse_task",
    "parse_tasks",
    "visit_seed",
]
