"""Ordered lists of game objects for N envs at once: fixed slots kept in insertion order.

The reference games keep their objects (bullets, enemies, divers) in Python lists, append
new ones at the end, walk them in order (or in reverse) and remove from anywhere. Which
object a bullet hits when two share a cell depends on that order, so a batched game keeps
it: a list is an ``[F, capacity, N]`` int8 tensor (``F`` fields per object, one of them
``alive`` in {0, 1}; the env dimension last, so that work per slot runs along contiguous
memory). After :func:`compact`, env ``i``'s objects sit in slots ``0 .. count_i - 1`` in list
order (the other slots are all zeros); removing an object only
clears its ``alive``, so the slot order stays the list order until the next compaction.

A game sizes ``capacity`` from the bound its rules put on the number of live objects;
:func:`append` to a full list drops the object (the bound makes that unreachable). Since the
live objects of a compacted list fill a prefix of the slots, a step may work on as many
first slots as the largest count (plus one for an append).
"""

from __future__ import annotations

import functools

import torch

from envs.minatar.base import pick

DTYPE = torch.int8
"""The lists' integer type: every field of the games' objects fits it (as do cell indices
``10 * y + x`` and counts of objects), at an eighth of int64's memory traffic; a bool mask is
the same bytes (:func:`flag`), so masks and fields meet in one dtype (no conversion)."""
SMALL = 8
"""Lists of up to this many slots are compacted by a sum, longer ones by a scatter."""


def flag(mask: torch.Tensor) -> torch.Tensor:
    """A bool mask as 0/1 of :data:`DTYPE` (the same bytes, no copy): ``pick(flag(m), a, b)``
    and ``flag(m) * a`` on lists then run in one dtype. Compiled, a conversion (Inductor's
    CPU code cannot reinterpret bools)."""
    if torch.compiler.is_compiling():
        return mask.to(DTYPE)
    return mask.view(DTYPE)


def truth(field: torch.Tensor) -> torch.Tensor:
    """A 0/1 field of :data:`DTYPE` as a bool mask (the same bytes, no copy; compiled, a
    conversion)."""
    if torch.compiler.is_compiling():
        return field.bool()
    return field.view(torch.bool)


def empty(num_envs: int, capacity: int, num_fields: int, device: torch.device) -> torch.Tensor:
    """An ``[F, capacity, N]`` list with no live object."""
    return torch.zeros(num_fields, capacity, num_envs, dtype=DTYPE, device=device)


def append(objects: torch.Tensor, count: int | torch.Tensor, envs: torch.Tensor,
           values: torch.Tensor) -> torch.Tensor:
    """Put ``values`` (``[F, N]``, ``alive`` field set to 1) after the last live object of
    each env in ``envs`` (``[N]`` bool); ``objects`` must be compacted. ``count`` is the
    live objects per env (``[N]``) or the index of the ``alive`` field to count them by."""
    capacity = objects.shape[1]
    if isinstance(count, int):
        count = objects[count].sum(0)
    count = count.to(objects.dtype)
    at = (lanes(capacity, objects.shape[2], count.dtype, objects.device) == count) & envs
    return pick(flag(at), values.to(objects.dtype).unsqueeze(1), objects)


def compact(objects: torch.Tensor, alive: int, count: bool = False):
    """Move each env's live objects to its first slots, keeping their order; the other slots
    become zeros. Slot ``j`` takes the live object with ``j`` live objects before it: for up
    to :data:`SMALL` slots as a sum over the one-hot ``[j, k]`` match (no scatter along a
    slot dimension, which is slow), else by one scatter. With ``count``, also returns the live
    objects per env (``[N]``)."""
    f, k, n = objects.shape
    live = truth(objects[alive])
    before = cumsum(live, 0)
    if k <= SMALL:
        rank = lanes(k, n, objects.dtype, objects.device, start=1).unsqueeze(1)
        match = flag((before == rank) & live)  # [j, k, N]
        out = (objects.unsqueeze(1) * match).sum(2, dtype=objects.dtype)
    else:
        out = objects.new_zeros(f, k + 1, n)
        out.scatter_(1, torch.where(live, before.long() - 1, k).expand(f, k, n), objects)
        out = out[:, :k]
    return (out, before[-1]) if count else out



def lanes(k: int, n: int, dtype: torch.dtype, device: torch.device, start: int = 0) -> torch.Tensor:
    """``[k, n]``: row ``i`` holds ``start + i`` in every env. Materialised (and cached) in eager
    mode: an operand broadcast along the contiguous env dimension takes a slow path."""
    if torch.compiler.is_compiling():
        return torch.arange(start, start + k, dtype=dtype, device=device).unsqueeze(1).expand(k, n)
    return _lanes(k, n, dtype, torch.device(device), start)


@functools.lru_cache(maxsize=64)
def _lanes(k: int, n: int, dtype: torch.dtype, device: torch.device, start: int) -> torch.Tensor:
    lane = torch.arange(start, start + k, dtype=dtype, device=device)
    return lane.unsqueeze(1).expand(k, n).contiguous()


def cumsum(mask: torch.Tensor, dim: int) -> torch.Tensor:
    """``mask.cumsum(dim)`` in :data:`DTYPE` for a short ``dim`` (a few slots), as one add per
    slot: the CPU's cumulative-sum kernel costs many times more than that for a few slots."""
    if torch.compiler.is_compiling():
        return mask.cumsum(dim, dtype=DTYPE)
    out = flag(mask).clone() if mask.dtype == torch.bool else mask.to(DTYPE, copy=True)
    part = out.unbind(dim)
    for k in range(1, len(part)):
        torch.add(part[k - 1], part[k], out=part[k])
    return out


def const(value: int | float, like: torch.Tensor) -> torch.Tensor:
    """``value`` as an ``[N]`` tensor of ``like``'s dtype and device (``N = like.shape[-1]``),
    to compare or combine with: the CPU kernels run an operation with a Python number many times
    slower than one with a tensor broadcast along the leading dimensions. Cached; never to be
    written to. Compiled, a new tensor (a constant of the graph)."""
    if torch.compiler.is_compiling():
        return torch.full((like.shape[-1],), value, dtype=like.dtype, device=like.device)
    return _const(value, like.shape[-1], like.dtype, like.device)


@functools.lru_cache(maxsize=256)
def _const(value: int | float, n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.full((n,), value, dtype=dtype, device=device)


def anyof(mask: torch.Tensor, dim: int) -> torch.Tensor:
    """``mask.any(dim)`` as the max of its bytes, which runs many times faster on the CPU in
    eager mode (compiled, ``any`` itself: Inductor fuses it)."""
    if torch.compiler.is_compiling():
        return mask.any(dim)
    return mask.view(torch.uint8).amax(dim).view(torch.bool)
