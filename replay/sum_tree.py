"""An array-based sum tree on a torch device, for proportional (prioritized) sampling.

The tree is one flat tensor of length ``2 * width`` (``width`` = the number of leaves
rounded up to a power of two). Node ``1`` is the root, node ``i`` has children ``2i`` and
``2i + 1``, and leaf ``j`` lives at ``width + j``; node ``0`` is unused. Every operation is a
fixed number of vectorised torch ops (one per tree level), with no host round trip, so a
whole batch of leaves is updated or sampled at once on the GPU or the CPU.

Parents are always recomputed from their children (never patched with a delta), so
rounding errors do not accumulate however long the tree lives.
"""

from __future__ import annotations

import torch


def _default_dtype(device: torch.device) -> torch.dtype:
    # float64 keeps prefix sums exact enough for millions of leaves; MPS has no float64.
    return torch.float32 if device.type == "mps" else torch.float64


class SumTree:
    """Non-negative values on ``size`` leaves with O(log n) batched update and search."""

    def __init__(self, size: int, device: torch.device | str = "cpu", dtype: torch.dtype | None = None):
        if size < 1:
            raise ValueError(f"SumTree size must be >= 1, got {size}")
        self.device = torch.device(device)
        self.size = size
        self.depth = max(1, (size - 1).bit_length())  # levels below the root
        self.width = 1 << self.depth
        self.tree = torch.zeros(2 * self.width, dtype=dtype or _default_dtype(self.device), device=self.device)
        self._children = self.tree.view(self.width, 2)  # row i = nodes 2i, 2i+1: the children of i

    @property
    def total(self) -> torch.Tensor:
        """Sum of all leaves (a 0-d device tensor)."""
        return self.tree[1]

    def get(self, leaves: torch.Tensor) -> torch.Tensor:
        """Values of the given leaves."""
        return self.tree.index_select(0, leaves.reshape(-1) + self.width).view(leaves.shape)

    def set(self, leaves: torch.Tensor, values: torch.Tensor) -> None:
        """Set ``leaves[k]`` to ``values[k]`` and refresh their ancestors.

        Duplicate leaves are allowed (one of the values wins); refreshing a parent twice is
        harmless because it is recomputed from its children.
        """
        nodes = leaves.reshape(-1).long() + self.width
        self.tree.index_copy_(0, nodes, values.reshape(-1).to(self.tree.dtype))
        for _ in range(self.depth):
            nodes = nodes // 2
            self.tree.index_copy_(0, nodes, self._children.index_select(0, nodes).sum(dim=1))

    def find(self, mass: torch.Tensor) -> torch.Tensor:
        """Leaf index holding cumulative mass ``mass`` (each in ``[0, total)``).

        A leaf of value 0 is never returned while the total is positive: a step to the right
        child is only taken when that child holds mass, which guards against rounding when
        ``mass`` is at the very top of the range.
        """
        mass = mass.to(self.tree.dtype)
        nodes = torch.ones_like(mass, dtype=torch.long)
        for _ in range(self.depth):
            children = self._children.index_select(0, nodes)
            left_mass = children[:, 0]
            go_right = (mass >= left_mass) & (children[:, 1] > 0)
            mass = mass - left_mass * go_right
            nodes = 2 * nodes + go_right
        return nodes - self.width

    def leaves(self) -> torch.Tensor:
        """The ``size`` leaf values (a view)."""
        return self.tree[self.width : self.width + self.size]

    def load_leaves(self, values: torch.Tensor) -> None:
        """Set the first ``len(values)`` leaves, zero the others and rebuild every parent."""
        if len(values) > self.size:
            raise ValueError(f"{len(values)} leaf values for a SumTree of {self.size} leaves")
        self.tree.zero_()
        self.tree[self.width : self.width + len(values)] = values.to(self.tree)
        level = self.width
        while level > 1:  # nodes level/2 .. level-1 are the parents of level .. 2*level-1
            self.tree[level // 2 : level] = self._children[level // 2 : level].sum(dim=1)
            level //= 2

    def nbytes(self) -> int:
        return self.tree.numel() * self.tree.element_size()
