"""Normalised final scores of a run, one per task, from its `results.json`.

Atari tasks: `(R − random) / (human − random)` with the published random-policy and human
scores below. Other tasks: the continual `final[t]` score,

    final[t] = (R[V−1][t] − rand_t) / (R[v_1(t)][t] − rand_t)

with `R` the evaluation matrix, `V−1` the last visit, `v_1(t)` task t's first visit and
`rand_t` the random-policy return measured by the run; a denominator that is not positive (the
first visit learned nothing measurable) or a missing number gives `None`. The same definition
as the continual scores of `train.py scores`, written here so that a report needs nothing else.
"""

from __future__ import annotations

from typing import Any

#: (random, human) scores of the 57 Atari games, as used throughout the Atari literature
#: (random and human from Mnih et al. 2015, Nature, extended with Wang et al. 2016 (dueling
#: networks) for the remaining games; tabulated together in Badia et al. 2020, Agent57, appendix).
ATARI_RANDOM_HUMAN: dict[str, tuple[float, float]] = {
    "Alien": (227.8, 7127.7), "Amidar": (5.8, 1719.5), "Assault": (222.4, 742.0), "Asterix": (210.0, 8503.3),
    "Asteroids": (719.1, 47388.7), "Atlantis": (12850.0, 29028.1), "BankHeist": (14.2, 753.1),
    "BattleZone": (2360.0, 37187.5), "BeamRider": (363.9, 16926.5), "Berzerk": (123.7, 2630.4),
    "Bowling": (23.1, 160.7), "Boxing": (0.1, 12.1), "Breakout": (1.7, 30.5), "Centipede": (2090.9, 12017.0),
    "ChopperCommand": (811.0, 7387.8), "CrazyClimber": (10780.5, 35829.4), "DemonAttack": (152.1, 1971.0),
    "DoubleDunk": (-18.6, -16.4), "Enduro": (0.0, 860.5), "FishingDerby": (-91.7, -38.7), "Freeway": (0.0, 29.6),
    "Frostbite": (65.2, 4334.7), "Gopher": (257.6, 2412.5), "Gravitar": (173.0, 3351.4), "Hero": (1027.0, 30826.4),
    "IceHockey": (-11.2, 0.9), "Jamesbond": (29.0, 302.8), "Kangaroo": (52.0, 3035.0), "Krull": (1598.0, 2665.5),
    "KungFuMaster": (258.5, 22736.3), "MontezumaRevenge": (0.0, 4753.3), "MsPacman": (307.3, 6951.6),
    "NameThisGame": (2292.3, 8049.0), "Phoenix": (761.4, 7242.6), "Pitfall": (-229.4, 6463.7),
    "Pong": (-20.7, 14.6), "PrivateEye": (24.9, 69571.3), "Qbert": (163.9, 13455.0), "Riverraid": (1338.5, 17118.0),
    "RoadRunner": (11.5, 7845.0), "Robotank": (2.2, 11.9), "Seaquest": (68.4, 42054.7), "Skiing": (-17098.1, -4336.9),
    "Solaris": (1236.3, 12326.7), "SpaceInvaders": (148.0, 1668.7), "StarGunner": (664.0, 10250.0),
    "Tennis": (-23.8, -8.3), "TimePilot": (3568.0, 5229.2), "Tutankham": (11.4, 167.6), "UpNDown": (533.4, 11693.2),
    "Venture": (0.0, 1187.5), "VideoPinball": (16256.9, 17667.9), "WizardOfWor": (563.5, 4756.5),
    "YarsRevenge": (3092.9, 54576.9), "Zaxxon": (32.5, 9173.3),
}


def atari_tasks(config: dict[str, Any]) -> set[str]:
    """Names of the run's Atari tasks (from `--env.games` and `atari:` task ids)."""
    env = config.get("env", {})
    ids = list(env.get("tasks") or []) if not env.get("games") else [f"atari:{g}" for g in env["games"]]
    return {i.split(":", 1)[1] for i in ids if i.startswith("atari:")}


def first_visits(results: dict[str, Any]) -> dict[int, int]:
    """task index → index of its first visit that has an evaluation row."""
    first: dict[int, int] = {}
    for v, visit in enumerate(results["visits"][:len(results["matrix"])]):
        first.setdefault(visit["task"], v)
    return first


def normalisation(task: str, atari: bool) -> str:
    if atari and task in ATARI_RANDOM_HUMAN:
        rnd, human = ATARI_RANDOM_HUMAN[task]
        return f"Atari human-normalised: (R - {rnd}) / ({human} - {rnd})"
    return "(R_last - random) / (R_first_visit - random)"


def final_scores(results: dict[str, Any], atari: set[str] = frozenset()) -> list[float | None]:
    """Normalised final score per task of `results` (the parsed results.json); see the module doc."""
    matrix = results["matrix"]
    if not matrix:
        return [None] * len(results["tasks"])
    first = first_visits(results)
    out: list[float | None] = []
    for t, name in enumerate(results["tasks"]):
        last = matrix[-1][t]
        if name in atari and name in ATARI_RANDOM_HUMAN:
            rnd, human = ATARI_RANDOM_HUMAN[name]
            out.append((last - rnd) / (human - rnd))
            continue
        rand = results["random"][t] if t < len(results.get("random") or []) else None
        if rand is None or t not in first or last is None:
            out.append(None)
            continue
        denom = matrix[first[t]][t] - rand
        out.append((last - rand) / denom if denom > 0 else None)
    return out


def visit_returns(results: dict[str, Any], task: int) -> list[float]:
    """Task `task`'s evaluation return at the end of each of its visits (the k-th entry: k-th visit)."""
    return [results["matrix"][v][task] for v, visit in enumerate(results["visits"][:len(results["matrix"])])
            if visit["task"] == task]


def continual_means(results: dict[str, Any]) -> dict[str, list[float | None]]:
    """Per task, the mean over its later visits of the continual scores of `runner.scores`:
    `plasticity[t]` = mean over k ≥ 2 of `(R[v_k(t)][t] − rand_t) / (R[v_1(t)][t] − rand_t)`, and
    `forgetting[t]` = mean over k of `(R[v_k(t)][t] − R[v_{k+1}(t)−1][t]) / (R[v_k(t)][t] − rand_t)`
    (the null scores left out; None when none is left)."""
    from runner.scores import compute_scores

    scores = compute_scores(results)
    out: dict[str, list[float | None]] = {}
    for key in ("plasticity", "forgetting"):
        per_task = []
        for by_k in scores[key]:
            values = [v for v in by_k.values() if v is not None]
            per_task.append(sum(values) / len(values) if values else None)
        out[key] = per_task
    return out
