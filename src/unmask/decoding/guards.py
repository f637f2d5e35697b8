"""Run-time checks of what the model and the user's hooks hand the engine.

Validation at the boundary cannot see everything: NaN or infinite weights load fine and only show
up as NaN logits, and a logits hook can return anything. A NaN logit makes every probability NaN;
``argmax`` then returns index 0 (silently all-zero tokens) or, with sampling, the mask token,
which keeps the position masked forever (a hang). So the engine checks each step's logits, and
stops with a clear message.

The check costs nothing extra on the hot path: the step already computes, for every position it
reads, a log-partition (or entropy) over the processed vocabulary, and that one number is
non-finite exactly when the position's logits contain NaN or +inf or are all -inf. The engine
folds "any such position" into the one device-to-host copy it makes per step anyway (see
:func:`nonfinite`), and only when that flag is set does :func:`raise_nonfinite` scan the logits
to say what went wrong. Positions nobody reads are not checked (nothing can go wrong there).
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import UnmaskError


def check_model_logits(logits: torch.Tensor, where: str = "the model") -> None:
    """Raw model logits must be finite everywhere."""
    if not bool(torch.isfinite(logits).all()):
        n_nan = int(torch.isnan(logits).sum())
        n_inf = int(torch.isinf(logits).sum())
        raise UnmaskError(
            f"{where} produced non-finite logits ({n_nan} NaN, {n_inf} inf): the checkpoint's weights "
            "contain NaN/inf or overflow in this dtype (try --dtype float32)"
        )


def nonfinite(per_position: torch.Tensor, read: torch.Tensor | None = None) -> torch.Tensor:
    """A 0-d bool tensor (left on the device): some read position's log-partition/entropy is not
    finite. ``read`` (same shape, bool) marks the positions the step uses (default: all)."""
    bad = ~torch.isfinite(per_position)
    if read is not None:
        bad &= read
    return bad.any()


def raise_nonfinite(logits: torch.Tensor, hooked: bool) -> None:
    """Explain a step whose :func:`nonfinite` flag was set (the slow path: runs once, then raises).
    ``logits`` are the step's processed logits; ``hooked``: a logits hook produced them."""
    n_nan = int(torch.isnan(logits).sum())
    n_inf = int(torch.isposinf(logits).sum())
    if not hooked:
        raise UnmaskError(
            f"the model produced non-finite logits ({n_nan} NaN, {n_inf} inf, or every logit -inf): the "
            "checkpoint's weights contain NaN/inf or overflow in this dtype (try --dtype float32)"
        )
    if n_nan or n_inf:
        raise UnmaskError("the logits hook returned NaN or +inf logits")
    raise UnmaskError(
        "after the logits hook, some position has no token left to choose (every logit is -inf): "
        "check suppress_token_ids, eos_penalty and the hook"
    )


def logits_width(model: torch.nn.Module) -> int | None:
    """Number of logits the model produces per position, from its config (None when unknown)."""
    cfg: Any = getattr(model, "config", None)
    for name in ("embedding_size", "vocab_size"):
        v = getattr(cfg, name, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def check_token_ids(model: torch.nn.Module, ids: dict[str, list[int]]) -> None:
    """Token ids the engine will index logits with or write into the canvas must exist."""
    width = logits_width(model)
    if width is None:
        return
    for name, values in ids.items():
        bad = [v for v in values if not 0 <= int(v) < width]
        if bad:
            raise UnmaskError(f"{name} {bad[:5]} outside the model's vocabulary of {width} tokens")
