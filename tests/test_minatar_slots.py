"""The slot lists Seaquest keeps its objects in (``envs.minatar.slots``), against plain Python
lists: compaction keeps the list order by either of its two ways, an append goes after the last
live object, and each helper equals the torch operation it stands for, eager and compiled."""

from __future__ import annotations

import pytest
import torch

from envs.minatar import slots

ALIVE = 0


def random_lists(k: int, n: int, fields: int = 3, seed: int = 0) -> torch.Tensor:
    """``[fields, k, n]`` lists with random live slots anywhere (not compacted), dead slots random
    too; env 0's list is empty and env 1's full."""
    gen = torch.Generator().manual_seed(seed)
    objects = torch.randint(-20, 20, (fields, k, n), generator=gen, dtype=torch.int8)
    objects[ALIVE] = torch.randint(0, 2, (k, n), generator=gen, dtype=torch.int8)
    objects[ALIVE, :, 0], objects[ALIVE, :, 1] = 0, 1  # an empty list and a full one
    return objects


def python_compact(objects: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    f, k, n = objects.shape
    out, counts = torch.zeros_like(objects), []
    for env in range(n):
        live = [objects[:, j, env] for j in range(k) if objects[ALIVE, j, env] == 1]
        for j, obj in enumerate(live):
            out[:, j, env] = obj
        counts.append(len(live))
    return out, counts


@pytest.mark.parametrize("k", [3, slots.SMALL, slots.SMALL + 1, 32])  # by the one-hot sum, and by a scatter
def test_compact_moves_live_objects_to_the_front_in_list_order(k):
    objects = random_lists(k, 50, seed=k)
    expected, counts = python_compact(objects)
    out, count = slots.compact(objects, ALIVE, count=True)
    assert out.dtype == slots.DTYPE and torch.equal(out, expected)
    assert count.tolist() == counts and counts[:2] == [0, k]
    assert torch.equal(slots.compact(objects, ALIVE), expected)


def test_append_goes_after_the_last_live_object_of_the_chosen_envs():
    objects = slots.compact(random_lists(4, 40, seed=1), ALIVE)
    envs = torch.arange(40) % 3 != 0
    values = torch.stack([torch.ones(40, dtype=torch.long), torch.arange(40), -torch.arange(40)])
    for count in (ALIVE, objects[ALIVE].sum(0)):  # counted from the alive field, or given
        out = slots.append(objects, count, envs, values)
        for env in range(40):
            before = [objects[:, j, env].tolist() for j in range(4) if objects[ALIVE, j, env]]
            after = [out[:, j, env].tolist() for j in range(4) if out[ALIVE, j, env]]
            fits = envs[env] and len(before) < 4  # a full list drops the object
            assert after == before + ([values[:, env].tolist()] if fits else []), env


@pytest.mark.parametrize("dtype", [torch.bool, torch.int8])
def test_cumsum_equals_torchs_and_leaves_its_input_alone(dtype):
    mask = torch.randint(0, 2, (2, 5, 33), generator=torch.Generator().manual_seed(2)).to(dtype)
    kept = mask.clone()
    for dim in (0, 1, -2):
        out = slots.cumsum(mask, dim)
        assert out.dtype == slots.DTYPE and torch.equal(out, mask.cumsum(dim, dtype=slots.DTYPE)), dim
        assert torch.equal(mask, kept)


def test_helpers_equal_the_operations_they_stand_for():
    mask = torch.randint(0, 2, (3, 7), generator=torch.Generator().manual_seed(3)).bool()
    assert torch.equal(slots.flag(mask), mask.to(slots.DTYPE)) and slots.flag(mask).dtype == slots.DTYPE
    assert torch.equal(slots.truth(slots.flag(mask)), mask)
    assert torch.equal(slots.anyof(mask, 0), mask.any(0)) and torch.equal(slots.anyof(mask, 1), mask.any(1))
    lanes = slots.lanes(4, 7, torch.int16, "cpu", start=2)
    assert lanes.dtype == torch.int16 and torch.equal(lanes, torch.arange(2, 6, dtype=torch.int16)[:, None].expand(4, 7))
    like = torch.zeros(2, 7, dtype=torch.int16)
    c = slots.const(5, like)
    assert c.shape == (7,) and c.dtype == torch.int16 and c.tolist() == [5] * 7
    assert slots.const(5, like) is c  # cached: one tensor per value, length, dtype and device
    empty = slots.empty(6, 3, 2, torch.device("cpu"))
    assert empty.shape == (2, 3, 6) and empty.dtype == slots.DTYPE and not empty.any()


def test_the_compiled_branches_equal_the_eager_ones(monkeypatch):
    # what each helper runs under torch.compile (a new tensor, a conversion, torch's own op),
    # run eagerly here; the slow test_compiled_step_equals_eager_step compiles them for real
    mask = torch.randint(0, 2, (3, 5, 7), generator=torch.Generator().manual_seed(4)).bool()
    field = mask.to(slots.DTYPE)

    def helpers():
        return (slots.flag(mask), slots.truth(field), slots.lanes(5, 7, slots.DTYPE, mask.device, start=1),
                slots.cumsum(mask, 1), slots.const(3, field), slots.anyof(mask, 1))

    eager = helpers()
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    compiled = helpers()
    assert compiled[0].data_ptr() != mask.data_ptr()  # the other branch ran (eagerly, flag is a view)
    for name, a, b in zip(("flag", "truth", "lanes", "cumsum", "const", "anyof"), eager, compiled):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), name
