"""User hooks, including Dream's names for them.

Our hooks (``GenerationConfig.logits_hook`` / ``tokens_hook``) are called as Dream calls its own:
``tokens_hook(None, x, None)`` once before the loop, then per step ``logits_hook(step, x, logits)``
(returns logits) and ``tokens_hook(step, x, logits)`` (returns the canvas). One difference: our
logits cover only the active window (the block or the lockstep regions), while Dream's cover the
whole canvas. So that hook code written for Dream's ``diffusion_generate`` runs unchanged, the
Python API accepts Dream's keyword names, ``generation_logits_hook_func`` and
``generation_tokens_hook_func``, and hands such hooks logits widened to the full canvas width
(positions outside the window hold zeros, i.e. a uniform prediction); what a logits hook returns
is cut back to the window.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..errors import UnmaskError

DREAM_HOOK_NAMES = {"generation_logits_hook_func": "logits_hook", "generation_tokens_hook_func": "tokens_hook"}


class FullCanvasHook:
    """A hook that expects Dream's full-canvas logits ``[B, T, V]`` (see the module docstring)."""

    full_canvas = True

    def __init__(self, fn: Callable[..., Any]) -> None:
        if not callable(fn):
            raise UnmaskError(f"a hook must be callable, got {type(fn).__name__}")
        self.fn = fn

    def __call__(self, step, x, logits):
        return self.fn(step, x, logits)


def dream_hook_aliases(options: dict[str, Any]) -> dict[str, Any]:
    """Replace Dream's hook keywords by ours (wrapped as :class:`FullCanvasHook`). Giving both
    spellings of one hook is refused."""
    out = dict(options)
    for dream_name, ours in DREAM_HOOK_NAMES.items():
        if dream_name not in out:
            continue
        fn = out.pop(dream_name)
        if fn is None:
            continue
        if out.get(ours) is not None:
            raise UnmaskError(f"give either {ours} or {dream_name}, not both")
        out[ours] = FullCanvasHook(fn)
    return out


def _widen(logits: torch.Tensor | None, start: int, total: int) -> torch.Tensor | None:
    if logits is None:
        return None
    full = logits.new_zeros((logits.shape[0], total, logits.shape[2]))
    full[:, start : start + logits.shape[1]] = logits
    return full


def call_logits_hook(hook, step: int, x: torch.Tensor, logits: torch.Tensor, start: int) -> torch.Tensor:
    """Run a logits hook on window logits starting at canvas index ``start``."""
    if not getattr(hook, "full_canvas", False):
        return hook(step, x, logits)
    width = logits.shape[1]
    out = hook(step, x, _widen(logits, start, x.shape[1]))
    return out[:, start : start + width]


def call_tokens_hook(hook, step: int | None, x: torch.Tensor, logits: torch.Tensor | None, start: int) -> torch.Tensor:
    """Run a tokens hook; it returns the (possibly edited) canvas."""
    if getattr(hook, "full_canvas", False):
        logits = _widen(logits, start, x.shape[1])
    out = hook(step, x, logits)
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        raise UnmaskError("a tokens hook must return the canvas tensor x (same shape) it was given")
    return out
