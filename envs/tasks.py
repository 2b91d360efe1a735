"""Task ids: parsing and validation of ``"atari:<Game>"``, ``"gym:<gymnasium id>"`` and
``"minatar:<Game>"``.

A task id names one environment of a schedule:

- ``"atari:Pong"``, ``"atari:SpaceInvaders"``: an Atari 2600 game under the name ALE v5
  gives it (``ALE/SpaceInvaders-v5``). The name is case-insensitive and ale-py's snake
  case ROM id is accepted too (``"atari:space_invaders"``); the canonical form is CamelCase.
- ``"gym:CartPole-v1"``, ``"gym:HalfCheetah-v5"``: any id in Gymnasium's registry
  (Atari entries excluded: use the ``atari:`` form for those).
- ``"minatar:Breakout"``, ``"minatar:SpaceInvaders"``: one of MinAtar's five games (Asterix,
  Breakout, Freeway, Seaquest, SpaceInvaders), run as a batched torch program on the training
  device (``envs/minatar``). Case-insensitive; the reference's snake case
  (``"minatar:space_invaders"``) is accepted too.

Every error a user can make here (unknown prefix, unknown game or id, missing extra such
as MuJoCo) raises ``ValueError`` with one line naming the bad value and what is valid.
Parsing creates no environment; :func:`parse_task` is cheap enough to run at start-up.
"""

from __future__ import annotations

import difflib
import functools
import importlib
from dataclasses import dataclass
from typing import Literal

import ale_py
import gymnasium

gymnasium.register_envs(ale_py)

TaskKind = Literal["atari", "gym", "minatar"]

# Gymnasium entry-point packages that need an optional dependency: (module, install hint).
_EXTRAS: dict[str, tuple[str, str, str]] = {
    "gymnasium.envs.mujoco": ("mujoco", "MuJoCo", "pip install '.[mujoco]'"),
    "gymnasium.envs.box2d": ("Box2D", "Box2D", "pip install 'gymnasium[box2d]'"),
}


@dataclass(frozen=True)
class TaskSpec:
    """One parsed task: what to build and how to name it."""

    id: str
    """Canonical task id, e.g. ``"atari:Pong"`` or ``"gym:CartPole-v1"``."""
    kind: TaskKind
    """``"atari"`` (ale-py), ``"gym"`` (``gymnasium.make``) or ``"minatar"`` (``envs.minatar``)."""
    name: str
    """Short name usable in a TensorBoard tag, e.g. ``"Pong"`` or ``"CartPole-v1"``."""
    target: str
    """What the factory builds: ale-py ROM id (``"pong"``), Gymnasium id (``"CartPole-v1"``) or
    MinAtar game name (``"Breakout"``)."""

    @property
    def gym_id(self) -> str:
        """The Gymnasium registry id of this task (``"ALE/Pong-v5"`` for Atari games)."""
        if self.kind == "minatar":
            return f"MinAtar/{self.name}-v0"  # the reference package's id (full action set)
        return f"ALE/{self.name}-v5" if self.kind == "atari" else self.target


@functools.cache
def atari_games() -> dict[str, str]:
    """Map ALE v5 game name (CamelCase, e.g. ``"SpaceInvaders"``) to ale-py ROM id."""
    rom_ids = set(ale_py.roms.get_all_rom_ids())
    games: dict[str, str] = {}
    for env_id, spec in gymnasium.registry.items():
        if env_id.startswith("ALE/") and env_id.endswith("-v5"):
            rom = spec.kwargs.get("game")
            if rom in rom_ids:
                games[env_id[len("ALE/") : -len("-v5")]] = rom
    return dict(sorted(games.items()))


def _fold(name: str) -> str:
    """Case- and underscore-insensitive key: ``"Space_Invaders"`` -> ``"spaceinvaders"``."""
    return name.replace("_", "").replace("-", "").lower()


