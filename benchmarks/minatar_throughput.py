"""MinAtar environment throughput: the batched torch games vs the reference package vs gymnax.

Random actions, N envs, env steps per second (N x vector steps / s), per game and N:

- ``torch``: ``envs.minatar`` game on the CPU; each vector step draws random actions with a
  torch generator, steps, resets the envs that ended (same step) and builds the observation;
- ``reference``: the ``minatar`` package, N ``Environment`` objects stepped in a Python loop
  (``act``, ``state()``, ``reset()`` when done);
- ``compiled``: ``torch`` with ``compile=True`` (``torch.compile`` of the game's step, with its
  draws from one pre-drawn block; prints how long its first steps took, compilation included);
- ``gymnax``: ``gymnax.make("<Game>-MinAtar")``, ``jax.jit(jax.vmap(env.step))`` with its
  auto-reset, random actions drawn inside the same jitted call, one call per vector step,
  ``block_until_ready`` every step (Seaquest is not in gymnax 1.0).

Every measurement runs in its own child process with one thread (``torch.set_num_threads(1)``;
XLA with ``--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1``), so the
comparison is per core; the children of one repeat run one after the other with the order
rotated each repeat (the host is shared and drifts). Each child warms up (jax: compiles)
first, then times ``--seconds`` of stepping.

    python benchmarks/minatar_throughput.py --repeats 3 --seconds 1.5
    python benchmarks/minatar_throughput.py --games Breakout --sizes 4096 --sides torch compiled gymnax

Needs the ``[bench]`` extra (``gymnax``, ``jax``) for the gymnax column; prints a markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GAMES = ["Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders"]
GYMNAX = {"Asterix", "Breakout", "Freeway", "SpaceInvaders"}
SIZES = [1, 64, 1024, 4096]


def child_torch(game: str, sizes: list[int], seconds: float, compile: bool = False) -> dict[int, float]:
    import torch

    torch.set_num_threads(1)
    from envs.minatar import game_class

    out = {}
    for n in sizes:
        t0 = time.perf_counter()
        env = game_class(game)(n, seed=0, compile=compile)
        gen = torch.Generator().manual_seed(1)

        def step():
            reward, done = env.step(torch.randint(0, 6, (n,), generator=gen))
            env.reset(done)
            return env.observation()

        for _ in range(10):
            step()
        if compile:
            print(f"compiled {game} N={n}: first steps took {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        k, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            step()
            k += 1
        out[n] = k * n / (time.perf_counter() - t0)
    return out


def child_compiled(game: str, sizes: list[int], seconds: float) -> dict[int, float]:
    return child_torch(game, sizes, seconds, compile=True)


def child_reference(game: str, sizes: list[int], seconds: float) -> dict[int, float]:
    import numpy as np
    from minatar import Environment

    from envs.minatar import GAMES as TABLE

    out = {}
    rng = np.random.default_rng(1)
    for n in sizes:
        envs = [Environment(TABLE[game][0]) for _ in range(n)]
        for i, e in enumerate(envs):
            e.seed(i)
            e.reset()
        k, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for e, a in zip(envs, rng.integers(0, 6, n).tolist()):
                _, done = e.act(a)
                e.state()
                if done:
                    e.reset()
            k += 1
        out[n] = k * n / (time.perf_counter() - t0)
    return out


def child_gymnax(game: str, sizes: list[int], seconds: float) -> dict[int, float]:
    import gymnax
    import jax

    env, params = gymnax.make(f"{game}-MinAtar")
    num_actions = env.action_space(params).n
    out = {}
    for n in sizes:
        vstep = jax.vmap(env.step, in_axes=(0, 0, 0, None))

        @jax.jit
        def step(key, state):
            key, k_act, k_step = jax.random.split(key, 3)
            actions = jax.random.randint(k_act, (n,), 0, num_actions)
            obs, state, *_ = vstep(jax.random.split(k_step, n), state, actions, params)
            return key, state, obs

        key = jax.random.PRNGKey(0)
        _, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, n), params)
        for _ in range(10):
            key, state, obs = step(key, state)
        obs.block_until_ready()
        k, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            key, state, obs = step(key, state)
            obs.block_until_ready()
            k += 1
        out[n] = k * n / (time.perf_counter() - t0)
    return out


CHILDREN = {"torch": child_torch, "reference": child_reference, "gymnax": child_gymnax,
            "compiled": child_compiled}


def run_child(side: str, game: str, sizes: list[int], seconds: float) -> dict[int, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
           "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, __file__, "--child", side, "--games", game, "--sizes", *map(str, sizes),
           "--seconds", str(seconds)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{side} {game} failed:\n{proc.stderr[-2000:]}")
    for line in proc.stderr.splitlines():
        if line.startswith("compiled "):
            print(line, flush=True)
    return {int(k): v for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}


def available(game: str) -> bool:
    from envs.minatar import game_class

    try:
        game_class(game)
        return True
    except ValueError:
        return False


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--games", nargs="+", default=GAMES)
    p.add_argument("--sizes", nargs="+", type=int, default=SIZES)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=1.5)
    p.add_argument("--sides", nargs="+", default=["torch", "reference", "gymnax"],
                   help="torch, reference, gymnax, compiled (torch with compile=True)")
    p.add_argument("--child", choices=list(CHILDREN))
    args = p.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](args.games[0], args.sizes, args.seconds)))
        return

    sys.path.insert(0, str(ROOT))
    games = [g for g in args.games if available(g)]
    skipped = sorted(set(args.games) - set(games))
    results: dict[tuple[str, str], list[dict[int, float]]] = {}
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"load average {os.getloadavg()[0]:.1f}, cpus {os.cpu_count()}; skipped (not built): {skipped}")
    for r in range(args.repeats):
        for game in games:
            sides = [s for s in args.sides if s != "gymnax" or game in GYMNAX]
            sides = sides[r % len(sides):] + sides[: r % len(sides)]  # rotate the order
            for side in sides:
                res = run_child(side, game, args.sizes, args.seconds)
                results.setdefault((game, side), []).append(res)
                print(f"repeat {r} {game:13s} {side:9s} " + "  ".join(f"N={n}: {v:,.0f}" for n, v in res.items()),
                      flush=True)

    print("\n| game | N | torch steps/s | reference steps/s | gymnax steps/s | torch / reference | torch / gymnax |"
          + (" compiled steps/s | compiled / gymnax |" if "compiled" in args.sides else ""))
    print("|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if "compiled" in args.sides else ""))
    for game in games:
        for n in args.sizes:
            med = {side: statistics.median(rep[n] for rep in results[(game, side)])
                   for side in args.sides if (game, side) in results}
            t, ref, gx = med.get("torch"), med.get("reference"), med.get("gymnax")
            fmt = lambda v: f"{v:,.0f}" if v else "-"  # noqa: E731
            ratio = lambda a, b: f"{a / b:.2f}x" if a and b else "-"  # noqa: E731
            comp = med.get("compiled")
            extra = f" {fmt(comp)} | {ratio(comp, gx)} |" if "compiled" in args.sides else ""
            print(f"| {game} | {n} | {fmt(t)} | {fmt(ref)} | {fmt(gx)} | {ratio(t, ref)} | {ratio(t, gx)} |{extra}")


if __name__ == "__main__":
    main()
