"""KLASS: KL-Adaptive Stability Sampling (Kim, Hong, Jung, Park, Yun; NeurIPS 2025, arXiv 2511.05664).

Why it exists: a confidence threshold alone commits tokens the model is sure of *now* but may
change its mind about on the next step. KLASS also asks that a position's predictive distribution
has stopped moving: the KL divergence between this step's and the previous step's distribution
must stay below ``kl_threshold`` for ``kl_history`` consecutive steps. Every eligible position that
is both stable and confident is committed at once (a speed method: fewer forwards); when none is,
the step falls back to the schedule's top-``k`` by confidence.

Definitions follow the authors' code (``shkim0116/KLASS``, ``src/model/llada_klass.py`` and
``dream_klass.py``); the choices, and where we differ, are listed in docs/samplers.md ("KLASS"):

* KL direction: ``KL(p_t || p_{t-1}) = sum_v p_t(v) (log(p_t(v) + 1e-12) - log(p_{t-1}(v) + 1e-12))``,
  the authors' formula and epsilon, on the processed probabilities without temperature.
* Stability: the last ``kl_history`` KL values are all ``< kl_threshold``. The engine hands only
  the previous step's probabilities, so the history is kept as a per-position count of consecutive
  steps below the threshold (``Action.state``), which is the same test. A position with no
  previous prediction (a block's first step) has no KL and counts 0, as the authors' zero
  ``p_prev`` gives a huge KL there.
* Confidence: the probability of the proposed token ``>= threshold`` (Dream's comparison).
* Defaults: ``threshold`` 0.9, ``kl_threshold`` 0.01, ``kl_history`` 2 (the defaults of both
  reference functions); the authors' scripts tune them per task (LLaDA GSM8K: 0.6 / 0.015 / 2,
  Dream GSM8K: 0.9 / 0.001 / 2).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..validation import check_option
from .base import Action, Sampler, StepView, register, top_k_stable

#: the authors' epsilon inside both logarithms of the KL
KL_EPS = 1e-12


def kl_to_previous(probs: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """Per-row ``KL(probs || previous)`` in nats ([n, V] -> [n]), with the authors' epsilon; a row
    of zeros in ``previous`` (no previous prediction) gives ``ln(1e12) - H(probs)``, at least
    27.6 - ln V nats (16 for a 126k vocabulary): never below any sensible threshold."""
    p = probs.float()
    return (p * (torch.log(p + KL_EPS) - torch.log(previous.float() + KL_EPS))).sum(-1)


@register
class KlassSampler(Sampler):
    """Commit every eligible position whose distribution has been stable (KL to the previous step
    below ``kl_threshold`` for ``kl_history`` consecutive steps) and whose confidence is at least
    ``threshold``; if none is, the schedule's top-``k`` by confidence."""

    name = "klass"
    aliases = ("kl_adaptive", "kl_stability")
    needs_previous_probs = True
    options: ClassVar[tuple[str, ...]] = ("threshold", "kl_threshold", "kl_history")

    def __init__(self, threshold: float = 0.9, kl_threshold: float = 0.01, kl_history: int = 2) -> None:
        self.threshold = float(check_option("threshold", threshold))
        self.kl_threshold = float(check_option("kl_threshold", kl_threshold))
        self.kl_history = int(check_option("kl_history", kl_history))

    def streak(self, view: StepView) -> torch.Tensor:
        """Consecutive steps (this one included) each position's KL stayed below the threshold."""
        if view.previous_probs is None:
            return torch.zeros(view.n, dtype=torch.float32, device=view.positions.device)
        below = kl_to_previous(view.probs, view.previous_probs) < self.kl_threshold
        before = view.previous_state
        if before is None:
            before = torch.zeros(view.n, dtype=torch.float32, device=below.device)
        return torch.where(below, before.float() + 1, torch.zeros_like(before, dtype=torch.float32))

    def select(self, view: StepView) -> Action:
        streak = self.streak(view)
        ready = (streak >= self.kl_history) & (view.confidence >= self.threshold)
        index = ready.nonzero().squeeze(-1)  # the step's one host sync, as every sampler's count
        if index.numel():
            return Action(index, info={"kind": "klass"}, state=streak)
        k = view.n if view.k is None else max(1, min(view.k, view.n))
        return Action(top_k_stable(view.confidence, k), info={"kind": "klass_fallback"}, state=streak)

    def config(self) -> dict[str, Any]:
        return {"sampler": self.name, "threshold": self.threshold, "kl_threshold": self.kl_threshold,
                "kl_history": self.kl_history}
