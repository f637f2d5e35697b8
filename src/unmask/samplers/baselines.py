"""The baseline policies users compare against.

Each ``select`` returns indices into the view's eligible positions; ties always go to the lower
position, so results do not depend on the batch a row sits in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..errors import UnmaskError
from ..validation import check_option
from .base import Action, BatchView, Sampler, StepView, masked_top_k, rank_below, register, top_k_stable


def _k(view: StepView) -> int:
    return view.n if view.k is None else max(1, min(view.k, view.n))


@register
class RandomSampler(Sampler):
    """Uniformly random positions: ``k`` of the eligible positions drawn without replacement
    from the row's generator (the "vanilla" MDM order of Kim et al.)."""

    name = "random"
    aliases = ("uniform", "vanilla")
    stochastic = True
    options: ClassVar[tuple[str, ...]] = ()

    batched = True

    def select(self, view: StepView) -> Action:
        u = torch.rand(view.n, generator=view.generator, device="cpu").to(view.positions.device)
        return Action(top_k_stable(u, _k(view)))

    def select_batch(self, view: BatchView) -> torch.Tensor:
        return masked_top_k(view.uniform(), view.eligible, view.k)


@register
class OriginSampler(Sampler):
    """Dream's ``alg="origin"``: the reverse process of the masked diffusion itself. At step i of
    a block's T steps (timesteps ``t = linspace(1, eps, T + 1)``) every eligible mask is committed
    independently with probability ``1 - t[i+1] / t[i]`` (1 on the last step), so the number
    committed per step varies. The coin flips are one float32 uniform per eligible position from
    the row's generator, in position order, exactly as Dream draws them for a one-prompt batch.
    With no step budget a block gets one step per mask."""

    name = "origin"
    aliases = ("dream_origin",)
    uses_schedule = False
    stochastic = True
    options: ClassVar[tuple[str, ...]] = ("eps",)

    def __init__(self, eps: float = 1e-3) -> None:
        if not (0.0 < float(eps) < 1.0):
            raise UnmaskError(f"eps must be in (0, 1), got {eps}")
        self.eps = float(eps)

    def select(self, view: StepView) -> Action:
        i = int(view.extra.get("block_step", view.step))
        steps = int(view.extra.get("block_steps") or view.n)
        u = torch.rand(view.n, generator=view.generator, device="cpu")
        if i >= steps - 1:
            take = torch.ones(view.n, dtype=torch.bool)
        else:
            t = torch.linspace(1, self.eps, steps + 1)  # float32, as Dream
            take = u < (1 - t[i + 1] / t[i])
        return Action(take.nonzero().squeeze(-1).to(view.positions.device), info={"kind": "origin"})

    def config(self) -> dict[str, Any]:
        return {"sampler": self.name, "eps": self.eps}


@register
class LeftRightSampler(Sampler):
    """The ``k`` leftmost eligible positions (autoregressive order inside the block)."""

    name = "leftright"
    aliases = ("left_to_right", "ar", "l2r", "sequential")  # SDAR's ``sequential`` remasking
    options: ClassVar[tuple[str, ...]] = ()

    batched = True

    def select(self, view: StepView) -> Action:
        return Action(torch.arange(_k(view), device=view.positions.device))

    def select_batch(self, view: BatchView) -> torch.Tensor:
        rank = view.eligible.long().cumsum(1) - 1
        return view.eligible & (rank < view.k[:, None])


@register
class ConfidenceSampler(Sampler):
    """Top-``k`` positions by the probability of their proposed token (LLaDA ``low_confidence``
    remasking, Dream ``maskgit_plus``, Kim et al. "top probability")."""

    name = "confidence"
    aliases = ("low_confidence", "maskgit_plus", "top_prob", "low_confidence_static")
    options: ClassVar[tuple[str, ...]] = ()

    batched = True

    def select(self, view: StepView) -> Action:
        return Action(top_k_stable(view.confidence, _k(view)))

    def select_batch(self, view: BatchView) -> torch.Tensor:
        return masked_top_k(view.confidence, view.eligible, view.k)


