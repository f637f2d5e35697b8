"""``GenerationConfig.compile``: run the model's forward through ``torch.compile``.

Only the forward is compiled (the transformer up to the logits): the engine's step has
data-dependent shapes (rows that finish, windows of different lengths) that would recompile
often, while the forward sees a handful of shapes per generation (the refresh over the whole
canvas, the block window, the lookahead batches). ``dynamic=None`` lets torch mark a dimension
dynamic after it first changes, so later block positions and batch sizes reuse the graph.

The compiled forward is built once per model and kept on it; ``compiled_forward`` installs it
for the duration of one ``generate`` call and restores the eager forward afterwards, so a
model is never left compiled behind the caller's back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from ..errors import UnmaskError


@contextmanager
def compiled_forward(model: torch.nn.Module) -> Iterator[None]:
    fn = getattr(model, "_unmask_compiled_forward", None)
    if fn is None:
        if not hasattr(torch, "compile"):
            raise UnmaskError("compile needs torch >= 2.0 (torch.compile)")
        fn = torch.compile(model.forward, dynamic=None)
        model._unmask_compiled_forward = fn
    had = "forward" in model.__dict__
    old = model.__dict__.get("forward")
    model.forward = fn
    try:
        yield
    finally:
        if had:
            model.forward = old
        else:
            del model.forward
