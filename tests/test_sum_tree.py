"""The sum tree of prioritized replay, against hand-computed layouts, sums and searches."""

from __future__ import annotations

import pytest
import torch

from replay.sum_tree import SumTree


@pytest.mark.parametrize("size,depth,width", [(1, 1, 2), (2, 1, 2), (3, 2, 4), (4, 2, 4), (5, 3, 8), (9, 4, 16)])
def test_layout_rounds_the_leaves_up_to_a_power_of_two(size, depth, width):
    tree = SumTree(size)
    assert (tree.size, tree.depth, tree.width) == (size, depth, width)
    assert tree.tree.shape == (2 * width,) and tree.tree.dtype == torch.float64  # float64 off MPS
    assert tree.device == torch.device("cpu") and tree.nbytes() == 2 * width * 8
    assert tree.leaves().tolist() == [0.0] * size and float(tree.total) == 0.0


def test_size_below_one_is_refused_and_a_dtype_can_be_chosen():
    with pytest.raises(ValueError, match="^SumTree size must be >= 1, got 0$"):
        SumTree(0)
    tree = SumTree(3, dtype=torch.float32)
    assert tree.tree.dtype == torch.float32 and tree.nbytes() == 8 * 4


def test_set_refreshes_every_ancestor_and_get_keeps_the_shape():
    tree = SumTree(5)  # width 8, depth 3: leaves at nodes 8..12
    tree.set(torch.tensor([0, 2, 4]), torch.tensor([1.0, 2.0, 4.0]))
    assert tree.tree.tolist() == [0, 7, 3, 4, 1, 2, 4, 0, 1, 0, 2, 0, 4, 0, 0, 0]
    assert float(tree.total) == 7.0
    assert tree.get(torch.tensor([[4, 0], [2, 1]])).tolist() == [[4.0, 1.0], [2.0, 0.0]]
    tree.set(torch.tensor([2, 2]), torch.tensor([0.5, 0.5]))  # duplicates: parents recomputed, not patched
    tree.set(torch.tensor([[1]]), torch.tensor([[3.0]]))  # any shape of leaves and values
    assert tree.leaves().tolist() == [1.0, 3.0, 0.5, 0.0, 4.0]
    assert tree.tree[1:8].tolist() == [8.5, 4.5, 4.0, 4.0, 0.5, 4.0, 0.0]


def test_find_walks_the_prefix_sums_left_closed():
    tree = SumTree(4)
    tree.set(torch.arange(4), torch.tensor([1.0, 2.0, 3.0, 4.0]))  # prefix sums 0, 1, 3, 6, 10
    mass = torch.tensor([0.0, 0.999, 1.0, 2.5, 3.0, 5.999, 6.0, 9.999])
    assert tree.find(mass).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_find_never_returns_an_empty_leaf_while_the_total_is_positive():
    tree = SumTree(8)
    tree.set(torch.tensor([1, 2, 5]), torch.tensor([1.0, 1.0, 2.0]))
    # at (or past, by rounding) the top of the range: the last leaf with mass, not an empty one
    assert tree.find(torch.tensor([4.0, 4.5])).tolist() == [5, 5]
    assert tree.find(torch.tensor([0.0, 1.0, 2.0, 3.999])).tolist() == [1, 2, 5, 5]
    lone = SumTree(2)
    lone.set(torch.tensor([0]), torch.tensor([1.0]))
    assert lone.find(torch.tensor([1.0])).tolist() == [0]


def test_load_leaves_zeroes_the_rest_and_rebuilds_every_parent():
    tree = SumTree(5)
    tree.set(torch.arange(5), torch.full((5,), 9.0))
    tree.load_leaves(torch.tensor([1.0, 2.0, 0.0, 4.0], dtype=torch.float32))
    assert tree.tree.dtype == torch.float64
    assert tree.tree.tolist() == [0, 7, 7, 0, 3, 4, 0, 0, 1, 2, 0, 4, 0, 0, 0, 0]
    tree.load_leaves(torch.arange(1.0, 6.0))  # exactly `size` values
    assert float(tree.total) == 15.0 and tree.find(torch.tensor([14.5])).tolist() == [4]
    tree.load_leaves(torch.zeros(0))
    assert float(tree.total) == 0.0 and tree.tree.abs().sum() == 0
    with pytest.raises(ValueError, match="^6 leaf values for a SumTree of 5 leaves$"):
        tree.load_leaves(torch.ones(6))


def test_apple_gpus_get_float32_every_other_device_float64():
    from replay.sum_tree import _default_dtype

    assert _default_dtype(torch.device("mps")) == torch.float32  # MPS has no float64
    assert _default_dtype(torch.device("cpu")) == torch.float64
    assert _default_dtype(torch.device("cuda")) == torch.float64
