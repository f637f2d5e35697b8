"""The model runner: every forward of a generation, its KV cache, and what the forwards cost.

The loop and the search ask for logits over a window of canvas rows; the runner decides how to
get them (a full forward, or the window against the phase's cache, per row window so a padded row
computes what it would alone), keeps the phase's cache, and counts every forward (NFE, rows,
forward tokens, per prompt). It knows nothing of samplers, schedules or traces.

One :class:`Runner` exists per ``generate`` call (it is part of the call's state, see
:class:`unmask.decoding.state.Run`); :meth:`begin_phase` hands it each phase's row windows and
cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from . import compat as _compat
from .processors import LogitsProcessor, apply_processors


@dataclass
class Tally:
    """Forward accounting of one call: NFE (+1 per forward for every prompt involved), rows and
    forward tokens (rows x query length: the cost that does not depend on the device), in total
    and per prompt (group)."""

    groups: int
    nfe: int = 0
    forward_rows: int = 0
    forward_tokens: int = 0
    group_nfe: list[int] = field(default_factory=list)
    group_rows: list[int] = field(default_factory=list)
    group_tokens: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.group_nfe = [0] * self.groups
        self.group_rows = [0] * self.groups
        self.group_tokens = [0] * self.groups


@dataclass
class Runner:
    """Forwards, caches and forward accounting for one call (see the module docstring).

    ``row_groups[r]``: the prompt canvas row r belongs to (fixed for the call: a beam or best-of
    row keeps its slot's prompt). ``processors``: the call's logits processors, built once."""

    model: Any
    row_groups: list[int]
    processors: list[LogitsProcessor]
    block_causal: bool = False
    predict_kw: dict[str, Any] = field(default_factory=dict)  # block-causal models: block_length
    pad_free: bool = False  # no row is padded: the model gets no attention mask
    block_entry: bool = False  # compat block_entry_commit: the step's window is Fast-dLLM Dream's
    use_cache: str = "none"
    tally: Tally = None  # type: ignore[assignment]
    #: the active phase's cache: {"cache": the model's cache, "map": canvas row -> cache row}
    cache: dict[str, Any] = field(default_factory=dict)
    windows: dict[int, tuple[int, int]] = field(default_factory=dict)  # canvas row -> its own window

    def __post_init__(self) -> None:
        if self.tally is None:
            self.tally = Tally(max(self.row_groups, default=-1) + 1)

    def begin_phase(self, windows: dict[int, tuple[int, int]], cache: dict[str, Any]) -> None:
        self.windows = windows
        self.cache = cache

    # ------------------------------------------------------------------ processing
    def process(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw logits -> the fp32 scores samplers see (see :mod:`unmask.decoding.processors`)."""
        return apply_processors(raw, self.processors)

    # ------------------------------------------------------------------ accounting
    def count(self, row_ids: list[int], q_len: int) -> None:
        """One forward over ``row_ids`` with ``q_len`` query positions per row (a cached window of
        32 costs 32 per row, a full canvas T)."""
        t = self.tally
        t.nfe += 1
        t.forward_rows += len(row_ids)
        t.forward_tokens += len(row_ids) * q_len
        groups: dict[int, int] = {}
        for ri in row_ids:
            g = self.row_groups[ri]
            groups[g] = groups.get(g, 0) + 1
        for g, n in groups.items():
            t.group_nfe[g] += 1
            t.group_rows[g] += n
            t.group_tokens[g] += n * q_len

    def query_len(self, start: int, end: int) -> int:
        """Query positions a cached forward runs (an uncached one runs the whole canvas): the window
        ``[start, end)`` plus, for models that predict token i at position i - 1 (Dream), the one
        extra position before it (see ``DiffusionLM.predict``)."""
        return end - start + (1 if getattr(self.model, "shift_logits", False) and start > 0 else 0)

    # ------------------------------------------------------------------ forwards
    def mask_arg(self, ams: torch.Tensor) -> torch.Tensor | None:
        """The attention mask to hand the model: None when no row of the batch is padded, so the
        forward needs no mask and never asks the device whether one is all ones."""
        return None if self.pad_free else ams

    def cached_rows(self, row_ids: list[int]):
        """The phase cache restricted to ``row_ids`` (lazy: the model gathers these rows while it
        writes the window into each layer's keys)."""
        cache = self.cache["cache"]
        idx = [self.cache["map"][r] for r in row_ids]
        if idx == list(range(cache.batch_size)):
            return cache
        return cache.rows_view(torch.tensor(idx, device=cache.keys[0].device))

    def full_predict(self, xs, ams, ids: list[int], start: int, end: int, **kw):
        """Uncached forward of whole canvases ``xs`` (owned by canvas rows ``ids``), counted as
        such: the model's output with logits for ``[start, end)``."""
        self.count(ids, xs.shape[1])
        return self.model.predict(xs, self.mask_arg(ams), start=start, end=end, **self.predict_kw, **kw)

    def forward(self, x, am, row_ids: list[int], start: int, end: int) -> torch.Tensor:
        """Aligned logits ``[A, end - start, V]`` for the given rows; the first cached forward of a
        phase builds the phase's cache."""
        act = torch.tensor(row_ids, device=x.device)
        if self.use_cache == "none":
            return self.full_predict(x[act], am[act], row_ids, start, end).logits
        if self.cache.get("cache") is None:  # (block-causal models start with their exact cache)
            out = self.full_predict(x[act], am[act], row_ids, start, end, return_cache=True)
            self.cache["cache"] = out.cache
            self.cache["map"] = {r: j for j, r in enumerate(row_ids)}
            return out.logits
        return self.cached_predict(x[act], am[act], row_ids, start, end, True, step=True)

    def step_logits(self, x, am, act_list: list[int], s: int, e: int, rows) -> torch.Tensor:
        """Raw aligned logits ``[A, e - s, V]`` for the active rows: rows that carry the winner's
        lookahead logits from the previous step (``rows[r].next_logits``) reuse them; the others
        share one forward."""
        need = [ri for ri in act_list if rows[ri].next_logits is None]
        fresh = {}
        if need:
            out = self.forward(x, am, need, s, e)
            if len(need) == len(act_list):
                return out
            fresh = {ri: out[j] for j, ri in enumerate(need)}
        parts = []
        for ri in act_list:
            if ri in fresh:
                parts.append(fresh[ri])
            else:
                parts.append(rows[ri].next_logits.to(x.device))
                rows[ri].next_logits = None
        return torch.stack(parts)

    def cached_predict(self, xs, ams, ids: list[int], start: int, end: int, own_end: bool,
                       step: bool = False) -> torch.Tensor:
        """Cached forward of canvases ``xs`` (owned by canvas rows ``ids``): logits for
        ``[start, end)``. Each row's fresh window starts at its *own* window start (the first of its
        spans in the phase), not the batch's, so a left-padded row computes exactly what it would
        alone; rows with different windows go in separate forwards (one NFE per prompt either way).
        ``own_end``: ``end`` is the phase window's end, and each row stops at its own window's end.
        ``step``: a step's forward (not a lookahead), where a compat block-entry mode applies.
        Candidates of a lookahead read the cache and never write it."""
        total = xs.shape[1]
        ams = self.mask_arg(ams)
        keys = []
        for ri in ids:
            rs, re_ = self.windows.get(ri, (start, end))
            keys.append((rs, re_ if own_end else end))
        parts = list(dict.fromkeys(keys))
        out = None
        for s_, e_ in parts:
            js = [j for j, k in enumerate(keys) if k == (s_, e_)]
            sub = [ids[j] for j in js]
            cache = self.cached_rows(sub)
            # block-causal models: the exact cache holds the finished blocks, the window is the block
            window_end = total if (self.use_cache == "prefix" and not self.block_causal) else e_
            whole = len(parts) == 1 and (s_, e_) == (start, end)  # one forward for the batch's window
            compat_window = step and self.block_entry and whole
            # Fast-dLLM's compat window has no extra position for Dream's shift
            self.count(sub, window_end - s_ if compat_window else self.query_len(s_, window_end))
            if whole:
                if compat_window:
                    return _compat.window_logits(self.model, xs, ams, cache, start, window_end, end)
                return self.model.predict(xs, ams, cache=cache, start=start, end=window_end, logits_end=end,
                                          **self.predict_kw).logits
            sel = torch.tensor(js, device=xs.device)
            lg = self.model.predict(xs[sel], None if ams is None else ams[sel], cache=cache, start=s_,
                                    end=window_end, logits_end=e_, **self.predict_kw).logits
            if out is None:
                out = lg.new_zeros((len(ids), end - start, lg.shape[-1]))
            out[sel, s_ - start : e_ - start] = lg
        return out

    # ------------------------------------------------------------------ block-causal models
    def prefill(self, x, am, end: int):
        """Exact K/V of the prompt ``[0, end)`` of every row (block-causal models)."""
        self.count(list(range(x.shape[0])), end)
        return self.model.prefill(x, am, end, **self.predict_kw)

    def extend_cache(self, x, am, start: int, end: int):
        """Append the finished block ``[start, end)`` of every row to the exact cache (one forward)."""
        everyone = list(range(x.shape[0]))
        self.count(everyone, end - start)
        return self.model.extend_cache(x, am, self.cached_rows(everyone), start, end, **self.predict_kw)
