"""The decoding loop: canvas, blocks, schedule, model calls, logit processing, sampler, trace.

The engine owns everything a sampler must not care about: left padding, blocks, the step
schedule, KV caches, logit processors, hooks and stopping. One generation:

1. Canvas ``[B, T]``: left padding, the prompt (which may itself contain mask tokens, e.g. a
   Sudoku), then ``max_new_tokens`` masks.
2. Plan (:mod:`unmask.decoding.plan`): a list of phases, each a group of regions with a gate. By
   default an optional leading block over the masks inside the prompt, then ``block_size`` chunks
   of the generation region (semi-autoregressive decoding), decoded in order; lockstep decoding
   is one phase with a reasoning and an answer region.
3. Per phase, each row gets, for every scheduled region, a list of per-step counts (see
   :mod:`unmask.decoding.schedule`) that sums to its number of masks there, so no combination of
   settings can leave masks behind; threshold gates always commit at least one position.
4. Per step and stage (all regions at once, or one after another for a Gauss-Seidel sweep), the
   rows that may still commit are run through the model over the phase's window (with the
   phase's KV cache in ``prefix``/``dual`` mode), the logits are processed, and the sampler picks
   positions for each row and region among those the gate lets through.

Randomness: each row owns a ``torch.Generator`` seeded with the row's seed (by default the same
seed for every row). A row's tokens therefore depend only on its prompt, its seed and the config,
never on the other rows of the batch.
"""

from __future__ import annotations

import math
import operator
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from ..errors import UnmaskError
from ..samplers.base import Action, LookaheadResult, Sampler, StepView, entropy_from_logits
from . import batched as _batched
from . import block_causal as bcm
from . import compat as _compat
from .guards import check_model_logits, check_token_ids, nonfinite, raise_nonfinite
from .hooks import call_logits_hook, call_tokens_hook, dream_hook_aliases
from .plan import BlockPlanner, Layout, Phase, Region
from .processors import apply_processors, default_processors, filter_logits, propose_tokens  # noqa: F401 (re-exported)
from .schedule import SCHEDULES, block_schedule, fixed_schedule
from .trace import StepRecord, TokenRecord, Trace

CACHE_MODES = ("none", "prefix", "dual")


def resolve_hnext_scope(scope: str, use_cache: str) -> str:
    """The H_next scope a lookahead sampler's setting means under a cache mode.

    ``auto`` (the default) is ``block`` with the dual cache and ``all`` otherwise: with ``dual``
    nothing outside the active block is recomputed for the plain step, and the seeds' dual-cache
    lookahead gives every mask outside the block the same constant (ln V), so only the block
    carries information about a candidate; measuring the future blocks would cost a forward over
    ``[block start, T)`` per candidate, the very work the cache exists to avoid. Without a cache,
    and with ``prefix`` (whose step recomputes ``[block start, T)`` anyway), every remaining mask
    is measured, as in the public code. ``all``, ``block`` and ``padded`` are explicit overrides.
    """
    if scope == "auto":
        return "block" if use_cache == "dual" else "all"
    return scope


@dataclass
class GenerationConfig:
    """Settings of one generation. ``validate`` rejects bad values before any compute."""

    max_new_tokens: int = 128
    steps: int | None = None  # total step budget; None = one token per step
    block_size: int | None = None  # None = the whole generation is one block
    tokens_per_step: int | None = None  # fixed k per step instead of a step budget
    schedule: str = "linear"  # linear | linear_round | dream
    temperature: float = 0.0
    top_p: float | None = None
    top_k: int | None = None
    use_cache: str = "none"  # none | prefix | dual
    stop_at_eos: bool = True  # finish a row once everything before its first stop token is decoded
    eos_fill: bool = False  # as soon as a stop token is committed, set every later mask to EOS
    eos_penalty: float = 0.0  # subtracted from the stop tokens' logits
    stop_token_ids: tuple[int, ...] | None = None  # default: the model's eos_token_id
    suppress_token_ids: tuple[int, ...] = ()
    seed: int | Sequence[int] | None = 0
    beam_size: int = 1  # > 1: keep the best partial trajectories (lookahead samplers only)
    best_of: int = 1  # > 1: N independent runs per prompt, keep the lowest cumulative entropy
    max_lookahead_rows: int | None = None  # split lookahead batches larger than this (memory)
    plan: Any = None  # a decoding.plan.Planner; None = semi-autoregressive blocks (BlockPlanner)
    compat: str | None = None  # reference-compatibility modes/behaviours (see decoding/compat.py)
    compile: bool = False  # torch.compile the model's forward (see decoding/compiled.py)
    logits_hook: Callable[..., torch.Tensor] | None = field(default=None, repr=False)
    tokens_hook: Callable[..., torch.Tensor] | None = field(default=None, repr=False)

    def validate(self) -> None:
        from ..validation import NUMERIC_OPTIONS, check_option

        for name in ("max_new_tokens", "temperature", "eos_penalty", "beam_size", "best_of"):
            if getattr(self, name) is None:
                raise UnmaskError(f"{name} must be given (None is not a value for it)")
        for name in sorted(NUMERIC_OPTIONS.keys() & set(self.__dataclass_fields__)):
            # one rule for every door (CLI, API, YAML): finite and in range, see unmask.validation
            setattr(self, name, check_option(name, getattr(self, name)))
        if self.steps is not None and self.tokens_per_step is not None:
            raise UnmaskError("give either steps or tokens_per_step, not both")
        if self.schedule not in SCHEDULES:
            raise UnmaskError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if self.beam_size > 1 and self.best_of > 1:
            raise UnmaskError("use either beam_size or best_of, not both")
        if self.use_cache not in CACHE_MODES:
            raise UnmaskError(f"use_cache must be one of {', '.join(CACHE_MODES)}, got {self.use_cache!r}")
        for name in ("stop_token_ids", "suppress_token_ids"):
            ids = getattr(self, name)
            if ids is not None:
                setattr(self, name, _token_ids(name, ids))
        _compat.parse_compat(self.compat)

    def to_dict(self) -> dict[str, Any]:
        plan = self.plan
        d = asdict(replace(self, plan=None))
        d.pop("logits_hook")
        d.pop("tokens_hook")
        d.pop("plan")
        if plan is not None:
            d["plan"] = plan.config()
        if d.get("compat") is None:
            d.pop("compat")  # off: leave result keys of earlier runs unchanged
        if not d.get("compile"):
            d.pop("compile", None)  # changes no token: not part of a result key when off
        if isinstance(d.get("seed"), tuple):
            d["seed"] = list(d["seed"])
        return d


