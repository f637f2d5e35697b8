"""Seeing a decoding: a live terminal view (:mod:`.live`), pictures of saved traces
(:mod:`.pictures`) and the ``unmask viz`` command (:mod:`.commands`).

Nothing heavy is imported here, so ``import unmask.viz`` stays cheap for the CLI.
"""

from __future__ import annotations

__all__ = ["LiveView", "live_view"]


def __getattr__(name: str):
    # lazy: rich is only needed once a live view is actually built
    if name in __all__:
        from . import live

        return getattr(live, name)
    raise AttributeError(name)