def _suggest(bad: str, candidates: list[str], fold: bool = False) -> str:
    """A ``" (did you mean 'X' or 'Y'?)"`` hint from difflib, or an empty string."""
    if fold:
        by_key = {_fold(c): c for c in candidates}
        keys = difflib.get_close_matches(_fold(bad), list(by_key), n=3, cutoff=0.6)
        close = [by_key[k] for k in keys]
    else:
        close = difflib.get_close_matches(bad, candidates, n=3, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"


def parse_atari_game(game: str) -> TaskSpec:
    """The spec of Atari game ``game`` (case-insensitive CamelCase name or ROM id)."""
    games = atari_games()
    by_key = {_fold(name): name for name in games}
    name = by_key.get(_fold(game))
    if name is None:
        raise ValueError(
            f"unknown Atari game {game!r} in task 'atari:{game}'"
            f"{_suggest(game, list(games), fold=True)}; valid games: {', '.join(games)}"
        )
    return TaskSpec(id=f"atari:{name}", kind="atari", name=name, target=games[name])


def _is_atari_entry(spec: gymnasium.envs.registration.EnvSpec) -> bool:
    """Whether a registry entry is one of ale-py's Atari environments."""
    return isinstance(spec.entry_point, str) and spec.entry_point.startswith("ale_py")


def _check_extra(task_id: str, entry_point: object) -> None:
    """Raise a one-line ``ValueError`` when the env's optional dependency cannot be imported.

    Checks the extra's main module (e.g. ``mujoco``), then imports the env's own module,
    which catches the extra's other dependencies (Gymnasium's MuJoCo envs need ``imageio``).
    """
    if not isinstance(entry_point, str):
        return
    for package, (module, label, hint) in _EXTRAS.items():
        if not entry_point.startswith(package):
            continue
        try:
            importlib.import_module(module)
        except ImportError:
            raise ValueError(f"task {task_id!r} needs {label}: {hint}") from None
        try:
            importlib.import_module(entry_point.split(":")[0])
        except ImportError as err:
            raise ValueError(
                f"task {task_id!r} needs {label} (missing module {err.name!r}): {hint}"
            ) from None


def parse_gym_id(env_id: str) -> TaskSpec:
    """The spec of Gymnasium environment ``env_id`` (must be in the registry, not Atari)."""
    task_id = f"gym:{env_id}"
    spec = gymnasium.registry.get(env_id)
    if spec is not None and _is_atari_entry(spec):
        game = env_id.removeprefix("ALE/").split("-")[0].removesuffix("NoFrameskip")
        raise ValueError(
            f"task {task_id!r} is an Atari game: use 'atari:{game}' (ALE v5 settings)"
        )
    if spec is None:
        valid = [k for k, s in gymnasium.registry.items() if not _is_atari_entry(s)]
        raise ValueError(
            f"unknown Gymnasium id {env_id!r} in task {task_id!r}"
            f"{_suggest(env_id, valid)}; see gymnasium registry "
            "(gymnasium.pprint_registry())"
        )
    _check_extra(task_id, spec.entry_point)
    return TaskSpec(id=task_id, kind="gym", name=env_id.replace("/", "_"), target=env_id)


def parse_minatar_game(game: str) -> TaskSpec:
    """The spec of MinAtar game ``game`` (case- and underscore-insensitive)."""
    from envs.minatar import GAMES

    by_key = {_fold(name): name for name in GAMES}
    name = by_key.get(_fold(game))
    if name is None:
        raise ValueError(
            f"unknown MinAtar game {game!r} in task 'minatar:{game}'"
            f"{_suggest(game, list(GAMES), fold=True)}; valid games: {', '.join(GAMES)}"
        )
    return TaskSpec(id=f"minatar:{name}", kind="minatar", name=name, target=name)


def parse_task(task_id: str) -> TaskSpec:
    """Parse and validate one task id; raise a one-line ``ValueError`` if it is bad."""
    if not isinstance(task_id, str):
        raise ValueError(f"task id must be a string like 'atari:Pong', got {task_id!r}")
    prefix, sep, rest = task_id.partition(":")
    if sep and prefix.strip().lower() == "atari":
        return parse_atari_game(rest.strip())
    if sep and prefix.strip().lower() == "gym":
        return parse_gym_id(rest.strip())
    if sep and prefix.strip().lower() == "minatar":
        return parse_minatar_game(rest.strip())
    hint = ""
    if not sep:
        if _fold(task_id) in {_fold(n) for n in atari_games()}:
            hint = f" (did you mean 'atari:{parse_atari_game(task_id).name}'?)"
        elif task_id in gymnasium.registry:
            hint = f" (did you mean 'gym:{task_id}'?)"
    raise ValueError(
        f"task {task_id!r} must start with 'minatar:', 'atari:' or 'gym:'{hint}, "
        "e.g. 'atari:Pong', 'gym:CartPole-v1' or 'minatar:Breakout'"
    )


def parse_tasks(task_ids: list[str] | tuple[str, ...]) -> list[TaskSpec]:
    """Parse a schedule's task list: non-empty, no duplicates, one kind (Atari, MinAtar or Gymnasium).

    Whether the tasks agree on discrete versus continuous actions needs their action
    spaces; :func:`envs.task_envs.build_task_envs` checks that when it builds them.
    """
    if isinstance(task_ids, str) or len(task_ids) == 0:
        raise ValueError(
            f"tasks must be a non-empty list of task ids like ['atari:Pong'], got {task_ids!r}"
        )
    specs = [parse_task(t) for t in task_ids]
    seen: set[str] = set()
    for spec in specs:
        if spec.id in seen:
            raise ValueError(
                f"task {spec.id!r} appears twice in {list(task_ids)}; "
                "list each task once and use cycles to revisit it"
            )
        seen.add(spec.id)
    kinds = {s.kind for s in specs}
    if "minatar" in kinds and len(kinds) > 1:
        minatar = [s.id for s in specs if s.kind == "minatar"]
        other = [s.id for s in specs if s.kind != "minatar"]
        raise ValueError(
            f"cannot mix MinAtar tasks {minatar} with other tasks {other} in one schedule "
            "(MinAtar runs as batched device tensors with 10x10 grid observations)"
        )
    if len(kinds) > 1:
        atari = [s.id for s in specs if s.kind == "atari"]
        other = [s.id for s in specs if s.kind != "atari"]
        raise ValueError(
            f"cannot mix Atari tasks {atari} with non-Atari tasks {other} in one schedule "
            "(observations differ: frames versus vectors)"
        )
    return specs
