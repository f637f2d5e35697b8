"""PEP 562 lazy attributes for package ``__init__`` files.

Why: ``import unmask`` (and so every ``unmask ...`` command, ``--help`` and a bad flag included)
used to import torch through the package ``__init__``, a second or more before anything could be
printed, and the standard-library code sandbox could not be imported where torch is missing.
A package lists its public names here and the submodule is imported on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]):
    """``__getattr__`` and ``__dir__`` for ``package`` from ``{name: ".submodule"}``."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        return value

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
