"""The vectorised step: every row's view, choice and commit as batched tensor operations.

The per-row path (:mod:`unmask.decoding.rowstep`) builds one :class:`StepView` per row in
Python, computes full-vocabulary softmax and entropy at every eligible position, and reads results
back to the host token by token. On a GPU each of those reads is a device synchronisation, so the
engine's cost grew with the batch. This module runs the same algorithm for the common case:

* a plain block phase (one scheduled region, no names, no gate thresholds),
* a sampler with a vectorised rule (``Sampler.batched``: confidence, margin, entropy, threshold,
  random, leftright, factor),
* no compat mode, no beam search, no lookahead, no previous-step probabilities.

Ragged rows (padding, different numbers of masks, different spans) are masks over the ``[A, W]``
window, not Python loops. Per position the step computes only the argmax (or the draw), the
softmax (for the confidence and the finiteness guard) and, where a sampler asks for it, the
entropy; the trace's entropy is computed at the committed positions only. The
stop rules run on the device too, and everything the host needs afterwards (the trace records,
the rows' mask counts, which rows finished, the guard flag) comes back in **one** copy per step.

The rows' tokens and traces are the per-row path's, bit for bit, at any temperature (same
per-row generators, same draws in the same order, the same softmax and entropy per position).
"""

from __future__ import annotations

import torch

from ..samplers.base import BatchView
from .guards import nonfinite, raise_nonfinite
from .hooks import call_logits_hook, call_tokens_hook
from .plan import Phase
from .processors import Scratch, entropy_rows, filter_logits, first_argmax, inverse_cdf_draw, softmax_into
from .state import Run
from .stopping import stops
from .trace import StepRecord, TokenRecord


def eligible_for(run: Run, phase: Phase) -> bool:
    """Whether this phase can take the vectorised step (see the module docstring)."""
    s = run.sampler
    if not getattr(s, "batched", False) or getattr(s, "needs_lookahead", False):
        return False
    if getattr(s, "needs_previous_probs", False) or run.compat.active or run.cfg.beam_size > 1:
        return False
    if len(phase.regions) != 1:
        return False
    reg = phase.regions[0]
    return reg.name is None and reg.gate.scheduled and reg.gate.after is None


def _spans(phase: Phase, rows: list[int], ws: int, we: int, device) -> torch.Tensor:
    """``[A, W]`` bool: which window positions belong to each row's span of the phase's region."""
    spans = phase.regions[0].spans
    lo = torch.tensor([spans[r][0] - ws for r in rows])
    hi = torch.tensor([spans[r][1] - ws for r in rows])
    ar = torch.arange(we - ws)
    return ((ar >= lo[:, None]) & (ar < hi[:, None])).to(device)


#: eligible positions scored per pass: bounds the step's full-vocabulary temporaries whatever the
#: batch (8 x 126k: 4 MB fp32, 8 MB for the draw's float64 CDF). On a CPU, blocks of 16 MB and
#: more come from fresh pages on every call (a 16-row float64 CDF costs ~7x what two 8-row ones
#: do); smaller blocks are reused by the allocator
ROWS_PER_PASS = 8


