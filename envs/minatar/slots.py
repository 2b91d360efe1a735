"""Ordered lists of game objects for N envs at once: fixed slots kept in insertion order.

The reference games keep their objects (bullets, enemies, divers) in Python lists, append
new ones at the end, walk them in order (or in reverse) and remove from anywhere. Which
object a bullet hits when two share a cell depends on that order, so a batched game keeps
it: a list is an ``[N, capacity, F]`` int64 tensor (``F`` fields per object, one of them
``alive`` in {0, 1}). After :func:`compact`, env ``i``'s objects sit in slots
``0 .. count_i - 1`` in list order; removing an object only clears its ``alive``, so the
slot order stays the list order until the next compaction.

A game sizes ``capacity`` from the bound its rules put on the number of live objects;
:func:`append` to a full list drops the object (the bound makes that unreachable).
"""

from __future__ import annotations

import torch


def empty(num_envs: int, capacity: int, num_fields: int, device: torch.device) -> torch.Tensor:
    """An ``[N, capacity, num_fields]`` list with no live object."""
    return torch.zeros(num_envs, capacity, num_fields, dtype=torch.long, device=device)


def append(objects: torch.Tensor, alive: int, envs: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Put ``values`` (``[N, F]``, ``alive`` field set to 1) after the last live object of
    each env in ``envs`` (``[N]`` bool); ``objects`` must be compacted."""
    capacity = objects.shape[1]
    count = objects[:, :, alive].sum(1)
    slot = torch.arange(capacity, device=objects.device)
    at = (slot == count.unsqueeze(1)) & envs.unsqueeze(1)
    return torch.where(at.unsqueeze(2), values.unsqueeze(1), objects)


def compact(objects: torch.Tensor, alive: int) -> torch.Tensor:
    """Move each env's live objects to its first slots, keeping their order; clear the rest."""
    dead = (objects[:, :, alive] == 0).to(torch.uint8)
    order = torch.sort(dead, dim=1, stable=True).indices
    moved = torch.gather(objects, 1, order.unsqueeze(2).expand_as(objects))
    return moved * moved[:, :, alive : alive + 1]


def first(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(any, index)`` per env of an ``[N, K]`` bool mask: whether a slot is set, and the
    lowest set slot (0 when none)."""
    return mask.any(1), mask.to(torch.uint8).argmax(1)