@dataclass
class GenerationOutput:
    """Tokens, traces and summary figures of one ``generate`` call."""

    sequences: list[list[int]]  # each row's final canvas without padding (prompt + generation)
    generated: list[list[int]]  # generation region up to (excluding) the first stop token
    traces: list[Trace]
    nfe: int  # model forward calls in this generate() call
    forward_rows: int  # rows computed across those calls
    seconds: float
    prompt_lengths: list[int]
    forward_tokens: int = 0  # sum over those calls of rows x query length (device-independent cost)

    @property
    def generated_tokens(self) -> int:
        """Real generated tokens: the generation up to its first stop token (no padding, stop or
        fill tokens), plus the masks filled inside the prompt (infilling tasks)."""
        infilled = sum(sum(1 for r in t.tokens if r.position < t.prompt_length) for t in self.traces)
        return sum(len(g) for g in self.generated) + infilled

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def cumulative_entropy(self) -> list[float]:
        return [t.cumulative_entropy for t in self.traces]


def _token_ids(name: str, ids: Any) -> tuple[int, ...]:
    """Token ids as a tuple of ints >= 0 (numpy/torch integers are fine; bools and floats are not)."""
    out = []
    for i in ids:
        try:
            if isinstance(i, bool):
                raise TypeError
            v = operator.index(i)
        except TypeError:
            raise UnmaskError(f"{name} must be integer token ids, got {i!r}") from None
        if v < 0:
            raise UnmaskError(f"{name} must be token ids >= 0, got {v}")
        out.append(v)
    return tuple(out)


def _seeds(seed: int | Sequence[int] | None, batch: int) -> list[int]:
    if seed is None:
        base = int(torch.randint(0, 2**62, (1,)).item())
        return [base] * batch
    if isinstance(seed, int):
        return [seed] * batch
    seeds = [int(s) for s in seed]
    if len(seeds) != batch:
        raise UnmaskError(f"got {len(seeds)} seeds for {batch} prompts")
    return seeds


@dataclass
class _Sched:
    """A scheduled region's per-row step counts and progress."""

    schedule: list[int]
    ptr: int = 0
    deficit: int = 0  # scheduled tokens an earlier step did not commit
    block_steps: int = 0  # the region's step budget (the origin sampler's T)

    def copy(self) -> _Sched:
        return _Sched(list(self.schedule), self.ptr, self.deficit, self.block_steps)


@dataclass
class _Row:
    """Bookkeeping for one canvas row (a prompt, a best-of run, or a beam)."""

    index: int
    group: int  # the prompt this row belongs to
    pad: int
    generator: torch.Generator
    trace: Trace
    sched: dict[int, _Sched] = field(default_factory=dict)  # per region of the active phase
    step: int = 0
    done: bool = False
    alive: bool = True  # beams not (yet) in use are not alive
    score: float = 0.0  # cumulative objective (beam search)
    next_logits: torch.Tensor | None = None  # winner's lookahead logits, reused by the next step
    stalled: bool = False  # compat: the reference would stop decoding this block for the row
    #: per region of the phase: (window-local masked positions, their probs, the sampler's
    #: ``Action.state`` for them) of the row's last view, for samplers with ``needs_previous_probs`` (kept on the device)
    prev_probs: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = field(default_factory=dict)


@dataclass
class _Child:
    parent: int
    action: Action
    score: float
    next_logits: torch.Tensor | None


def _align_previous(stored, positions: torch.Tensor, width: int):
    """A row's previous-step probs and sampler state at ``positions`` (window-local), aligned on
    the device without a host sync: a window-sized slot map sends each position to its row in the
    last view; a position that was not in that view (a lockstep gate held it back) gets zeros."""
    p_pos, p_probs, p_state = stored
    slot = torch.full((width,), -1, dtype=torch.long, device=positions.device)
    slot[p_pos] = torch.arange(p_pos.shape[0], device=positions.device)
    j = slot[positions]
    have = j >= 0
    j = j.clamp(min=0)
    probs = p_probs[j] * have[:, None]
    state = None if p_state is None else p_state[j] * have
    return probs, state