@register
class MarginSampler(Sampler):
    """Top-``k`` positions by top-1 minus top-2 probability (Dream ``topk_margin``, Kim et al.
    "top probability margin")."""

    name = "margin"
    aliases = ("topk_margin", "top_prob_margin")
    options: ClassVar[tuple[str, ...]] = ()

    batched = True

    def select(self, view: StepView) -> Action:
        top2 = view.probs.topk(2, dim=-1).values
        return Action(top_k_stable(top2[:, 0] - top2[:, 1], _k(view)))

    def select_batch(self, view: BatchView) -> torch.Tensor:
        top2 = view.probs.topk(2, dim=-1).values
        return masked_top_k(top2[..., 0] - top2[..., 1], view.eligible, view.k)


@register
class EntropySampler(Sampler):
    """Top-``k`` positions by negative entropy of their predictive distribution (Dream
    ``entropy``): the most certain distributions first."""

    name = "entropy"
    aliases = ("neg_entropy",)
    options: ClassVar[tuple[str, ...]] = ()

    batched = True

    def select(self, view: StepView) -> Action:
        return Action(top_k_stable(-view.entropy, _k(view)))

    def select_batch(self, view: BatchView) -> torch.Tensor:
        return masked_top_k(-view.entropy, view.eligible, view.k)


def _check_unit(name: str, value: float) -> float:
    return float(check_option(name, value))


@register
class ThresholdSampler(Sampler):
    """Fast-dLLM parallel decoding, threshold rule: commit every eligible position whose
    confidence is >= ``threshold``, and always the most confident one (so a step is never
    empty). The schedule is ignored: the number of steps adapts to the model's certainty."""

    name = "threshold"
    aliases = ("fast_dllm", "confidence_threshold", "parallel")
    uses_schedule = False
    options: ClassVar[tuple[str, ...]] = ("threshold",)

    def __init__(self, threshold: float = 0.9) -> None:
        self.threshold = _check_unit("threshold", threshold)

    #: Dream's no-cache ``confidence_threshold`` (compat ``capped_threshold``): only the top-k of
    #: the schedule (plus carry-over) are candidates; set together with ``uses_schedule``
    capped = False

    @property
    def batched(self) -> bool:  # type: ignore[override]
        return not self.capped

    def select(self, view: StepView) -> Action:
        order = top_k_stable(view.confidence, _k(view) if self.capped else view.n)
        keep = view.confidence[order] >= self.threshold
        keep[0] = True
        return Action(order[keep])

    def select_batch(self, view: BatchView) -> torch.Tensor:
        best = masked_top_k(view.confidence, view.eligible, torch.ones_like(view.eligible[:, 0], dtype=torch.long))
        return view.eligible & ((view.confidence >= self.threshold) | best)

    def config(self) -> dict[str, Any]:
        return {"sampler": self.name, "threshold": self.threshold}


@register
class FactorSampler(Sampler):
    """Fast-dLLM parallel decoding, factor rule: sort confidences c1 >= c2 >= ...; the n-th
    (1-based) passes when ``(n + 1) * (1 - c_n) <= factor``; commit the longest leading run of
    passes, and at least the first. (The reference also commits everything when its scan reaches
    the last candidate; we do not copy that quirk.)"""

    name = "factor"
    aliases = ("fast_dllm_factor", "dynamic")
    uses_schedule = False
    options: ClassVar[tuple[str, ...]] = ("factor",)

    def __init__(self, factor: float = 1.0) -> None:
        self.factor = float(check_option("factor", factor))

    def select(self, view: StepView) -> Action:
        order = top_k_stable(view.confidence, view.n)
        c = view.confidence[order]
        n = torch.arange(1, c.shape[0] + 1, device=c.device, dtype=torch.float32)
        passes = (n + 1) * (1 - c) <= self.factor
        passes[0] = True
        run = int(torch.cumprod(passes.int(), 0).sum())
        return Action(order[:run])

    batched = True

    def select_batch(self, view: BatchView) -> torch.Tensor:
        key = (-view.confidence.float()).masked_fill(~view.eligible, float("inf"))
        order = torch.sort(key, dim=1, stable=True).indices
        c = view.confidence.gather(1, order)
        n = torch.arange(1, c.shape[1] + 1, device=c.device, dtype=torch.float32)
        passes = ((n + 1) * (1 - c) <= self.factor) & view.eligible.gather(1, order)
        passes[:, 0] = True
        run = torch.cumprod(passes.int(), 1).sum(1)
        return rank_below(order, run) & view.eligible

    def config(self) -> dict[str, Any]:
        return {"sampler": self.name, "factor": self.factor}


