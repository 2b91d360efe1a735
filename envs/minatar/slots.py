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


def ring_append(objects: torch.Tensor, head: torch.Tensor, envs: torch.Tensor,
                values: torch.Tensor) -> torch.Tensor:
    """Write ``values`` (``[N, F]``) into slot ``head`` of each env in ``envs`` and return the
    next head, ``(head + 1) % capacity`` there. A ring keeps list order without compaction
    when no object outlives ``capacity`` appends: slot ``(head + j) % capacity`` holds the
    ``j``-th oldest (see :func:`ring_age`)."""
    index = head.view(-1, 1, 1).expand(-1, 1, objects.shape[2])
    current = objects.gather(1, index)
    objects.scatter_(1, index, torch.where(envs.view(-1, 1, 1), values.unsqueeze(1), current))
    return torch.where(envs, (head + 1) % objects.shape[1], head)


def ring_age(head: torch.Tensor, capacity: int) -> torch.Tensor:
    """``[N, capacity]``: each slot's place in list order (0 = oldest) for a ring at ``head``."""
    slot = torch.arange(capacity, device=head.device)
    return (slot - head.unsqueeze(1)) % capacity


def first(mask: torch.Tensor, order: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(any, slot)`` per env of an ``[N, K]`` bool mask: whether a slot is set, and the set
    slot first in list order (the lowest slot, or the lowest ``order``, e.g. a ring's age;
    undefined when none is set)."""
    if order is None:
        return mask.any(1), mask.to(torch.uint8).argmax(1)
    return mask.any(1), torch.where(mask, order, mask.shape[1]).argmin(1)
