"""The settings of one generation and what it returns.

:class:`GenerationConfig` is the one declaration of every decoding setting (the CLI, the YAML
presets and the API all end here); :class:`GenerationOutput` is the result of one
``generate`` call. Nothing here runs a model: the loop lives in :mod:`unmask.decoding.engine`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from ..errors import UnmaskError
from . import compat as _compat
from .schedule import SCHEDULES
from .trace import Trace

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


def row_seeds(seed: int | Sequence[int] | None, batch: int) -> list[int]:
    """One seed per prompt: the config's seed for every row, or one per row (None: a fresh random
    seed shared by the batch, drawn from torch's global generator)."""
    if seed is None:
        base = int(torch.randint(0, 2**62, (1,)).item())
        return [base] * batch
    if isinstance(seed, int):
        return [seed] * batch
    seeds = [int(s) for s in seed]
    if len(seeds) != batch:
        raise UnmaskError(f"got {len(seeds)} seeds for {batch} prompts")
    return seeds