def _score(logits: torch.Tensor, elig: torch.Tensor, counts: list[int], cfg, generators,
           scratch: Scratch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tokens and confidences ``[A, W]`` at the eligible positions (0 elsewhere), and the step's
    finiteness flag, computed at the eligible positions only (a block's decoded positions cost
    nothing), :data:`ROWS_PER_PASS` positions at a time.

    Per position exactly what the per-row path computes (so tokens and traces are the same bit
    for bit): the argmax at temperature 0 (:func:`first_argmax`, the same index), otherwise the
    inverse-CDF draw with the row's j-th float64 uniform at its j-th eligible position (see
    :mod:`unmask.decoding.processors`); the confidence is the softmax's probability of the token.
    A NaN, +inf or all -inf position has a NaN confidence, so the guard reads the confidences."""
    a, w, v = logits.shape
    device = logits.device
    rows_h, ranks_h, draws = [], [], []
    for i, (n, gen) in enumerate(zip(counts, generators)):
        if n:
            rows_h += [i] * n
            ranks_h += range(n)
            if cfg.temperature > 0:
                draws.append(torch.rand(n, generator=gen, dtype=torch.float64))
    tokens = torch.zeros(a * w, dtype=torch.long, device=device)
    conf = torch.zeros(a * w, dtype=torch.float32, device=device)
    n_all = len(rows_h)
    if not n_all:
        return tokens.view(a, w), conf.view(a, w), torch.zeros((), dtype=torch.bool, device=device)
    # each row's j-th eligible position (found on the device; which rows and how many are known
    # on the host), flat in [A * W]
    order = torch.sort((~elig).to(torch.int8), dim=1, stable=True).indices
    r_idx = torch.tensor(rows_h, device=device)
    flat = r_idx * w + order[r_idx, torch.tensor(ranks_h, device=device)]
    u = torch.cat(draws).to(device) if draws else None
    flat_logits = logits.reshape(a * w, v)
    toks, confs = [], []
    for lo in range(0, n_all, ROWS_PER_PASS):
        idx = flat[lo : lo + ROWS_PER_PASS]
        m = idx.shape[0]
        picked = torch.index_select(flat_logits, 0, idx, out=scratch.get("picked", m, v, logits.dtype, device))
        if u is None:
            tok = first_argmax(picked)
        else:
            tok = inverse_cdf_draw(filter_logits(picked, cfg.top_k, cfg.top_p), cfg.temperature,
                                   u[lo : lo + ROWS_PER_PASS], scratch)
        toks.append(tok)
        probs = softmax_into(picked, scratch.get("probs", m, v, picked.dtype, device))
        confs.append(probs.gather(-1, tok[:, None]).squeeze(-1))
    tok_c = toks[0] if len(toks) == 1 else torch.cat(toks)
    conf_c = confs[0] if len(confs) == 1 else torch.cat(confs)
    tokens.index_copy_(0, flat, tok_c)
    conf.index_copy_(0, flat, conf_c)
    return tokens.view(a, w), conf.view(a, w), nonfinite(conf_c)


def _entropies(logits: torch.Tensor, flat: torch.Tensor, scratch: Scratch) -> torch.Tensor:
    """Entropies (nats) at the flat window positions ``flat`` (the committed ones, for the trace),
    :data:`ROWS_PER_PASS` positions at a time (:func:`~unmask.decoding.processors.entropy_rows`)."""
    a, w, v = logits.shape
    flat_logits = logits.reshape(a * w, v)
    out = []
    for lo in range(0, flat.shape[0], ROWS_PER_PASS):
        idx = flat[lo : lo + ROWS_PER_PASS]
        rows = torch.index_select(flat_logits, 0, idx, out=scratch.get("picked", idx.shape[0], v, logits.dtype,
                                                                        logits.device))
        out.append(entropy_rows(rows, scratch, ROWS_PER_PASS))
    if not out:
        return torch.zeros(0, dtype=torch.float32, device=logits.device)
    return out[0] if len(out) == 1 else torch.cat(out)


def step(run: Run, live: list[int]) -> None:
    """One step of every live row (all of them may commit: one open scheduled region). Updates the
    canvas, the rows' traces, schedules, steps and ``done`` flags and the phase's mask counts from
    one device-to-host copy."""
    ph, cfg, rows, x = run.phase, run.cfg, run.rows, run.x
    phase, ws, we = ph.phase, ph.ws, ph.we
    global_step = run.global_step
    device = x.device
    region = phase.regions[0]
    key = id(region)
    a = len(live)
    everyone = live == list(range(x.shape[0]))
    act = None if everyone else torch.tensor(live, device=device)

    raw = run.runner.step_logits(x, run.am, live, ws, we, rows)
    logits = run.runner.process(raw)
    xa = x[:, ws:we] if everyone else x[act, ws:we]
    if cfg.logits_hook is not None:
        logits = call_logits_hook(cfg.logits_hook, global_step, x if everyone else x[act], logits, ws)
    span = _spans(phase, live, ws, we, device)
    elig = (xa == run.mask_id) & span
    counts = [ph.left[key][r] for r in live]
    gens = [rows[r].generator for r in live]

    tokens, conf, bad = _score(logits, elig, counts, cfg, gens, run.scratch)

    k = None
    ks: list[int | None] = [None] * a
    if run.sampler.uses_schedule:
        for i, r in enumerate(live):
            sc = rows[r].sched[0]
            n = counts[i]
            kk = sc.schedule[sc.ptr] + sc.deficit if sc.ptr < len(sc.schedule) - 1 else n
            ks[i] = max(1, min(kk, n))
        k = torch.tensor(ks, device=device)
    view = BatchView(logits=logits, eligible=elig, tokens=tokens, confidence=conf, k=k, counts=counts,
                     generators=gens)
    sel = run.sampler.select_batch(view) & elig

    # commit, then collect the committed positions (each row's first c columns, position order)
    new = torch.where(sel, tokens.to(x.dtype), xa)
    if everyone:
        x[:, ws:we] = new
    else:
        x[act, ws:we] = new
    c = max(ks) if k is not None else max(counts)  # host bound on any row's committed count
    order = torch.sort((~sel).to(torch.int8), dim=1, stable=True).indices[:, :c]
    valid = sel.gather(1, order)
    tok_c = tokens.gather(1, order)
    conf_c = conf.gather(1, order)
    if view._entropy is not None:
        ent_c = view._entropy.gather(1, order)
    else:
        ent_c = _entropies(logits, (torch.arange(a, device=device)[:, None] * logits.shape[1] + order).reshape(-1),
                           run.scratch).view(a, c)

    if cfg.tokens_hook is not None:
        x = run.x = call_tokens_hook(cfg.tokens_hook, global_step, x, logits, ws)
    done_new = stops(run)[0]

    # the mask count of every row's region after this step (all rows: a hook may touch any)
    left = ((x[:, ws:we] == run.mask_id) & ph.span_all).sum(1)
    parts = [order.double(), tok_c.double(), conf_c.double(), ent_c.double(), valid.double()]
    packed = torch.cat([p.reshape(-1) for p in parts]
                       + [left.double(), done_new.double(), bad.double().reshape(1)])
    host = packed.tolist()  # the step's one device-to-host copy
    if host[-1]:
        raise_nonfinite(logits, cfg.logits_hook is not None)
    n_sel = a * c
    pos_h, tok_h, conf_h, ent_h, val_h = (host[j * n_sel:(j + 1) * n_sel] for j in range(5))
    b = x.shape[0]
    left_h = host[5 * n_sel: 5 * n_sel + b]
    done_h = host[5 * n_sel + b: 5 * n_sel + 2 * b]
    for i, r in enumerate(live):
        row = rows[r]
        m = 0
        for j in range(i * c, (i + 1) * c):
            if not val_h[j]:
                break
            row.trace.tokens.append(TokenRecord(step=row.step, position=int(pos_h[j]) + ws - row.pad,
                                                token=int(tok_h[j]), confidence=conf_h[j], entropy=ent_h[j]))
            m += 1
        row.trace.steps.append(StepRecord(step=row.step, block=phase.index, committed=m, kind="select", info={}))
        sc = row.sched.get(0)
        if sc is not None:
            if ks[i] is not None:
                sc.deficit = max(0, ks[i] - m)
            sc.ptr += 1
        row.step += 1
    ph.left[key] = [int(v) for v in left_h]
    for r, d in enumerate(done_h):
        if d:
            rows[r].done = True