class Engine:
    """Runs generations for one model with one sampler. Stateless between calls."""

    def __init__(self, model: torch.nn.Module, sampler: Sampler) -> None:
        self.model = model
        self.sampler = sampler
        cfg = model.config
        self.mask_id = int(cfg.mask_token_id)
        pad = getattr(cfg, "pad_token_id", None)
        self.pad_id = int(pad if pad is not None else cfg.eos_token_id)
        self.eos_id = int(cfg.eos_token_id)
        self.max_len = int(getattr(cfg, "max_sequence_length", 0) or 0)
        self.block_causal = bcm.is_block_causal(model)
        self._predict_kw: dict[str, Any] = {}  # extra model.predict arguments (block-causal: block_length)
        self.compat = _compat.OFF
        self._block_entry = False  # compat block_entry_commit applies (resolved per generate call)
        self._pad_free = False  # no row of the current call is padded (the model gets no mask)
        #: logits processors applied after the config's own (e.g. a model family's vocabulary slice)
        self.extra_processors: list = []
        self._bad: list[torch.Tensor] = []
        #: token records committed since the last mask count, copied to the host with it
        self._pending: list = []

    # ------------------------------------------------------------------ setup
    def _refresh_masks(self, x: torch.Tensor, phase: Phase) -> None:
        """Count each row's masks per region of the phase with one device-to-host copy; the loop's
        bookkeeping reads these Python ints (no per-row tensor work or synchronisation)."""
        masked = x == self.mask_id
        pos = torch.arange(x.shape[1], device=x.device)
        per_region = []
        for reg in phase.regions:
            lo = torch.tensor([s for s, _ in reg.spans], device=x.device)
            hi = torch.tensor([e for _, e in reg.spans], device=x.device)
            per_region.append((masked & (pos >= lo[:, None]) & (pos < hi[:, None])).sum(1))
        counts = torch.stack(per_region)
        pending, self._pending = self._pending, []
        if not pending:
            self._left = {id(reg): c for reg, c in zip(phase.regions, counts.tolist())}  # the one copy
            return
        # the one device-to-host copy: the counts and the token records of the commits since the
        # last count (float64 holds both exactly)
        flat = torch.cat([counts.double().reshape(-1), *[p[3].reshape(-1).to(counts.device) for p in pending]])
        host = flat.tolist()
        b = x.shape[0]
        self._left = {id(reg): [int(v) for v in host[i * b : (i + 1) * b]] for i, reg in enumerate(phase.regions)}
        at = len(phase.regions) * b
        for tokens, step, pad, packed in pending:
            n = packed.shape[1]
            p_, t_, c_, h_ = (host[at + i * n : at + (i + 1) * n] for i in range(4))
            at += 4 * n
            for p, t, c, h in zip(p_, t_, c_, h_):
                tokens.append(TokenRecord(step=step, position=int(p) - pad, token=int(t), confidence=c, entropy=h))

    def _masks_in(self, x: torch.Tensor, row: int, region: Region, exact: bool = False) -> int:
        """Masks left in ``region`` for canvas row ``row`` (as of the last refresh unless ``exact``)."""
        if exact:
            rs, re_ = region.spans[row]
            return int((x[row, rs:re_] == self.mask_id).sum()) if re_ > rs else 0
        return self._left[id(region)][row]

    def _may_commit(self, x: torch.Tensor, row: int, region: Region, phase: Phase) -> bool:
        """Whether the row has masks in the region and the region's gate is open (``after``)."""
        if not self._masks_in(x, row, region):
            return False
        after = region.gate.after
        if after is None:
            return True
        other = next((k for k, r in enumerate(phase.regions) if r.name == after[0]), None)
        if other is None:
            return True
        return self._fill(x, row, phase, other) >= after[1] - 1e-12

    def _fills(self, x: torch.Tensor, row: int, phase: Phase) -> dict[str, float]:
        """Every named region's fill fraction (empty for plain blocks)."""
        return {r.name: round(self._fill(x, row, phase, k), 6) for k, r in enumerate(phase.regions)
                if r.name is not None}

    def _fill(self, x: torch.Tensor, row: int, phase: Phase, k: int) -> float:
        """Fraction of the masks region ``k`` had when the phase began that are now committed."""
        init = self._initial_masks.get((row, k), 0)
        if init == 0:
            return 1.0
        return 1.0 - self._masks_in(x, row, phase.regions[k], exact=True) / init

    def _row_schedule(self, n_masks: int, block_steps: int | None, cfg: GenerationConfig) -> list[int]:
        sched = _compat.block_schedule(self.compat, self.sampler, n_masks, block_steps, int(self._block_entry))
        if sched is not None:
            return sched
        if cfg.tokens_per_step is not None:
            return fixed_schedule(n_masks, cfg.tokens_per_step)
        if block_steps is None:
            return fixed_schedule(n_masks, 1)
        return block_schedule(n_masks, block_steps, cfg.schedule)

    # ------------------------------------------------------------------ accounting
    def _count(self, rows: list[_Row], row_ids: list[int], q_len: int) -> None:
        """One forward over ``row_ids`` with ``q_len`` query positions per row: NFE +1 for every
        prompt (group) involved; forward tokens = rows x query length, the cost that does not
        depend on the device (a cached window of 32 costs 32 per row, a full canvas T)."""
        self.nfe += 1
        self.forward_rows += len(row_ids)
        self.forward_tokens += len(row_ids) * q_len
        groups: dict[int, int] = {}
        for ri in row_ids:
            groups[rows[ri].group] = groups.get(rows[ri].group, 0) + 1
        for g, n in groups.items():
            self.group_nfe[g] += 1
            self.group_rows[g] += n
            self.group_tokens[g] += n * q_len

    def _query_len(self, start: int, end: int) -> int:
        """Query positions a cached forward runs (an uncached one runs the whole canvas): the window
        ``[start, end)`` plus, for models that predict token i at position i - 1 (Dream), the one
        extra position before it (see ``DiffusionLM.predict``)."""
        return end - start + (1 if getattr(self.model, "shift_logits", False) and start > 0 else 0)

    # ------------------------------------------------------------------ model
    def _cached_rows(self, cache_state, row_ids: list[int]):
        cache = cache_state["cache"]
        where = cache_state["map"]
        idx = [where[r] for r in row_ids]
        if idx == list(range(cache.batch_size)):
            return cache
        rows_t = torch.tensor(idx, device=cache.keys[0].device)
        # lazy: the model gathers these rows while it writes the window into each layer's keys
        return cache.rows_view(rows_t)

    def _full_predict(self, xs, ams, ids: list[int], start: int, end: int, rows, **kw):
        """Uncached forward of whole canvases ``xs`` (owned by canvas rows ``ids``), counted as
        such: the model's output with logits for ``[start, end)``."""
        self._count(rows, ids, xs.shape[1])
        return self.model.predict(xs, self._mask_arg(ams), start=start, end=end, **self._predict_kw, **kw)

    def _forward(self, x, am, row_ids: list[int], start, end, cache_state, cfg, rows):
        """Aligned logits ``[A, end - start, V]`` for the given rows, managing the phase cache."""
        act = torch.tensor(row_ids, device=x.device)
        if cfg.use_cache == "none":
            return self._full_predict(x[act], am[act], row_ids, start, end, rows).logits
        if cache_state.get("cache") is None:  # (block-causal models start with their exact cache)
            out = self._full_predict(x[act], am[act], row_ids, start, end, rows, return_cache=True)
            cache_state["cache"] = out.cache
            cache_state["map"] = {r: j for j, r in enumerate(row_ids)}
            return out.logits
        return self._cached_predict(x[act], am[act], row_ids, start, end, True, cache_state, cfg, rows, step=True)

    def _cached_predict(self, xs, ams, ids: list[int], start: int, end: int, own_end: bool, cache_state, cfg,
                        rows, step: bool = False) -> torch.Tensor:
        """Cached forward of canvases ``xs`` (owned by canvas rows ``ids``): logits for
        ``[start, end)``. Each row's fresh window starts at its *own* window start (the first of its
        spans in the phase), not the batch's, so a left-padded row computes exactly what it would
        alone; rows with different windows go in separate forwards (one NFE per prompt either way).
        ``own_end``: ``end`` is the phase window's end, and each row stops at its own window's end.
        ``step``: a step's forward (not a lookahead), where a compat block-entry mode applies."""
        total = xs.shape[1]
        ams = self._mask_arg(ams)
        keys = []
        for ri in ids:
            rs, re_ = self._windows.get(ri, (start, end))
            keys.append((rs, re_ if own_end else end))
        parts = list(dict.fromkeys(keys))
        out = None
        for s_, e_ in parts:
            js = [j for j, k in enumerate(keys) if k == (s_, e_)]
            sub = [ids[j] for j in js]
            cache = self._cached_rows(cache_state, sub)
            # block-causal models: the exact cache holds the finished blocks, the window is the block
            window_end = total if (cfg.use_cache == "prefix" and not self.block_causal) else e_
            whole = len(parts) == 1 and (s_, e_) == (start, end)  # one forward for the batch's window
            compat_window = step and self._block_entry and whole
            # Fast-dLLM's compat window has no extra position for Dream's shift
            self._count(rows, sub, window_end - s_ if compat_window else self._query_len(s_, window_end))
            if whole:
                if compat_window:
                    return _compat.window_logits(self.model, xs, ams, cache, start, window_end, end)
                return self.model.predict(xs, ams, cache=cache, start=start, end=window_end, logits_end=end,
                                          **self._predict_kw).logits
            sel = torch.tensor(js, device=xs.device)
            lg = self.model.predict(xs[sel], None if ams is None else ams[sel], cache=cache, start=s_, end=window_end, logits_end=e_,
                                    **self._predict_kw).logits
            if out is None:
                out = lg.new_zeros((len(ids), end - start, lg.shape[-1]))
            out[sel, s_ - start : e_ - start] = lg
        return out

    def _mask_arg(self, ams: torch.Tensor) -> torch.Tensor | None:
        """The attention mask to hand the model: None when no row of the batch is padded, so the
        forward needs no mask and never asks the device whether one is all ones."""
        return None if self._pad_free else ams

    def _process(self, logits: torch.Tensor, cfg: GenerationConfig, stop_ids: list[int]) -> torch.Tensor:
        """Raw logits -> the fp32 scores samplers see: the config's processors (see
        :mod:`unmask.decoding.processors`), then any a caller appended to ``extra_processors``."""
        procs = default_processors(cfg, self.mask_id, stop_ids, keep_mask=self.compat.mask_softmax)
        return apply_processors(logits, procs + self.extra_processors)

    # ------------------------------------------------------------------ main
    @torch.no_grad()
    def generate(self, prompts: Sequence[Sequence[int]], cfg: GenerationConfig) -> GenerationOutput:
        cfg.validate()
        if cfg.compile:
            from .compiled import compiled_forward

            with compiled_forward(self.model):
                return self.generate(prompts, replace(cfg, compile=False))
        self.compat = _compat.resolve(cfg.compat, self.model)
        self._block_entry = _compat.uses_block_entry(self.compat, self.model, cfg.use_cache)
        top_k = _compat.effective_top_k(self.compat, cfg.top_k)
        if top_k != cfg.top_k:
            cfg = replace(cfg, top_k=top_k)
        adapted = _compat.adapt_sampler(self.sampler, self.compat)
        if adapted is not self.sampler:
            return Engine(self.model, adapted).generate(prompts, cfg)
        if len(prompts) == 0:
            raise UnmaskError("no prompts given")
        if cfg.beam_size > 1 and not getattr(self.sampler, "needs_lookahead", False):
            raise UnmaskError(f"beam_size > 1 needs a lookahead sampler (info_gain, lookum), not {self.sampler.name}")
        device = self.model.device
        lengths = [len(p) for p in prompts]
        prompt_len = max(lengths)
        self._pad_free = min(lengths) == prompt_len
        max_new = cfg.max_new_tokens
        bc = 0  # block length of a block-causal model (0: not one)
        if self.block_causal:
            bc = bcm.block_length_of(self.model, cfg.block_size)
            if cfg.plan is not None:
                raise UnmaskError("block-causal models (SDAR/TraDo) decode on their own block grid; drop the custom plan")
            groups = bcm.phase_groups(prompts, bc)
            if len(groups) > 1:  # rows share the block grid (and one exact cache) only within a phase
                return self._generate_phases(prompts, cfg, groups)
            if max_new:  # whole blocks, as the reference (an infilling canvas keeps its length)
                max_new = bcm.grid_new_tokens(prompt_len, max_new, bc)
            self._predict_kw = {"block_length": bc}
        total = prompt_len + max_new
        if self.max_len and total > self.max_len:
            raise UnmaskError(
                f"prompt ({prompt_len} tokens) + max_new_tokens ({cfg.max_new_tokens}) = {total} exceeds the "
                f"model's context of {self.max_len} tokens; shorten the prompt or lower --max_new_tokens"
            )
        if getattr(self.model, "shift_logits", False) and min(lengths) == 0:
            raise UnmaskError("this model predicts each token from the one before it: the prompt must not be empty")
        stop_ids = list(cfg.stop_token_ids) if cfg.stop_token_ids is not None else [self.eos_id]
        check_token_ids(self.model, {"mask_token_id": [self.mask_id], "eos_token_id": [self.eos_id],
                                     "pad_token_id": [self.pad_id], "stop_token_ids": stop_ids,
                                     "suppress_token_ids": list(cfg.suppress_token_ids),
                                     "prompt token ids": sorted({int(t) for p in prompts for t in p})})
        seeds = _seeds(cfg.seed, len(prompts))

        # rows: one per prompt, or best_of runs / beam_size beams per prompt
        per = max(cfg.beam_size, cfg.best_of)
        b = len(prompts) * per
        x = torch.full((b, total), self.pad_id, dtype=torch.long)
        am = torch.zeros((b, total), dtype=torch.long)
        rows: list[_Row] = []
        for g, p in enumerate(prompts):
            for j in range(per):
                r = g * per + j
                if len(p):
                    x[r, prompt_len - len(p) : prompt_len] = torch.tensor(list(p), dtype=torch.long)
                am[r, prompt_len - len(p) :] = 1
                seed = seeds[g] + (j if cfg.best_of > 1 else 0)
                rows.append(_Row(index=r, group=g, pad=prompt_len - len(p),
                                 generator=torch.Generator().manual_seed(seed),
                                 trace=Trace(prompt_length=len(p), max_new_tokens=cfg.max_new_tokens),
                                 alive=(j == 0 or cfg.beam_size == 1)))
        x[:, prompt_len:] = self.mask_id
        # the setup reads the prompts (Python lists) and the canvas while it is still on the host
        if not max_new and not any(self.mask_id in p for p in prompts):
            raise UnmaskError("nothing to decode: max_new_tokens is 0 and the prompt has no mask tokens")
        for row in rows:
            row.trace.initial_tokens = [int(t) for t in prompts[row.group]] + [self.mask_id] * max_new
        planner = bcm.AlignedBlockPlanner(bc) if bc else (cfg.plan or BlockPlanner())
        planner.check(cfg, self.sampler)
        layout = Layout(x=x.clone(), pads=[r.pad for r in rows], groups=[r.group for r in rows],
                        prompt_len=prompt_len, mask_id=self.mask_id)
        x, am = x.to(device), am.to(device)
        phases = planner.plan(layout, cfg)
        for phase in phases:
            for reg in phase.regions:
                if reg.name is not None:
                    for row in rows:
                        s_, e_ = reg.spans[row.index]
                        row.trace.regions[reg.name] = [s_ - row.pad, e_ - row.pad]

        if cfg.tokens_hook is not None:
            x = call_tokens_hook(cfg.tokens_hook, None, x, None, 0)

        self.nfe = 0
        self._pending = []
        self.forward_rows = 0
        self.forward_tokens = 0
        self.group_nfe = [0] * len(prompts)
        self.group_rows = [0] * len(prompts)
        self.group_tokens = [0] * len(prompts)
        t0 = time.perf_counter()
        global_step = 0
        exact = None  # block-causal models: exact K/V of every finished block (positions [0, ws))
        if bc and cfg.use_cache != "none":
            self._count(rows, list(range(b)), phases[0].window()[0])  # the prompt, [0, first window)
            exact = self.model.prefill(x, am, phases[0].window()[0], block_length=bc)
        for phase in phases:
            ws, we = phase.window()
            if bc and all(r.done or not r.alive for r in rows):
                break
            self._windows = {row.index: phase.row_window(row.index) for row in rows}
            named = any(reg.name is not None for reg in phase.regions)
            cache_state: dict[str, Any] = {}
            if exact is not None:
                cache_state = {"cache": exact, "map": {r: r for r in range(b)}}
            if self._block_entry:
                self._entry_commit(x, am, ws, we, phase, cache_state, cfg, rows, stop_ids)
            self._refresh_masks(x, phase)
            self._initial_masks = {(row.index, k): self._masks_in(x, row.index, reg)
                                   for row in rows for k, reg in enumerate(phase.regions)}
            fast = _batched.eligible_for(self, phase, cfg)
            if fast:
                self._span_all = _batched._spans(phase, list(range(b)), ws, we, x.device)
            for row in rows:
                row.sched = {}
                for ri_, reg in enumerate(phase.regions):
                    if reg.gate.scheduled:
                        n_in = self._masks_in(x, row.index, reg)
                        if bc and cfg.tokens_per_step is None:  # the reference's quotas of a full block
                            sched = bcm.transfer_quotas(n_in, bc, reg.steps)
                        else:
                            sched = self._row_schedule(n_in, reg.steps, cfg)
                        row.sched[ri_] = _Sched(sched, block_steps=reg.steps or len(sched))
                row.next_logits = None
                row.stalled = False
                row.prev_probs = {}
            while True:
                live = [r.index for r in rows if r.alive and not r.done and not r.stalled
                        and any(self._masks_in(x, r.index, reg) for reg in phase.regions)]
                if not live:
                    break
                if fast:  # the vectorised step (decoding/batched.py): one host copy per step
                    x = _batched.step(self, phase, live, x, am, ws, we, global_step, cache_state, cfg, rows,
                                      stop_ids, prompt_len)
                    global_step += 1
                    continue
                committed: set[int] = set()
                for stage in phase.stages():  # all regions at once (Jacobi) or one by one (Gauss-Seidel)
                    x, stage_logits = self._stage(stage, phase, live, committed, x, am, ws, we, global_step,
                                                  cache_state, cfg, rows, stop_ids, named)
                    if stage_logits is not None:
                        logits = stage_logits  # the last forward's, for the tokens hook
                if not committed:  # only a plan whose gates wait on each other can get here
                    raise UnmaskError("the decoding plan made no progress: every region's gate is closed")
                for ri in committed:
                    rows[ri].step += 1
                    if not any(self._masks_in(x, ri, reg) for reg in phase.regions):
                        rows[ri].next_logits = None
                global_step += 1
                if cfg.tokens_hook is not None:
                    before = x.clone()
                    x = call_tokens_hook(cfg.tokens_hook, global_step - 1, x, logits, ws)
                    # a row whose canvas the hook changed must not reuse its lookahead logits; a
                    # hook that only watches (live view, server streaming) costs no extra forward
                    # (call_tokens_hook refuses a canvas of another shape)
                    changed = (x != before).any(1).tolist()
                    for row in rows:
                        if changed[row.index]:
                            row.next_logits = None
                if self._handle_stops(x, rows, prompt_len, cfg, stop_ids) or cfg.tokens_hook is not None:
                    self._refresh_masks(x, phase)  # a hook or a stop may have changed the canvas
            if exact is not None and we < total:  # append the finished block (one more forward)
                everyone = list(range(b))
                self._count(rows, everyone, we - ws)  # the finished block
                exact = self.model.extend_cache(x, am, self._cached_rows(cache_state, everyone), ws, we,
                                                block_length=bc)

        if self._pending:  # every commit is followed by a mask count; this is a safety net
            self._refresh_masks(x, phases[-1])
        seconds = time.perf_counter() - t0
        x_host = x.tolist()  # the call's one copy of the final canvas
        sequences, generated, traces = [], [], []
        for g in range(len(prompts)):
            group = [r for r in rows if r.group == g and r.alive]
            if cfg.beam_size > 1:
                best = max(group, key=lambda r: (r.score, -r.index))
            elif cfg.best_of > 1:
                best = min(group, key=lambda r: (r.trace.cumulative_entropy, r.index))
            else:
                best = group[0]
            seq = x_host[best.index][best.pad :]
            gen = x_host[best.index][prompt_len:]
            cut = next((i for i, t in enumerate(gen) if t in stop_ids), len(gen))
            sequences.append(seq)
            generated.append(gen[:cut])
            best.trace.final_tokens = seq
            best.trace.nfe = self.group_nfe[g]
            best.trace.forward_rows = self.group_rows[g]
            best.trace.forward_tokens = self.group_tokens[g]
            traces.append(best.trace)
        return GenerationOutput(
            sequences=sequences,
            generated=generated,
            traces=traces,
            nfe=self.nfe,
            forward_rows=self.forward_rows,
            seconds=seconds,
            prompt_lengths=lengths,
            forward_tokens=self.forward_tokens,
        )

    def _generate_phases(self, prompts, cfg: GenerationConfig, groups: list[list[int]]) -> GenerationOutput:
        """A block-causal batch whose prompt lengths differ modulo the block length: decode one
        sub-batch per phase (each prompt keeps its seed) and put the results back in order."""
        seeds = _seeds(cfg.seed, len(prompts))
        outs = [self.generate([prompts[i] for i in group], replace(cfg, seed=[seeds[i] for i in group]))
                for group in groups]
        slot = {i: (gi, j) for gi, group in enumerate(groups) for j, i in enumerate(group)}
        pick = [slot[i] for i in range(len(prompts))]
        return GenerationOutput(
            sequences=[outs[g].sequences[j] for g, j in pick],
            generated=[outs[g].generated[j] for g, j in pick],
            traces=[outs[g].traces[j] for g, j in pick],
            nfe=sum(o.nfe for o in outs),
            forward_rows=sum(o.forward_rows for o in outs),
            forward_tokens=sum(o.forward_tokens for o in outs),
            seconds=sum(o.seconds for o in outs),
            prompt_lengths=[len(p) for p in prompts],
        )

    def _stage(self, stage: list[Region], phase: Phase, live: list[int], committed: set[int], x, am, ws: int,
               we: int, global_step: int, cache_state, cfg, rows, stop_ids, named: bool):
        """One forward over the phase window for the rows that may commit in ``stage`` (its regions'
        gates open), then every row and region's decision, committed into ``x``. Adds the rows
        that committed to ``committed``; returns the canvas and the processed logits (None when no
        row could commit)."""
        device = x.device
        open_ = {ri: [reg for reg in stage if self._may_commit(x, ri, reg, phase)] for ri in live}
        act_list = [ri for ri in live if open_[ri]]
        if not act_list:
            return x, None
        raw = self._step_logits(x, am, act_list, ws, we, cache_state, cfg, rows)
        logits = self._process(raw, cfg, stop_ids)
        if cfg.logits_hook is not None:
            logits = call_logits_hook(cfg.logits_hook, global_step,
                                      x[torch.tensor(act_list, device=device)], logits, ws)
        self._bad: list[torch.Tensor] = []  # each view's finiteness flag (see guards.nonfinite)
        # the named regions' fill on the canvas these logits saw (lockstep's trace)
        seen = {ri: self._fills(x, ri, phase) for ri in act_list} if named else {}
        groups = []  # (region, its index, rows deciding there, their views)
        for reg in stage:
            sub = [j for j, ri in enumerate(act_list) if reg in open_[ri]]
            if sub:
                rk = phase.regions.index(reg)
                views = [self._view(rows[act_list[j]], x, logits[j], ws, reg, rk, cfg,
                                    seen.get(act_list[j])) for j in sub]
                groups.append((reg, rk, [act_list[j] for j in sub], views))
        if self._bad and bool(torch.stack(self._bad).any()):  # one sync for every view of the stage
            raise_nonfinite(logits, cfg.logits_hook is not None)
        if cfg.beam_size > 1:  # plain blocks only: one region per stage
            for reg, rk, ids, views in groups:
                x, slots = self._beam_step(views, ids, x, am, ws, we, phase, cache_state, cfg, rows,
                                           stop_ids, reg, rk)
                committed.update(slots)
        else:
            regions_done: dict[int, int] = {}
            decided = self._decide(groups, x, am, ws, we, cache_state, cfg, rows, stop_ids)
            for (reg, rk, ids, views), actions in zip(groups, decided):
                for view, ri, action in zip(views, ids, actions):
                    if self.sampler.needs_previous_probs:
                        rows[ri].prev_probs[rk] = (view.positions - ws, view.probs, action.state)
                    chosen = self._commit(rows[ri], x, view, action, phase, reg, rk)
                    regions_done[ri] = regions_done.get(ri, 0) + 1
                    if self.compat.mask_softmax:
                        rows[ri].stalled = self._stalled(rows[ri], chosen, rk)
                committed.update(ids)
            for ri, n in regions_done.items():
                if n > 1:  # a lookahead saw one region's action, not the whole step's
                    rows[ri].next_logits = None
        self._refresh_masks(x, phase)
        return x, logits

    def _step_logits(self, x, am, act_list, s, e, cache_state, cfg, rows) -> torch.Tensor:
        """Raw aligned logits ``[A, e - s, V]`` for the active rows: rows that carry the winner's
        lookahead logits from the previous step reuse them; the others share one forward."""
        need = [ri for ri in act_list if rows[ri].next_logits is None]
        fresh = {}
        if need:
            out = self._forward(x, am, need, s, e, cache_state, cfg, rows)
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

    def _view(self, row: _Row, x: torch.Tensor, logits: torch.Tensor, ws: int, region: Region, rk: int,
              cfg, seen: dict[str, float] | None = None) -> StepView:
        """The row's view of one region: the positions its gate lets through, their predictions,
        and ``k``. ``logits`` cover the phase window starting at canvas index ``ws``."""
        r = row.index
        rs, re_ = region.spans[r]
        # the masked positions in order, window-local; their number is known on the host from the
        # last mask count (a stable sort instead of ``nonzero``, which would block on the device)
        n = self._left[id(region)][r]
        open_ = (x[r, rs:re_] != self.mask_id).to(torch.int8)
        elig = torch.argsort(open_, stable=True)[:n] + (rs - ws)
        lg = logits[elig]  # [n, V]
        probs = torch.softmax(lg, dim=-1)
        ent = entropy_from_logits(lg)
        self._bad.append(nonfinite(ent))  # NaN/+inf/all -inf at a read position (checked per stage)
        tokens = propose_tokens(lg, cfg.temperature, cfg.top_k, cfg.top_p, row.generator)
        conf = probs.gather(-1, tokens[:, None]).squeeze(-1)
        if self.compat.active:
            probs, conf, ref_ent = _compat.view_scores(self.compat, lg, tokens, cfg.temperature, cfg.top_k, cfg.top_p)
            ent = ent if ref_ent is None else ref_ent
        prev = prev_state = None
        if self.sampler.needs_previous_probs:
            # the row's last view in this block (stored after its action, with the sampler's
            # per-position ``Action.state``), aligned to today's positions on the device
            stored = row.prev_probs.get(rk)
            if stored is not None:
                prev, prev_state = _align_previous(stored, elig, logits.shape[0])
        k = None
        extra: dict[str, Any] = {"seen_fill": seen} if seen else {}
        gate = region.gate
        if gate.scheduled:
            sc = row.sched[rk]
            if self.sampler.uses_schedule:
                # counts not committed earlier (a bypass may commit fewer than k) carry over, and
                # the last scheduled step takes everything left, so no schedule can leave masks
                # (compat with the mask token in the softmax: the reference's last step commits
                # only its quota, leaving any mask it "committed" earlier; see compat.row_stalled)
                if sc.ptr < len(sc.schedule) - 1 or (self.compat.mask_softmax and sc.ptr < len(sc.schedule)):
                    k = sc.schedule[sc.ptr] + sc.deficit
                else:
                    k = int(elig.numel())
                if _compat.uses_dream_steps(self.compat, self.sampler) and sc.block_steps:
                    sc.ptr, k = _compat.dream_step(int(elig.numel()), max(sc.ptr, int(self._block_entry)),
                                                   sc.block_steps)
                k = max(1, min(k, int(elig.numel())))
            extra.update({"block_step": sc.ptr, "block_steps": sc.block_steps})
        else:
            remaining = int(elig.numel())
            passed = (conf >= gate.tau).nonzero().squeeze(-1)
            if passed.numel():
                keep = passed
                k = min(int(passed.numel()), gate.cap(remaining))
                extra["gate"] = "threshold"
            else:  # nothing is sure enough: the sampler commits the region's single best position
                keep = torch.arange(remaining, device=conf.device)
                k = 1
                extra["gate"] = "fallback"
            extra["eligible"] = int(passed.numel())
            elig, lg, probs, ent, tokens, conf = elig[keep], lg[keep], probs[keep], ent[keep], tokens[keep], conf[keep]
            prev = None if prev is None else prev[keep]
            prev_state = None if prev_state is None else prev_state[keep]
        gen = row.generator

        def resample() -> torch.Tensor:
            return propose_tokens(lg, cfg.temperature, cfg.top_k, cfg.top_p, gen)

        view = StepView(
            logits=lg, probs=probs, positions=elig + ws, tokens=tokens, confidence=conf, entropy=ent, k=k,
            generator=row.generator, step=row.step, block_start=rs, temperature=cfg.temperature,
            resample=resample, extra=extra, previous_probs=prev, previous_state=prev_state,
        )
        return view

    def _decide(self, groups, x, am, s, e, cache_state, cfg, rows, stop_ids) -> list[list[Action]]:
        """Ask the sampler, per group ``(region, index, rows, views)`` of one stage. Lookahead
        samplers answer in two phases so that the candidates of every row and region are scored
        in one batched forward; a row's next logits become its winner's lookahead logits."""
        sampler = self.sampler
        if not getattr(sampler, "needs_lookahead", False):
            return [[sampler.select(v) for v in views] for _, _, _, views in groups]
        flat = sampler.propose_many([v for _, _, _, views in groups for v in views])
        proposals, at = [], 0
        for _, _, _, views in groups:
            proposals.append(flat[at : at + len(views)])
            at += len(views)
        requests, where = [], []
        for g, (reg, _, ids, views) in enumerate(groups):
            for j, p in enumerate(proposals[g]):
                if isinstance(p, list):
                    requests.append((ids[j], views[j], p, reg))
                    where.append((g, j))
        if not requests:
            return proposals
        results = self._lookahead(requests, x, am, s, e, cache_state, cfg, rows, stop_ids, sampler.hnext_scope,
                                  defer_check=True)
        actions = sampler.choose_many([v for _, v, _, _ in requests], [c for _, _, c, _ in requests], results)
        # the lookahead's finiteness check rides on the objectives' host copy: every entropy it
        # read enters some candidate's J, so a non-finite one shows as a non-finite J
        read, ent_read = self._lookahead_read
        if all("J" in a.info for a in actions):
            bad = not all(math.isfinite(v) for a in actions for v in a.info["J"])
        else:  # a sampler that reports no objectives: ask the device
            bad = ent_read is not None and bool(nonfinite(ent_read))
        if bad:
            check_model_logits(read, "the model (lookahead)")
            raise_nonfinite(read, False)
        for (g, j), (ri, _, _, _), res, action in zip(where, requests, results, actions):
            proposals[g][j] = action
            rows[ri].next_logits = res.block_logits(action.info.get("winner", 0))
        return proposals

    def _lookahead(self, requests, x, am, s, e, cache_state, cfg, rows, stop_ids, scope: str,
                   defer_check: bool = False):
        """Score candidate actions: apply each to a copy of its row's canvas and run the copies in
        as few forwards as ``max_lookahead_rows`` allows (cached context reused read-only).
        Returns, per request, the entropies of the predictions at every window position (computed
        only where H_next reads them; 0 elsewhere), which of them are still masked (scope
        ``block``/``padded``: only masks of the request's region), and every candidate's raw
        logits over the phase window ``[s, e)`` (the winner's become the next logits of its row).

        What runs per cache mode (``scope`` resolved by :func:`resolve_hnext_scope`): without a
        cache the whole canvas per candidate; ``prefix`` the window ``[s, T)`` against the prefix
        cache, as the plain step; ``dual`` only the active window ``[s, e)`` against the frozen
        prefix and suffix (an explicit ``hnext_scope="all"`` widens it to ``[s, T)``).
        """
        total = x.shape[1]
        scope = resolve_hnext_scope(scope, cfg.use_cache)
        owner = [ri for ri, _, cands, _ in requests for _ in cands]
        xb = x[torch.tensor(owner, device=x.device)]  # advanced indexing: a fresh copy
        i = 0
        for _, view, cands, _ in requests:
            for c in cands:
                toks = c.tokens if c.tokens is not None else view.tokens[c.index]
                xb[i, view.positions[c.index]] = toks.to(xb.dtype)
                i += 1
        # block-causal models: later blocks cannot be predicted before this one is cached, so
        # H_next covers the active block in both cache modes (cached == uncached)
        window_end = total if (scope == "all" and not self.block_causal) else e
        chunk = cfg.max_lookahead_rows or len(owner)
        raws = []
        for lo in range(0, len(owner), chunk):
            ids = owner[lo : lo + chunk]
            xs, ams = xb[lo : lo + chunk], am[torch.tensor(ids, device=x.device)]
            if cfg.use_cache == "none":
                raws.append(self._full_predict(xs, ams, ids, s, window_end, rows).logits)
            else:
                raws.append(self._cached_predict(xs, ams, ids, s, window_end, scope != "all", cache_state, cfg, rows))
        raw = raws[0] if len(raws) == 1 else torch.cat(raws)
        masked = xb[:, s:window_end] == self.mask_id
        if scope != "all":
            keep = torch.zeros_like(masked)
            j = 0
            for ri, _, cands, region in requests:
                rs, re_ = region.spans[ri]
                keep[j : j + len(cands), rs - s : re_ - s] = True
                j += len(cands)
            masked &= keep
        # full-vocabulary entropies, and the finiteness check, only where they are read: the
        # still-masked positions (the next step reads the winner's logits only there too)
        read = raw[masked]
        ent = torch.zeros(masked.shape, dtype=torch.float32, device=raw.device)
        self._lookahead_read = (read, None)
        if read.shape[0]:
            ent_read = entropy_from_logits(self._process(read, cfg, stop_ids))
            self._lookahead_read = (read, ent_read)
            if not defer_check and bool(nonfinite(ent_read)):
                check_model_logits(read, "the model (lookahead)")
                raise_nonfinite(read, False)
            ent[masked] = ent_read
        outside = None
        if scope == "padded":  # the seeds' dual cache: each mask outside the window counts ln V
            outside = (xb == self.mask_id).sum(1) - masked.sum(1)
        results, i = [], 0
        for _, _, cands, _ in requests:
            m = len(cands)
            results.append(LookaheadResult(
                entropy=ent[i : i + m], masked=masked[i : i + m], raw_block_logits=raw[i : i + m, : e - s],
                outside_masks=None if outside is None else outside[i : i + m],
                outside_entropy=math.log(raw.shape[-1])))
            i += m
        return results

    def _beam_step(self, views, act_list, x, am, s, e, phase, cache_state, cfg, rows, stop_ids, region, rk):
        """Beam search step: expand every live beam with its candidates (all lookaheads batched),
        keep the ``beam_size`` best distinct states per prompt by cumulative objective. Returns
        the new canvas and the rows (beam slots) that committed."""
        sampler = self.sampler
        proposals = sampler.propose_many(views)
        pending = [j for j, p in enumerate(proposals) if isinstance(p, list)]
        requests = [(act_list[j], views[j], proposals[j], region) for j in pending]
        results = (self._lookahead(requests, x, am, s, e, cache_state, cfg, rows, stop_ids, sampler.hnext_scope)
                   if requests else [])
        res_of = {j: r for j, r in zip(pending, results)}
        children: dict[int, list[_Child]] = {}
        for j, ri in enumerate(act_list):
            row = rows[ri]
            prop = proposals[j]
            if isinstance(prop, list):
                res = res_of[j]
                scores = sampler.objective(views[j], prop, res).tolist()
                for c, (cand, val) in enumerate(zip(prop, scores)):
                    act = Action(cand.index, cand.tokens, info={"kind": "lookahead", "winner": c,
                                                                "J": [round(v, 6) for v in scores],
                                                                "objective": val})
                    children.setdefault(row.group, []).append(
                        _Child(ri, act, row.score + float(val), res.block_logits(c)))
            else:
                val = sampler.step_objective(views[j], prop)
                prop.info["objective"] = val
                children.setdefault(row.group, []).append(_Child(ri, prop, row.score + val, None))
        new_x = x.clone()
        snapshot = {ri: (rows[ri].trace, rows[ri].generator.get_state(), rows[ri].step,
                         {k_: v.copy() for k_, v in rows[ri].sched.items()}) for ri in act_list}
        committed: list[int] = []
        view_of = dict(zip(act_list, views))
        old_map = cache_state.get("map", {})
        cmap = dict(old_map)
        for g, kids in children.items():
            kids.sort(key=lambda c: -c.score)  # stable: earlier beams and candidate 0 win ties
            slots = [r.index for r in rows if r.group == g and not r.done]
            chosen, seen = [], set()
            for c in kids:
                xc = x[c.parent].clone()
                view = view_of[c.parent]
                toks = c.action.tokens if c.action.tokens is not None else view.tokens[c.action.index]
                xc[view.positions[c.action.index]] = toks.to(xc.dtype)
                key = tuple(xc.tolist())
                if key in seen:
                    continue
                seen.add(key)
                chosen.append(c)
                if len(chosen) == len(slots):
                    break
            for slot, c in zip(slots, chosen):
                trace, gstate, step, sched = snapshot[c.parent]
                row = rows[slot]
                new_x[slot] = x[c.parent]
                row.trace = replace(trace, tokens=list(trace.tokens), steps=list(trace.steps),
                                    regions=dict(trace.regions))
                row.generator = torch.Generator().manual_seed(0)
                row.generator.set_state(gstate)
                row.step, row.sched = step, {k_: v.copy() for k_, v in sched.items()}
                row.score, row.alive = c.score, True
                row.next_logits = c.next_logits
                if c.parent in old_map:
                    cmap[slot] = old_map[c.parent]
                self._commit(row, new_x, view_of[c.parent], c.action, phase, region, rk)
                committed.append(slot)
            for slot in slots[len(chosen):]:
                rows[slot].alive = False
        if "map" in cache_state:
            cache_state["map"] = cmap
        return new_x, committed

    def _stalled(self, row: _Row, chosen: torch.Tensor, rk: int) -> bool:
        """Compat with the mask token in the softmax: a step may "commit" the mask token (a no-op);
        the row stops its block where the reference would (see ``compat.row_stalled``). ``chosen``:
        the tokens the step's commit wrote."""
        real = int((chosen != self.mask_id).sum())
        sc = row.sched[rk]
        return _compat.row_stalled(self.compat, self.sampler, sc.ptr, len(sc.schedule), sc.block_steps,
                                   int(chosen.numel()), real)

    def _entry_commit(self, x, am, s, e, phase, cache_state, cfg, rows, stop_ids) -> None:
        """Fast-dLLM's Dream block loop (compat ``block_entry_commit``): the refresh forward builds
        the block's cache and commits the block's first token unconditionally; its logits serve
        nothing else (the block's steps all run on the cache)."""
        act_list = [r.index for r in rows if r.alive and not r.done and bool((x[r.index, s:e] == self.mask_id).any())]
        if not act_list:
            return
        raw = self._forward(x, am, act_list, s, e, cache_state, cfg, rows)  # refresh: fills the cache
        logits = self._process(raw[:, :1], cfg, stop_ids)
        for j, ri in enumerate(act_list):
            row = rows[ri]
            if not bool(x[ri, s] == self.mask_id):
                continue
            lg = logits[j]  # [1, V]
            tok = _compat.entry_tokens(lg[0], self.compat, cfg.temperature, cfg.top_k, cfg.top_p, row.generator)
            probs, conf, ent = _compat.view_scores(self.compat, lg, tok[None], cfg.temperature, cfg.top_k, cfg.top_p)
            view = StepView(logits=lg, probs=probs, positions=torch.tensor([s], device=x.device), tokens=tok[None],
                            confidence=conf, entropy=ent if ent is not None else entropy_from_logits(lg), k=None,
                            generator=row.generator, step=row.step, block_start=s, temperature=cfg.temperature)
            self._commit(row, x, view, Action(torch.tensor([0]), info={"kind": "entry"}), phase, phase.regions[0], -1)
            row.step += 1

    def _commit(self, row: _Row, x: torch.Tensor, view: StepView, action: Action, phase: Phase, region: Region,
                rk: int) -> torch.Tensor:
        """Write the action's tokens into the canvas and record them in the trace (with the
        region's name and every named region's fill fraction when the plan names regions).
        Returns the tokens written (in position order)."""
        idx = action.index.to(view.positions.device)
        chosen = action.tokens.to(view.tokens.device) if action.tokens is not None else view.tokens[idx]
        order = torch.argsort(idx)  # tokens of one step are simultaneous: record them by position
        idx, chosen = idx[order], chosen[order]
        pos = view.positions[idx]
        x[row.index, pos] = chosen.to(x.dtype)
        conf = view.probs[idx, chosen.to(idx.device)].double()
        ent = view.entropy[idx].double()
        # the step's token records (positions and tokens are exact in float64) come to the host
        # with the next mask count, one copy for every row (see :meth:`_refresh_masks`)
        packed = torch.stack([pos.double(), chosen.to(pos.device).double(), conf, ent])
        self._pending.append((row.trace.tokens, row.step, row.pad, packed))
        info = {k_: v for k_, v in action.info.items() if k_ != "kind"}
        rec = StepRecord(step=row.step, block=phase.index, committed=int(idx.numel()),
                         kind=action.info.get("kind", "select"), info=info)
        if region.name is not None:
            rec.region = region.name
            rec.fill = self._fills(x, row.index, phase)
            rec.nfe = self.group_nfe[row.group]
            info.update(view.extra)
        row.trace.steps.append(rec)
        sc = row.sched.get(rk)
        if sc is not None:
            if view.k is not None:
                sc.deficit = max(0, view.k - int(idx.numel()))
            sc.ptr += 1
        return chosen

    def _handle_stops(self, x: torch.Tensor, rows: list[_Row], prompt_len: int, cfg, stop_ids: list[int]) -> bool:
        """Apply ``eos_fill`` and ``stop_at_eos`` (on the device, see ``batched._stops``, with one
        host copy of which rows finished or were filled); returns whether the canvas changed."""
        if not (cfg.stop_at_eos or cfg.eos_fill) or cfg.max_new_tokens == 0:
            return False
        done, filled = _batched._stops(self, x, rows, prompt_len, cfg, stop_ids)
        done_h, filled_h = torch.stack([done, filled]).tolist()
        for row in rows:
            if filled_h[row.index]:
                row.next_logits = None
            if done_h[row.index]:
                row.done = True
        return any(done_h) or any(filled_h)


