"""Info-Gain and LookUM: choose the action that leaves the least uncertainty behind.

For the active block, with ``k`` tokens to commit this step (from the schedule):

* Objective. ``info_gain`` (default): J(a) = -C(a) - H_next(a); ``lookum``: J(a) = -H_next(a).
  C(a) is the entropy (nats, full vocabulary, fp32) of the current predictions at the positions a
  decodes, summed (``cost_reduction="sum"``, default, as in the public code) or averaged
  (``"mean"``). H_next(a) is the mean entropy over the positions still masked after a, measured
  with one lookahead forward on the state after a. Its scope (``hnext_scope``) is ``"auto"``
  (default: ``"block"`` with the dual KV cache, ``"all"`` otherwise; see
  :func:`unmask.decoding.engine.resolve_hnext_scope`), ``"all"`` (as in the public code without
  a cache: every remaining mask of the canvas), ``"block"`` (the paper's wording: masks of the
  active block only) or ``"padded"`` (the seeds' dual-cache numbers: block masks measured, every
  other mask counted as a uniform prediction, ln V).
* Candidates (``candidate_number`` N, default 8). Candidate 0 is the greedy action: the top-k
  positions by confidence with the engine's proposed tokens. Candidates 1..N-1 draw fresh tokens
  at the token temperature (the same argmax tokens at temperature 0) and k positions by
  Gumbel-top-k over confidence / ``position_temperature`` (default 0.1), i.e. without replacement
  from softmax(confidence / tau). Candidates with the same position set as an earlier one are
  dropped, so candidate 0 wins both duplicates and ties of J. With one distinct action left, it is
  committed without a lookahead; N = 1 or tau = 0 is exactly the ``confidence`` sampler.
* All candidates of all rows are scored in one batched forward by the engine (read-only use of
  the KV cache). The winner's lookahead logits are the next step's logits, so a steady-state step
  costs one batched forward, not two.
* Fast path: when k covers every remaining mask of the block they are filled at once.
* High-confidence bypass (off unless ``threshold`` is given; the seeds' examples use 0.9):
  ``bypass="any"`` (default; the semantics of the paper-era and dllm code): when any eligible
  position has top-1 probability >= threshold, commit the most confident of them, at most k, with
  their argmax tokens and no lookahead. If that is fewer than k, the engine carries the shortfall
  to the next step, so unlike the reference no mask is ever left behind. ``bypass="all"`` (the
  standalone/PR semantics): only when *every* eligible position is >= threshold, fill the whole
  block at once.
* Margin skip (off unless ``lookahead_margin`` is given): when the greedy action's weakest
  confidence beats the best position it leaves out by at least the margin, commit the greedy
  action without a lookahead (kind ``margin``). A cheap relative form of the bypass: the lookahead
  rarely overturns a clear confidence gap, and every skipped lookahead saves N rows.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..errors import UnmaskError
from ..validation import check_option
from .base import Action, LookaheadResult, Sampler, StepView, register, top_k_stable

VARIANTS = ("info_gain", "lookum")
HNEXT_SCOPES = ("auto", "all", "block", "padded")


@register
class InfoGainSampler(Sampler):
    name = "info_gain"
    aliases = ("infogain", "info-gain", "ig")
    needs_lookahead = True
    options: ClassVar[tuple[str, ...]] = (
        "variant", "candidate_number", "position_temperature", "threshold", "bypass", "hnext_scope",
        "cost_reduction", "lookahead_margin",
    )
    default_variant = "info_gain"

    def __init__(
        self,
        variant: str | None = None,
        candidate_number: int = 8,
        position_temperature: float = 0.1,
        threshold: float | None = None,
        bypass: str = "any",
        hnext_scope: str = "auto",
        cost_reduction: str = "sum",
        lookahead_margin: float | None = None,
    ) -> None:
        variant = str(variant or self.default_variant).replace("-", "_").lower()
        if variant not in VARIANTS:
            raise UnmaskError(f"unknown variant {variant!r}; choose info_gain or lookum")
        candidate_number = check_option("candidate_number", candidate_number)
        position_temperature = check_option("position_temperature", position_temperature)
        threshold = check_option("threshold", threshold)
        lookahead_margin = check_option("lookahead_margin", lookahead_margin)
        if bypass not in ("any", "all"):
            raise UnmaskError(f"bypass must be 'any' or 'all', got {bypass!r}")
        if hnext_scope not in HNEXT_SCOPES:
            raise UnmaskError(f"hnext_scope must be one of {', '.join(HNEXT_SCOPES)}, got {hnext_scope!r}")
        if cost_reduction not in ("sum", "mean"):
            raise UnmaskError(f"cost_reduction must be 'sum' or 'mean', got {cost_reduction!r}")
        self.variant = variant
        self.candidate_number = int(candidate_number)
        self.position_temperature = float(position_temperature)
        self.threshold = None if threshold is None else float(threshold)
        self.bypass = bypass
        self.hnext_scope = hnext_scope
        self.cost_reduction = cost_reduction
        self.lookahead_margin = None if lookahead_margin is None else float(lookahead_margin)

    def config(self) -> dict[str, Any]:
        return {
            "sampler": self.name, "variant": self.variant, "candidate_number": self.candidate_number,
            "position_temperature": self.position_temperature, "threshold": self.threshold,
            "bypass": self.bypass, "hnext_scope": self.hnext_scope, "cost_reduction": self.cost_reduction,
            **({"lookahead_margin": self.lookahead_margin} if self.lookahead_margin is not None else {}),
        }

    # -- phase 1 ---------------------------------------------------------------------------
    def propose(self, view: StepView) -> Action | list[Action]:
        """A final action (fast path, bypass, single candidate) or the candidates to score."""
        return self.propose_many([view])[0]

    def propose_many(self, views: list[StepView]) -> list[Action | list[Action]]:
        """:meth:`propose` for every row of a step. Each row draws its candidates from its own
        generator, in the order one row alone would. The host needs the candidates' position sets
        (the duplicate check) and, for a row that ends without a lookahead, the objective it is
        credited with (:meth:`step_objective`); every row's come back in **one** copy (the
        objective of a row with candidates is its greedy action's, in case all candidates turn
        out to be duplicates of it)."""
        drafts = [self._draft(v) for v in views]
        costs = None
        if self.variant != "lookum":
            costs = [self._cost(v, d if isinstance(d, Action) else d[0]) for v, d in zip(views, drafts)]
        pending = [d for d in drafts if isinstance(d, list)]
        parts = []
        if costs:
            parts.append(torch.stack([c.to(costs[0].device) for c in costs]))
        if pending:
            flat = torch.cat([torch.stack([a.index for a in d]).sort(-1).values.reshape(-1) for d in pending])
            parts.append(flat.to(device=parts[0].device if parts else flat.device, dtype=torch.float64))
        host = torch.cat(parts).tolist() if parts else []  # the one copy (float64 holds the indices exactly)
        at = len(views) if costs else 0
        out: list[Action | list[Action]] = []
        for r, d in enumerate(drafts):
            if isinstance(d, list):
                k = int(d[0].index.shape[0])
                cands, seen = [], set()
                for a in d:
                    key = tuple(int(i) for i in host[at : at + k])
                    at += k
                    if key not in seen:  # the greedy action comes first, so it wins duplicates
                        seen.add(key)
                        cands.append(a)
                if len(cands) == 1:
                    cands[0].info["kind"] = "single"
                    d = cands[0]
                else:
                    d = cands
            if isinstance(d, Action):
                d.info["objective"] = -host[r] if costs else 0.0
            out.append(d)
        return out

    def _draft(self, view: StepView) -> Action | list[Action]:
        """A final action, or the greedy action and every drawn candidate (duplicates included)."""
        n = view.n
        k = n if view.k is None else min(view.k, n)
        if k >= n:
            return Action(torch.arange(n, device=view.positions.device), info={"kind": "fast_path"})
        if self.threshold is not None:
            top1, argmax_tok = view.probs.max(-1)
            sure = top1 >= self.threshold
            if self.bypass == "all" and bool(sure.all()):
                return Action(torch.arange(n, device=view.positions.device), argmax_tok, info={"kind": "bypass"})
            if self.bypass == "any" and bool(sure.any()):
                cand = sure.nonzero().squeeze(-1)
                pick = cand[top_k_stable(top1[cand], k)]
                return Action(pick, argmax_tok[pick], info={"kind": "bypass"})
        order = top_k_stable(view.confidence, k + 1)
        greedy = Action(order[:k], view.tokens[order[:k]])
        if self.candidate_number <= 1 or self.position_temperature <= 0:
            greedy.info["kind"] = "greedy"
            return greedy
        if self.lookahead_margin is not None:
            gap = float(view.confidence[order[k - 1]] - view.confidence[order[k]])
            if gap >= self.lookahead_margin:
                greedy.info["kind"] = "margin"
                return greedy
        cands = [greedy]
        for _ in range(1, self.candidate_number):
            tokens = view.resample() if (view.temperature > 0 and view.resample is not None) else view.tokens
            conf = view.probs.gather(-1, tokens[:, None]).squeeze(-1)
            u = torch.rand(n, generator=view.generator, dtype=torch.float64).to(conf.device)
            gumbel = -torch.log(-torch.log(u.clamp_min(1e-300)))
            idx = top_k_stable(conf.double() / self.position_temperature + gumbel, k)
            cands.append(Action(idx, tokens[idx]))
        return cands

    def step_objective(self, view: StepView, action: Action) -> float:
        """Objective credited to a step without a lookahead (fast path, bypass, single): only
        the immediate cost is known, -C(a) for Info-Gain and 0 for LookUM."""
        if self.variant == "lookum":
            return 0.0
        return -float(self._cost(view, action))

    def _cost(self, view: StepView, action: Action) -> torch.Tensor:
        """C(a), the entropy the action commits (sum or mean), float64 on the device."""
        e = view.entropy[action.index].double()
        return e.sum() if self.cost_reduction == "sum" else e.mean()

    # -- phase 2 ---------------------------------------------------------------------------
    def objective(self, view: StepView, cands: list[Action], result: LookaheadResult) -> torch.Tensor:
        """J for every candidate (higher is better), float64 on the logits' device (no host sync)."""
        ent = result.entropy.double()
        sums = torch.where(result.masked, ent, torch.zeros_like(ent)).sum(-1)
        cnts = result.masked.sum(-1).double()
        if result.outside_masks is not None:  # scope "padded": ln V per mask outside the block
            out = result.outside_masks.double().to(sums.device)
            sums, cnts = sums + out * result.outside_entropy, cnts + out
        h = torch.where(cnts > 0, sums / cnts.clamp_min(1), torch.zeros_like(sums))
        if self.variant == "lookum":
            return -h
        # every candidate commits the same number of positions: C(a) for all at once
        e = view.entropy[torch.stack([c.index for c in cands]).to(view.entropy.device)].double()
        costs = e.sum(-1) if self.cost_reduction == "sum" else e.mean(-1)
        return -costs.to(h.device) - h

    def choose(self, view: StepView, cands: list[Action], result: LookaheadResult) -> Action:
        return self.choose_many([view], [cands], [result])[0]

    def choose_many(self, views: list[StepView], cands: list[list[Action]],
                    results: list[LookaheadResult]) -> list[Action]:
        """The best candidate of every row; all rows' objectives come to the host in one copy."""
        js = [self.objective(v, c, r) for v, c, r in zip(views, cands, results)]
        flat = torch.cat([j.to(js[0].device) for j in js]).tolist()
        out, at = [], 0
        for c, j in zip(cands, js):
            vals = flat[at : at + j.shape[0]]
            at += j.shape[0]
            best = max(range(len(vals)), key=vals.__getitem__)  # first maximum: candidate 0 wins ties
            win = c[best]
            out.append(Action(win.index, win.tokens, info={"kind": "lookahead", "winner": best,
                                                           "objective": vals[best],
                                                           "J": [round(v, 6) for v in vals]}))
        return out


@register
class LookUMSampler(InfoGainSampler):
    """LookUM: Info-Gain without the immediate cost, J(a) = -H_next(a)."""

    name = "lookum"
    aliases = ("look_um",)
    default_variant = "lookum"
