"""The stop rules (``eos_fill``, ``stop_at_eos``), applied to every row at once on the device.

Shared by the vectorised step (which folds the result into its one host copy) and the per-row
path (one host copy of which rows finished or were filled).
"""

from __future__ import annotations

import torch

from .state import Run


def stops(run: Run) -> tuple[torch.Tensor, torch.Tensor]:
    """A row that is not done and holds a stop token gets every mask after its first stop set to
    EOS (``eos_fill``), and finishes when no mask is left before that stop (``stop_at_eos``; its
    remaining masks become EOS). Returns ``[B]`` bool tensors: rows that finished now, rows whose
    masks were filled. Writes the canvas in place."""
    cfg, x = run.cfg, run.x
    b = x.shape[0]
    if not (cfg.stop_at_eos or cfg.eos_fill) or cfg.max_new_tokens == 0:
        none = torch.zeros(b, dtype=torch.bool, device=x.device)
        return none, none
    gen = x[:, run.prompt_len:]
    g = gen.shape[1]
    open_ = torch.tensor([not r.done for r in run.rows], device=x.device)
    is_stop = torch.isin(gen, torch.tensor(run.stop_ids, device=x.device))
    ar = torch.arange(g, device=x.device)
    q = torch.where(is_stop, ar, g).min(1).values  # first stop (g: none)
    has = (q < g) & open_
    masked = gen == run.mask_id
    fill = torch.zeros_like(masked)
    if cfg.eos_fill:
        fill |= masked & (ar > q[:, None]) & has[:, None]
    done = torch.zeros_like(has)
    if cfg.stop_at_eos:
        done = has & ~(masked & (ar < q[:, None])).any(1)
        fill |= masked & done[:, None]
    gen.masked_fill_(fill, run.eos_id)  # a view of x: written in place
    return done, fill.any(1)


def handle_stops(run: Run) -> bool:
    """Apply the stop rules with one host copy; marks finished rows done and drops the lookahead
    logits of filled rows. Returns whether the canvas changed."""
    cfg = run.cfg
    if not (cfg.stop_at_eos or cfg.eos_fill) or cfg.max_new_tokens == 0:
        return False
    done, filled = stops(run)
    done_h, filled_h = torch.stack([done, filled]).tolist()
    for row in run.rows:
        if filled_h[row.index]:
            row.next_logits = None
        if done_h[row.index]:
            row.done = True
    return any(done_h) or any(filled_h)
