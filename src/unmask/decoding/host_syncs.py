"""Count the tensor-to-host conversions a piece of code makes (each one blocks on a GPU).

One definition for both readers of the figure: ``tests/test_engine_syncs.py`` asserts a bound on
it and ``benchmarks/bench_engine.py`` reports it, so the tested number and the published one
always count the same operations.
"""

from __future__ import annotations

import torch

#: the tensor methods that copy a value to the host and so wait for the device
HOST_SYNC_NAMES = frozenset({"item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__",
                             "nonzero"})


class HostSyncCounter(torch.overrides.TorchFunctionMode):
    """``with HostSyncCounter() as c: ...`` counts the host syncs inside (``c.count``, per name in
    ``c.by_name``), model forwards included."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.by_name: dict[str, int] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in HOST_SYNC_NAMES:
            self.count += 1
            self.by_name[name] = self.by_name.get(name, 0) + 1
        return func(*args, **(kwargs or {}))