@register
class EBSampler(Sampler):
    """EB-sampler (entropy-bounded): sort eligible positions by entropy, ascending, and commit the
    longest prefix whose entropy sum minus its largest entropy is <= ``gamma`` (at least one).
    Restricted to the active block like every sampler here."""

    name = "eb"
    aliases = ("eb_sampler",)
    uses_schedule = False
    options: ClassVar[tuple[str, ...]] = ("gamma",)

    def __init__(self, gamma: float = 0.01) -> None:
        self.gamma = float(check_option("gamma", gamma))

    def select(self, view: StepView) -> Action:
        order = top_k_stable(-view.entropy, view.n)
        h = view.entropy[order]
        csum = torch.cumsum(h, 0)
        cmax = torch.cummax(h, 0).values
        ok = (csum - cmax) <= self.gamma
        ok[0] = True
        run = int(torch.cumprod(ok.int(), 0).sum())
        return Action(order[:run])

    def config(self) -> dict[str, Any]:
        return {"sampler": self.name, "gamma": self.gamma}


@register
class LowConfidenceDynamicSampler(Sampler):
    """SDAR/TraDo ``low_confidence_dynamic`` remasking: if at least ``k`` (the step's quota)
    eligible positions have confidence strictly above ``threshold``, commit all of them; otherwise
    commit the top-``k`` by confidence. Unlike ``threshold`` the schedule's quota is a floor, so a
    block never takes more steps than ``--steps``. The reference uses 0.85 (SDAR) / 0.9 (TraDo)."""

    name = "low_confidence_dynamic"
    aliases = ("sdar_dynamic",)
    options: ClassVar[tuple[str, ...]] = ("threshold",)

    def __init__(self, threshold: float = 0.85) -> None:
        self.threshold = _check_unit("threshold", threshold)

    def select(self, view: StepView) -> Action:
        k = _k(view)
        high = (view.confidence > self.threshold).nonzero().squeeze(-1)
        if high.numel() >= k:
            return Action(high)
        return Action(top_k_stable(view.confidence, k))

    def config(self) -> dict[str, Any]:
        return {"sampler": self.name, "threshold": self.threshold}


@register
class EntropyBoundedSampler(Sampler):
    """SDAR's ``entropy_bounded`` remasking: sort eligible positions by the entropy of their
    predictive distribution, ascending, and commit the ``k`` lowest where ``k`` is the number of
    running entropy sums strictly below ``eb_threshold`` (at least one). This is the rule the
    reference intends; its code measures a per-row scalar instead (see docs/models.md).
    Differs from ``eb`` (which bounds the sum minus the largest entropy by ``gamma``)."""

    name = "entropy_bounded"
    aliases = ("sdar_entropy_bounded",)
    uses_schedule = False
    options: ClassVar[tuple[str, ...]] = ("eb_threshold",)

    def __init__(self, eb_threshold: float = 0.35) -> None:
        self.eb_threshold = float(check_option("eb_threshold", eb_threshold))

    def select(self, view: StepView) -> Action:
        order = top_k_stable(-view.entropy, view.n)
        below = torch.cumsum(view.entropy[order], 0) < self.eb_threshold
        k = max(1, min(int(below.sum()), view.n))
        return Action(order[:k])

    def config(self) -> dict[str, Any]:
        return {"sampler": self.name, "eb_threshold": self.eb_threshold}


