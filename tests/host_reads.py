"""Catch the operations that read a tensor's value on the host.

On an accelerator such an operation waits for the device to finish everything queued before
it. On a CPU it costs nothing, so a test run there cannot feel it; :class:`HostReads` lists
them instead (a ``TorchDispatchMode``, which sees every ATen call made under it):

- ``_local_scalar_dense``: ``item()``, ``int(t)``, ``float(t)``, ``bool(t)``;
- operations whose output size depends on values: ``nonzero``, ``masked_select``,
  ``unique``, ``repeat_interleave`` without ``output_size``, and indexing with a bool mask
  (``t[mask]``, ``t[mask] = v``);
- ``equal`` and ``is_nonzero`` (a host bool).

What it cannot see on a CPU: a copy to the host (``.cpu()``, ``.numpy()``, ``.tolist()`` of a
tensor already there do not reach the dispatcher).
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
READS = {
    aten._local_scalar_dense.default, aten.nonzero.default, aten.masked_select.default,
    aten._unique2.default, aten.unique_dim.default, aten.unique_consecutive.default,
    aten.equal.default, aten.is_nonzero.default,
}
INDEXING = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default, aten._index_put_impl_.default}


class HostReads(TorchDispatchMode):
    """Within ``with HostReads() as reads:``, ``reads.calls`` lists the name of every operation
    that read a value on the host, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in READS:
            self.calls.append(str(func))
        elif func in INDEXING and any(t is not None and t.dtype == torch.bool for t in args[1]):
            self.calls.append(f"{func} (bool mask)")
        elif func is aten.repeat_interleave.Tensor and kwargs.get("output_size") is None:
            self.calls.append(str(func))
        return func(*args, **kwargs)
