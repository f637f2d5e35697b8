"""Reference-compatibility switches: reproduce the published loops token for token.

unmask's defaults differ from the reference code on purpose (docs/samplers.md, "Reproducing the
references", says why). A user who wants the published behaviour asks for it with
``GenerationConfig.compat`` (CLI ``--compat``): a comma-separated list of mode names and/or single
behaviours. The engine consults the resolved :class:`CompatOptions` at a few fixed points (logit
processing, the step view, the per-block schedule, the block refresh, windowed forwards); all the
reference-specific logic lives here so the engine stays the same for the default path.

Modes (what each expands to depends on the model family, because Fast-dLLM's LLaDA and Dream
loops differ):

* ``llada``: ``ML-GSAI/LLaDA`` ``generate()``: the mask token takes part in the softmax.
* ``fast_dllm``: ``NVlabs/Fast-dLLM``. LLaDA: mask token in a float64 softmax. Dream: its
  ``sample_tokens`` scores, the Dream timestep schedule in float32 and, with a KV cache, the block
  loop that commits each block's first token at the cache refresh and reads the query row before
  the window from the cache.
* ``dream``: Dream's ``diffusion_generate`` (as shipped in Fast-dLLM's ``dream/``): mask token in
  the softmax, scores from the top-k/top-p filtered distribution, the float32 timestep schedule,
  and ``confidence_threshold`` capped at the schedule plus carry-over.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import torch

from ..errors import UnmaskError

#: behaviour name -> one line for ``--help`` and the docs
BEHAVIOURS: dict[str, str] = {
    "mask_softmax": "the mask token stays in the softmax and may be proposed (LLaDA generate, Fast-dLLM, Dream)",
    "float64_confidence": "confidences from a float64 softmax (Fast-dLLM's LLaDA loops)",
    "dream_scores": "probabilities from the temperature/top-p/top-k filtered logits and entropy as "
                    "-sum p log(p + 1e-10) (Dream's sample_tokens)",
    "dream_schedule": "Dream's timestep schedule with its float32 arithmetic (every step's count from the "
                      "masks left)",
    "block_entry_commit": "with a KV cache on a shifted model: commit each block's first token at the cache "
                          "refresh and read the query row before the window from the cache (Fast-dLLM Dream)",
    "inherit_top_k": "top_k defaults to 50 when not given: Dream's diffusion_generate builds its config on "
                     "transformers' GenerationConfig, whose top_k default of 50 it inherits (transformers 4.49)",
    "capped_threshold": "threshold sampler commits at most the scheduled count plus carry-over "
                        "(Dream's confidence_threshold without cache)",
}

MODES = ("llada", "fast_dllm", "dream")


@dataclass(frozen=True)
class CompatOptions:
    """Resolved per-behaviour switches (all off = unmask's defaults)."""

    mask_softmax: bool = False
    float64_confidence: bool = False
    dream_scores: bool = False
    dream_schedule: bool = False
    block_entry_commit: bool = False
    capped_threshold: bool = False
    inherit_top_k: bool = False

    @property
    def active(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def names(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name)]


OFF = CompatOptions()


def _mode(name: str, shifted: bool) -> set[str]:
    if name == "llada":
        return {"mask_softmax"}
    if name == "fast_dllm":
        if shifted:
            return {"mask_softmax", "dream_scores", "dream_schedule", "block_entry_commit", "inherit_top_k"}
        return {"mask_softmax", "float64_confidence"}
    if name == "dream":
        return {"mask_softmax", "dream_scores", "dream_schedule", "capped_threshold", "inherit_top_k"}
    raise AssertionError(name)


def parse_compat(spec: str | None) -> list[str]:
    """Validate a ``--compat`` value; returns the normalised item list. Bad item -> UnmaskError."""
    if spec is None:
        return []
    if not isinstance(spec, str):
        raise UnmaskError(f"compat must be a string such as 'fast_dllm' or 'mask_softmax,dream_schedule', got {spec!r}")
    items = [s.strip().lower().replace("-", "_") for s in spec.split(",") if s.strip()]
    for it in items:
        if it not in MODES and it not in BEHAVIOURS and it not in ("none", "off"):
            raise UnmaskError(
                f"unknown compat item {it!r}; choose modes {', '.join(MODES)} or behaviours {', '.join(BEHAVIOURS)}"
            )
    return [it for it in items if it not in ("none", "off")]


def resolve(spec: str | None, model: Any) -> CompatOptions:
    """The switches ``spec`` turns on for ``model`` (modes expand per model family)."""
    items = parse_compat(spec)
    if not items:
        return OFF
    shifted = bool(getattr(model, "shift_logits", False))
    on: set[str] = set()
    for it in items:
        on |= _mode(it, shifted) if it in MODES else {it}
    return replace(OFF, **{k: True for k in on})


INHERITED_TOP_K = 50


def effective_top_k(opts: CompatOptions, top_k: int | None) -> int | None:
    return INHERITED_TOP_K if (opts.inherit_top_k and top_k is None) else top_k


# ----------------------------------------------------------------------------- scoring


def view_scores(
    opts: CompatOptions,
    logits: torch.Tensor,
    tokens: torch.Tensor,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(probs, confidence, entropy or None) computed the way the reference scores positions.

    ``logits`` are the processed fp32 logits of the eligible positions ``[n, V]``. ``None`` for
    the entropy means: keep the engine's."""
    from .processors import filter_logits

    if opts.dream_scores:
        lg = logits / temperature if temperature > 0 else logits
        lg = filter_logits(filter_logits(lg, None, top_p), top_k, None)  # Dream's order: top-p, then top-k
        probs = torch.softmax(lg, dim=-1)
        conf = probs.gather(-1, tokens[:, None]).squeeze(-1)
        neg = (probs * torch.log(probs + 1e-10)).sum(-1)
        return probs, conf, -neg
    dtype = torch.float64 if opts.float64_confidence else torch.float32
    probs = torch.softmax(logits.to(dtype), dim=-1)
    conf = probs.gather(-1, tokens[:, None]).squeeze(-1)
    return probs, conf, None


# ----------------------------------------------------------------------------- schedules


def block_schedule(opts: CompatOptions, sampler: Any, n_masks: int, block_steps: int | None,
                   first_step: int) -> list[int] | None:
    """The compat schedule for one block, or None for the engine's own (Dream's capped threshold
    uses the engine's linear schedule: a constant ``masks // steps`` per step)."""
    if not uses_dream_steps(opts, sampler) or block_steps is None or n_masks == 0:
        return None
    from .schedule import dream_schedule

    # the plan for the block (its length bounds the steps); each step's actual count comes from
    # dream_step, which recomputes it from the masks really left, in float32 as the reference
    return dream_schedule(n_masks, block_steps, first_step=first_step) or [n_masks]


# ----------------------------------------------------------------------------- Fast-dLLM's Dream block loop


def uses_block_entry(opts: CompatOptions, model: Any, use_cache: str) -> bool:
    return opts.block_entry_commit and use_cache != "none" and bool(getattr(model, "shift_logits", False))


def window_logits(model: Any, x: torch.Tensor, am: torch.Tensor, cache: Any, start: int, end: int,
                  logits_end: int) -> torch.Tensor:
    """Fast-dLLM's Dream window: run only ``[start, end)`` against the cache (so the K/V of
    position start-1 come from the refresh, not a fresh query) and shift the raw logits inside the
    window. Row 0 (position ``start``) duplicates row 1's raw source and is meaningless; the block
    entry commit guarantees that position is never masked when this is used."""
    n_rows = max(1, logits_end - start)
    raw = model(x[:, start:end], am, cache=cache, start=start, head_range=(0, n_rows)).logits
    return torch.cat([raw[:, :1], raw[:, :-1]], dim=1)


def entry_tokens(logits: torch.Tensor, opts: CompatOptions, temperature: float, top_k: int | None,
                 top_p: float | None, generator: torch.Generator) -> torch.Tensor:
    """The token committed at a block's first position from the refresh forward's logits ``[V]``
    (Dream's ``sample_tokens`` over the full vocabulary, mask token included)."""
    from .processors import propose_tokens

    return propose_tokens(logits[None], temperature, top_k, top_p, generator)[0]


# ----------------------------------------------------------------------------- samplers


def adapt_sampler(sampler: Any, opts: CompatOptions) -> Any:
    """The sampler the reference would run: Dream's ``confidence_threshold`` without cache is the
    threshold rule capped at the scheduled count plus carry-over."""
    if opts.capped_threshold and getattr(sampler, "name", "") == "threshold" and not getattr(sampler, "capped", False):
        from ..samplers.baselines import ThresholdSampler

        capped = ThresholdSampler(threshold=sampler.threshold)
        capped.capped = True
        capped.uses_schedule = True
        return capped
    return sampler


def uses_dream_steps(opts: CompatOptions, sampler: Any) -> bool:
    """Dream's loops recompute every step's count from the masks actually left (a mask token
    "committed" under ``mask_softmax`` stays a mask and is counted again)."""
    return opts.dream_schedule and sampler.uses_schedule and not getattr(sampler, "capped", False)


def dream_step(n_masks: int, i: int, steps: int, eps: float = 1e-3) -> tuple[int, int]:
    """(step index, count) of the next Dream step that commits anything, from step ``i`` on with
    ``n_masks`` masks left: ``int(n * (1 - t[i+1] / t[i]))`` in float32, everything on the last
    step. Steps that would commit 0 are skipped (the reference spends a forward on them and
    changes no token at temperature 0)."""
    t = torch.linspace(1, eps, steps + 1)
    while i < steps - 1:
        c = int(torch.tensor(float(n_masks)) * (1 - t[i + 1] / t[i]))
        if c > 0:
            return i, c
        i += 1
    return i, n_masks


def row_stalled(opts: CompatOptions, sampler: Any, ptr: int, schedule_len: int, block_steps: int,
                picked: int, committed_real: int) -> bool:
    """Whether a row stops decoding its block, leaving masks as the reference would: with the mask
    token in the softmax a step may "commit" the mask token (a no-op). The reference then runs out
    of steps (LLaDA, Dream) or never makes progress (threshold loops); unmask stops the block
    instead of looping."""
    if not opts.mask_softmax:
        return False
    if sampler.name == "origin" or uses_dream_steps(opts, sampler):
        return ptr >= block_steps
    if sampler.uses_schedule and not getattr(sampler, "capped", False):
        return ptr >= schedule_len
    return picked > 0 and committed_real == 0
