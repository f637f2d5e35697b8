"""The sampler contract: a policy that picks which masked positions to commit.

The engine hands a sampler one :class:`StepView` per row and step: the eligible masked positions of
the active block, their (processed, fp32) logits and probabilities, the token the engine proposes
at each position, and ``k`` from the schedule. The sampler answers with an :class:`Action`: which of
those positions to commit, and (optionally) which tokens. A sampler never sees caches, padding or
blocks; samplers that look ahead ask the engine through ``view.lookahead``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from ..errors import UnmaskError


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats over the last axis, computed in fp32 (-inf logits contribute 0).

    Runs on every step over the full vocabulary, so it avoids temporaries: clamping log p at the
    lowest finite float turns 0 * -inf into 0 without a mask (where p > 0 the clamp changes
    nothing, so the result is the same as masking)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    p = logp.exp()
    logp.clamp_(min=torch.finfo(logp.dtype).min)
    return -(p.mul_(logp)).sum(-1)


@dataclass
class StepView:
    """What a sampler sees for one row at one step (all tensors on the model's device).

    ``positions`` are canvas indices of the eligible masked positions, ascending; every other
    tensor is indexed the same way (``n`` = number of eligible positions).
    """

    logits: torch.Tensor  # [n, V] fp32, after penalties/filters; mask token at -inf
    probs: torch.Tensor  # [n, V] softmax(logits) (no temperature)
    positions: torch.Tensor  # [n] long, canvas indices
    tokens: torch.Tensor  # [n] proposed tokens (argmax, or a sample at the token temperature)
    confidence: torch.Tensor  # [n] probs at the proposed tokens
    entropy: torch.Tensor  # [n] nats
    k: int | None  # tokens to commit this step (None: the sampler decides, e.g. threshold)
    generator: torch.Generator
    step: int = 0  # step index within the row's generation
    block_start: int = 0  # canvas index where the active block starts
    temperature: float = 0.0
    resample: Callable[[], torch.Tensor] | None = None  # a fresh token proposal at the token temperature
    extra: dict[str, Any] = field(default_factory=dict)
    #: only for samplers with ``needs_previous_probs``: this row's probs at the same positions on
    #: its previous step in this block ([n, V], rows of zeros where a position had no prediction
    #: then), and the ``Action.state`` it returned for them ([n], zeros where none). None on a
    #: block's first step (no previous step exists).
    previous_probs: torch.Tensor | None = None
    previous_state: torch.Tensor | None = None

    @property
    def n(self) -> int:
        return int(self.positions.shape[0])


@dataclass
class BatchView:
    """Every row's view of one step at once, for samplers with a vectorised rule (``batched``).

    Tensors are ``[A, W]`` over the phase window of the A deciding rows (``eligible`` marks the
    masked positions a row may commit; values elsewhere are meaningless). Quantities that cost a
    pass over the vocabulary beyond the softmax are computed on first use only (:attr:`entropy`).
    ``tokens`` and ``confidence`` are computed at the eligible positions only (0 elsewhere).
    ``k`` is each row's scheduled count (already clamped to [1, eligible]), or None when the
    sampler chooses its own (threshold, factor). ``uniform()`` gives each eligible position a
    draw from its row's generator, in position order, exactly as the per-row path draws them.
    """

    logits: torch.Tensor  # [A, W, V] processed
    eligible: torch.Tensor  # [A, W] bool
    tokens: torch.Tensor  # [A, W] proposed tokens
    confidence: torch.Tensor  # [A, W] probability of the proposed token
    k: torch.Tensor | None  # [A] long
    counts: list[int]  # eligible positions per row (host ints)
    generators: list[torch.Generator]
    _entropy: torch.Tensor | None = None
    _probs: torch.Tensor | None = None

    @property
    def probs(self) -> torch.Tensor:
        """``[A, W, V]`` softmax(logits), computed on first use (only ``margin`` reads it; the
        step itself needs the probability of the proposed token only, at eligible positions)."""
        if self._probs is None:
            self._probs = torch.softmax(self.logits, dim=-1)
        return self._probs

    @property
    def entropy(self) -> torch.Tensor:
        if self._entropy is None:
            self._entropy = entropy_from_logits(self.logits)
        return self._entropy

    def uniform(self) -> torch.Tensor:
        """``[A, W]`` float32: row a's j-th eligible position gets the j-th of ``counts[a]``
        uniforms drawn from its generator on the CPU (the per-row path's ``torch.rand(n)``)."""
        a, w = self.eligible.shape
        table = torch.zeros((a, max(1, max(self.counts, default=0))), dtype=torch.float32)
        for i, (n, gen) in enumerate(zip(self.counts, self.generators)):
            if n:
                table[i, :n] = torch.rand(n, generator=gen, device="cpu")
        rank = (self.eligible.long().cumsum(1) - 1).clamp_(min=0)
        return table.to(self.eligible.device).gather(1, rank)


def masked_top_k(scores: torch.Tensor, eligible: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``[A, W]`` bool: per row the ``k[a]`` eligible positions with the largest scores, ties to
    the lower position: the batched form of :func:`top_k_stable` (same order, same choice)."""
    key = -(scores if scores.dtype == torch.float64 else scores.float())
    key = key.masked_fill(~eligible, float("inf"))
    order = torch.sort(key, dim=1, stable=True).indices
    return rank_below(order, k) & eligible


def rank_below(order: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``[A, W]`` bool: positions whose rank in ``order`` (a per-row permutation) is below ``k[a]``."""
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return rank < k[:, None]


@dataclass
class LookaheadResult:
    """What the engine measured on the states after each candidate action (one row).

    ``entropy[i, j]``: entropy (nats) of the prediction at window position j in candidate i's
    state; ``masked[i, j]``: whether that position is still masked there (entropies are only
    computed there; other entries are 0). The window is the active block (H_next scope ``block``
    or ``padded``) or everything from the block start to the end of the canvas (scope ``all``:
    every remaining mask). ``outside_masks[i]`` (scope ``padded`` only) counts candidate i's masks
    outside the block, each of which the seeds' dual cache scores as ``outside_entropy`` = ln V."""

    entropy: torch.Tensor  # [m, W]
    masked: torch.Tensor  # [m, W] bool
    raw_block_logits: torch.Tensor  # [m, block_len, V] raw model logits for the block
    outside_masks: torch.Tensor | None = None  # [m] long
    outside_entropy: float = 0.0
    def block_logits(self, i: int) -> torch.Tensor:
        """Candidate i's raw block logits ``[block_len, V]`` (the winner's are the next step's)."""
        return self.raw_block_logits[i]


@dataclass
class Action:
    """Indices into the view's eligible positions to commit, with their tokens (default: the
    view's proposed tokens) and a free-form record for the trace."""

    index: torch.Tensor  # [m] long, indices into view.positions
    tokens: torch.Tensor | None = None  # [m]
    info: dict[str, Any] = field(default_factory=dict)
    #: [n] float per *eligible* position (not only the committed ones), handed back as the next
    #: step's ``view.previous_state`` (samplers with ``needs_previous_probs`` only; e.g. KLASS's
    #: count of consecutive stable steps)
    state: torch.Tensor | None = None


def top_k_stable(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest scores; ties go to the lower index (deterministic everywhere)."""
    k = max(0, min(k, scores.shape[0]))
    # float64 scores (compat float64_confidence) keep their precision: casting could tie them
    order = torch.sort(-(scores if scores.dtype == torch.float64 else scores.float()), stable=True).indices
    return order[:k]


class Sampler:
    """Base policy. Subclasses implement :meth:`select`."""

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    #: False for samplers that choose how many tokens to commit themselves (threshold, factor, eb)
    uses_schedule: ClassVar[bool] = True
    #: True when the sampler's choice depends on the rng even at temperature 0
    stochastic: ClassVar[bool] = False
    #: lookahead samplers implement propose()/choose() instead of select(); the engine scores all
    #: rows' candidates in one batched forward between the two calls
    needs_lookahead: ClassVar[bool] = False
    #: True when :meth:`select_batch` implements the rule for every row at once (the engine's
    #: vectorised step; others get the per-row path)
    batched: ClassVar[bool] = False
    hnext_scope: str = "auto"
    #: the engine keeps each row's previous-step probabilities (and the sampler's per-position
    #: ``Action.state``) on the device and passes them as ``view.previous_probs``/``previous_state``
    needs_previous_probs: ClassVar[bool] = False

    def select_batch(self, view: BatchView) -> torch.Tensor:  # pragma: no cover - interface
        """``[A, W]`` bool: the positions every row commits (a subset of ``view.eligible``, at
        least one per row); must equal what :meth:`select` picks row by row."""
        raise NotImplementedError

    def select(self, view: StepView) -> Action:  # pragma: no cover - interface
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """The settings that change this sampler's output (used in result keys and the trace)."""
        return {"sampler": self.name}

    # lookahead samplers (``needs_lookahead``): phase 1 proposes candidates, the engine scores
    # them in one batched forward, phase 2 chooses. The ``_many`` forms take every row of a step
    # at once so that a sampler can read its per-row results from the device in one copy
    # (one host sync per phase, not one per row); by default they ask row by row.
    def propose_many(self, views: list[StepView]) -> list[Action | list[Action]]:
        return [self.propose(v) for v in views]

    def choose_many(self, views: list[StepView], cands: list[list[Action]],
                    results: list[LookaheadResult]) -> list[Action]:
        return [self.choose(v, c, r) for v, c, r in zip(views, cands, results)]


_REGISTRY: dict[str, type[Sampler]] = {}


def register(cls: type[Sampler]) -> type[Sampler]:
    for key in (cls.name, *cls.aliases):
        _REGISTRY[key] = cls
    return cls


def sampler_names() -> list[str]:
    return sorted({cls.name for cls in _REGISTRY.values()})


def all_sampler_options() -> set[str]:
    """Every option name some registered sampler takes."""
    from . import baselines, info_gain, klass  # noqa: F401 - registration side effects

    return {o for cls in _REGISTRY.values() for o in getattr(cls, "options", ())}


def check_sampler_options(options: dict[str, Any]) -> dict[str, Any]:
    """Refuse option names no sampler knows (a typo such as ``treshold`` must not be dropped
    silently) and validate every numeric value (see :mod:`unmask.validation`)."""
    from ..validation import check_options

    known = all_sampler_options()
    unknown = sorted(k for k in options if k not in known)
    if unknown:
        raise UnmaskError(f"unknown sampler option(s) {', '.join(unknown)}; "
                          f"known options: {', '.join(sorted(known))}")
    return check_options(options)


def make_sampler(name: str, **options: Any) -> Sampler:
    """Build a sampler by name or alias. Options of *other* samplers are ignored (the CLI passes
    every flag, a sweep may share options across samplers), but a name that no sampler takes is
    an error, and every value is validated."""
    from . import baselines, info_gain, klass  # noqa: F401 - registration side effects

    if not isinstance(name, str):
        raise UnmaskError(f"a sampler is named by a string, got {name!r}")
    key = name.strip().lower().replace("-", "_")
    if key not in _REGISTRY:
        raise UnmaskError(f"unknown sampler {name!r}; choose one of {', '.join(sampler_names())}")
    options = check_sampler_options(options)
    cls = _REGISTRY[key]
    accepted = getattr(cls, "options", ())
    kwargs = {k: v for k, v in options.items() if k in accepted and v is not None}
    return cls(**kwargs)