def generate(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    sampler: Sampler | str = "confidence",
    config: GenerationConfig | None = None,
    **overrides: Any,
) -> GenerationOutput:
    """Decode a batch of token-id prompts. ``overrides`` set :class:`GenerationConfig` fields;
    sampler options (e.g. ``threshold``) may be given too when ``sampler`` is a name. Dream's
    hook keywords ``generation_logits_hook_func`` / ``generation_tokens_hook_func`` are accepted
    as aliases of ``logits_hook`` / ``tokens_hook`` (see :mod:`unmask.decoding.hooks`)."""
    from ..samplers.base import all_sampler_options, make_sampler

    overrides = dream_hook_aliases(overrides)
    fields = set(GenerationConfig.__dataclass_fields__)
    cfg_kwargs = {k: v for k, v in overrides.items() if k in fields}
    sampler_kwargs = {k: v for k, v in overrides.items() if k not in fields}
    unknown = sorted(set(sampler_kwargs) - all_sampler_options())
    if unknown:
        raise UnmaskError(f"unknown option(s) {', '.join(unknown)}: neither a GenerationConfig field nor an "
                          "option of any sampler")
    if isinstance(sampler, str):
        sampler = make_sampler(sampler, **sampler_kwargs)
    elif sampler_kwargs:
        raise UnmaskError(f"sampler options {sorted(sampler_kwargs)} given with a Sampler object; "
                          "set them on the object (or pass the sampler by name)")
    base = {k: getattr(config, k) for k in fields} if config else {}
    cfg = GenerationConfig(**{**base, **cfg_kwargs})
    return Engine(model, sampler).generate(prompts, cfg)
