"""Plasticity interventions and the monitor in your own PyTorch training loop.

No agent, environment or config of this project is used: only `torch` and `plasticity`.
The problem is a non-stationary regression stream, the smallest setting in which plasticity
is lost: every ``--task-every`` steps a new random "teacher" network defines the targets,
and the same student network must fit each new teacher in turn (as a Q-network must fit
targets that move as the policy changes). The four lines that matter are marked ``# <--``.

    python examples/custom_agent.py                  # 2000 steps, a few seconds on a CPU
    python examples/custom_agent.py --steps 600 --task-every 200 --redo-every 100

Output: a line of plasticity metrics every ``--log-every`` steps, and per task the mean
loss of its first and last 20 steps (``task 0: loss 0.8123 -> 0.0412``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

try:
    import plasticity as pl
except ModuleNotFoundError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import plasticity as pl

IN_DIM, HIDDEN = 8, 64
WINDOW = 20  # steps averaged for the "first" and "last" loss of a task


def make_teacher(generator: torch.Generator) -> nn.Module:
    """A fixed random network whose outputs are the targets of one task."""
    teacher = nn.Sequential(nn.Linear(IN_DIM, 16), nn.Tanh(), nn.Linear(16, 1))
    with torch.no_grad():
        for p in teacher.parameters():
            p.copy_(torch.randn(p.shape, generator=generator))
    return teacher.requires_grad_(False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="updates in total")
    parser.add_argument("--task-every", type=int, default=400, help="updates per task")
    parser.add_argument("--redo-every", type=int, default=500, help="updates between ReDo checks")
    parser.add_argument("--log-every", type=int, default=200, help="updates between metric lines")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if min(args.steps, args.task_every, args.redo_every, args.log_every, args.batch_size) < 1:
        parser.error("--steps, --task-every, --redo-every, --log-every and --batch-size must be >= 1")

    torch.set_num_threads(1)  # a tiny network: more threads only add overhead
    torch.manual_seed(args.seed)
    tasks = torch.Generator().manual_seed(args.seed + 1)

    # your own network and optimizer, built as usual
    model = nn.Sequential(nn.Linear(IN_DIM, HIDDEN), nn.ReLU(),
                          nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                          nn.Linear(HIDDEN, 1))
    model = pl.adalin.convert(model)                                       # <-- ReLU -> AdaLin
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)              # after convert: trains alpha too
    swr = pl.SWR(model, lam=1e-3)                                          # <-- records initial norms
    redo = pl.ReDo(model, optimizer, tau=0.1, every=args.redo_every)       # <-- recycles dormant units
    mon = pl.Monitor(model, tau=0.025)                                     # <-- measures, changes nothing

    losses: list[float] = []
    teacher = make_teacher(tasks)
    for step in range(1, args.steps + 1):
        x = torch.randn(args.batch_size, IN_DIM)
        loss = nn.functional.mse_loss(model(x), teacher(x))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        swr.after_step()        # rescale every layer towards its initial norm
        redo.after_step(x)      # every `every` updates: score units on x, recycle the dormant
        losses.append(loss.item())

        if step % args.log_every == 0:
            stats = mon.measure(x)  # after backward: the gradient norm is included
            print(f"step {step:5d}  loss {losses[-1]:.4f}"
                  f"  dormant_ratio {stats['plasticity/dormant_ratio']:.3f}"
                  f"  active_units {stats['plasticity/active_units']:.3f}"
                  f"  effective_rank {stats['plasticity/effective_rank']:.1f}"
                  f"  weight_norm {stats['plasticity/weight_norm']:.2f}"
                  f"  grad_norm {stats['plasticity/grad_norm']:.3f}"
                  f"  recycled {redo.recycled_total}", flush=True)
            # with TensorBoard: mon.log(writer, step)

        if step % args.task_every == 0 or step == args.steps:
            first = sum(losses[:WINDOW]) / len(losses[:WINDOW])
            last = sum(losses[-WINDOW:]) / len(losses[-WINDOW:])
            print(f"task {(step - 1) // args.task_every}: loss {first:.4f} -> {last:.4f}", flush=True)
            losses = []
            teacher = make_teacher(tasks)   # the task changes: new targets, same network
            # interventions acting at task boundaries would get: iv.on_task_switch(task)


if __name__ == "__main__":
    main()