def load_token_frequencies(path: str | Path) -> dict[int, float]:
    """Read the JSON written by :func:`write_token_frequencies`; anything else is refused with
    one line (a frequency table that is half garbage would silently skew every score)."""
    import math

    from ..userio import read_text

    path = Path(path)
    if not path.exists():
        raise UnmaskError(f"token frequency file {path} does not exist; write one with `unmask pc-freq`")
    text = read_text(path, "token frequency file")
    try:
        data = json.loads(text)
        freqs = data["token_frequency"]
        if not isinstance(freqs, dict):
            raise TypeError("'token_frequency' must map token ids to frequencies")
        table = {int(k): float(v) for k, v in freqs.items()}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise UnmaskError(f"{path} is not a token frequency file (need key 'token_frequency' mapping "
                          f"token id -> frequency): {e}") from None
    bad = [k for k, v in table.items() if k < 0 or not math.isfinite(v) or v < 0]
    if bad:
        raise UnmaskError(f"{path}: token ids must be >= 0 and frequencies finite and >= 0 (first bad id {bad[0]})")
    return table


def write_token_frequencies(texts: list[str], tokenizer: Any, path: str | Path) -> dict[str, Any]:
    """Count token frequencies of a reference corpus (PC-sampler's background distribution) and
    write ``{"num_tokens": N, "token_frequency": {id: count / N}}``. The reader uses the same key."""
    counts: dict[int, int] = {}
    total = 0
    for t in texts:
        for i in tokenizer(t, add_special_tokens=False)["input_ids"]:
            counts[i] = counts.get(i, 0) + 1
            total += 1
    if total == 0:
        raise UnmaskError("the reference corpus is empty: no tokens to count")
    data = {"num_tokens": total, "token_frequency": {str(k): v / total for k, v in sorted(counts.items())}}
    from ..userio import write_text

    write_text(path, json.dumps(data), "token frequency file")
    return data


@register
class PCSampler(Sampler):
    """PC-sampler: score = exp(-lambda * i) * min(-p * log(f_bg(token) + 1e-9), alpha), where i is
    the position's offset inside the active block, p the confidence of its proposed token and
    f_bg the token's frequency in a reference corpus (file from ``unmask pc-freq``; without a file
    every token counts as unseen, so the score reduces to a position-decayed confidence). Top-k."""

    name = "pc"
    aliases = ("pc_sampler",)
    options: ClassVar[tuple[str, ...]] = ("pc_lambda", "pc_alpha", "pc_freq_file")

    def __init__(self, pc_lambda: float = 0.25, pc_alpha: float = 10.0, pc_freq_file: str | None = None) -> None:
        self.lam = float(check_option("pc_lambda", pc_lambda))
        self.alpha = float(check_option("pc_alpha", pc_alpha))
        self.freq_file = pc_freq_file
        self._freqs = load_token_frequencies(pc_freq_file) if pc_freq_file else {}
        self._table: torch.Tensor | None = None

    def _freq(self, tokens: torch.Tensor) -> torch.Tensor:
        if not self._freqs:
            return torch.zeros(tokens.shape, dtype=torch.float32, device=tokens.device)
        need = int(tokens.max()) + 1
        if self._table is None or self._table.shape[0] < need or self._table.device != tokens.device:
            size = max(need, max(self._freqs) + 1)
            table = torch.zeros(size, dtype=torch.float32)
            for k, v in self._freqs.items():
                table[k] = v
            self._table = table.to(tokens.device)
        return self._table[tokens]

    def select(self, view: StepView) -> Action:
        offset = (view.positions - view.block_start).float()
        calib = (-view.confidence * torch.log(self._freq(view.tokens) + 1e-9)).clamp(max=self.alpha)
        score = torch.exp(-self.lam * offset) * calib
        return Action(top_k_stable(score, _k(view)))

    def config(self) -> dict[str, Any]:
        return {"sampler": self.name, "pc_lambda": self.lam, "pc_alpha": self.alpha, "pc_freq_file": self.freq_file}
