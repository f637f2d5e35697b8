"""Logits processing and token proposal: what turns a forward's raw logits into the scores and
tokens a sampler sees.

* :class:`LogitsProcessor` objects are applied in order to fp32 logits ``[..., V]`` (in place is
  allowed). :func:`default_processors` builds the engine's list from a config (the mask token
  out of the softmax unless a compat mode keeps it, suppressed tokens, the EOS penalty); a model
  family that needs more (e.g. a vocabulary slice) appends its own processor instead of adding a
  branch to the loop.
* :func:`filter_logits` (top-k, then top-p) and :func:`propose_tokens` (argmax, or a draw at the
  token temperature) are shared by the engine's two step paths and by the compat module.

Randomness (since issue 26): a draw at temperature T > 0 is an inverse-CDF draw. Each position
takes **one** float64 uniform from its row's generator (in position order) and the token is where
that uniform falls in the cumulative distribution of ``softmax(filtered / T)``, accumulated in
float64. The Gumbel-max draw it replaces needed one uniform *per vocabulary entry* (126k per
position for LLaDA), generated on the CPU by the row's generator and copied to the device every
step; now only the ``n`` uniforms travel and the rest runs on the model's device. Per-row seeds
keep their promise (a row's uniforms come from its own generator, so its tokens do not depend
on the batch). ``benchmarks/sampling_bias.py`` shows the draw unbiased at V = 126k.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch


class LogitsProcessor(Protocol):
    """One transformation of processed logits ``[..., V]`` (fp32); may write in place."""

    def __call__(self, logits: torch.Tensor) -> torch.Tensor: ...


class BanTokens:
    """Set the given token ids to -inf (the mask token, ``suppress_token_ids``)."""

    def __init__(self, ids: list[int]) -> None:
        self.ids = list(ids)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        logits[..., self.ids] = float("-inf")
        return logits


class Penalty:
    """Subtract ``amount`` from the given tokens' logits (``eos_penalty`` on the stop tokens)."""

    def __init__(self, ids: list[int], amount: float) -> None:
        self.ids, self.amount = list(ids), float(amount)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        logits[..., self.ids] -= self.amount
        return logits


def default_processors(cfg: Any, mask_id: int, stop_ids: list[int], keep_mask: bool) -> list[LogitsProcessor]:
    """The engine's processing for ``cfg``: mask token out (unless ``keep_mask``, a compat mode
    that keeps it in the softmax), suppressed tokens out, stop tokens penalised."""
    out: list[LogitsProcessor] = []
    if not keep_mask:
        out.append(BanTokens([mask_id]))
    if cfg.suppress_token_ids:
        out.append(BanTokens(list(cfg.suppress_token_ids)))
    if cfg.eos_penalty:
        out.append(Penalty(stop_ids, cfg.eos_penalty))
    return out


def apply_processors(logits: torch.Tensor, processors: list[LogitsProcessor]) -> torch.Tensor:
    logits = logits.float()
    for p in processors:
        logits = p(logits)
    return logits


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Top-k then nucleus (top-p) filtering on fp32 logits ``[..., V]`` (removed entries = -inf).
    The most likely token always survives."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, idx = torch.sort(logits, dim=-1, descending=True, stable=True)
        cum = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
        remove = cum > top_p
        remove[..., 1:] = remove[..., :-1].clone()  # keep the first token that crosses top_p
        remove[..., 0] = False
        logits = logits.masked_fill(remove.scatter(-1, idx, remove), float("-inf"))
    return logits


def first_argmax(logits: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """``logits.argmax(-1)`` (the first maximal index), found in two vectorised passes: the maxima
    of ``chunk``-wide slices (a plain max reduction, which a CPU vectorises; ``argmax`` does not
    and costs about 10x more over a 126k vocabulary), then the argmax inside the first slice that
    holds the overall maximum. The same index as ``argmax`` for any finite or infinite values (a
    NaN row may give another index; the step's guard refuses NaN rows anyway)."""
    v = logits.shape[-1]
    k = v // chunk
    if k < 2:
        return logits.argmax(-1)
    maxima = logits.unfold(-1, chunk, chunk).amax(-1)  # [..., k], a view: no copy of the logits
    if k * chunk < v:
        maxima = torch.cat([maxima, logits[..., k * chunk :].amax(-1, keepdim=True)], -1)
    first = (maxima == maxima.amax(-1, keepdim=True)).to(torch.uint8).argmax(-1)  # its first slice
    start = first * chunk
    idx = (start[..., None] + torch.arange(chunk, device=logits.device)).clamp_(max=v - 1)
    return start + logits.gather(-1, idx).argmax(-1)


class Scratch:
    """Buffers a call reuses from step to step for its full-vocabulary temporaries.

    On a CPU, a fresh block of a few MB often comes from fresh pages (the allocator hands large
    freed blocks back to the system), so a step that allocates its ``[8, V]`` temporaries anew
    pays page faults for every one of them, more than the arithmetic. :meth:`get` returns the
    first ``rows`` rows of a buffer kept per name (grown when a call needs more)."""

    def __init__(self) -> None:
        self._bufs: dict[str, torch.Tensor] = {}

    def get(self, name: str, rows: int, cols: int, dtype: torch.dtype, device) -> torch.Tensor:
        buf = self._bufs.get(name)
        if (buf is None or buf.shape[0] < rows or buf.shape[1] != cols or buf.dtype != dtype
                or buf.device != torch.device(device)):
            buf = torch.empty((rows, cols), dtype=dtype, device=device)
            self._bufs[name] = buf
        return buf[:rows]


def entropy_rows(logits: torch.Tensor, scratch: Scratch, rows_per_pass: int = 8) -> torch.Tensor:
    """Entropies (nats) of the rows of ``logits`` ``[N, V]``: the operations of
    :func:`~unmask.samplers.base.entropy_from_logits` (the same values), ``rows_per_pass`` rows at
    a time into ``scratch``'s buffers instead of fresh ``[N, V]`` temporaries."""
    n, v = logits.shape
    out = []
    for lo in range(0, n, rows_per_pass):
        rows = logits[lo : lo + rows_per_pass].float()
        m = rows.shape[0]
        logp = torch.ops.aten._log_softmax.out(rows, -1, False, out=scratch.get("logp", m, v, torch.float32, logits.device))
        p = torch.exp(logp, out=scratch.get("ent_p", m, v, torch.float32, logits.device))
        logp.clamp_(min=torch.finfo(logp.dtype).min)
        out.append(-(p.mul_(logp)).sum(-1))
    if not out:
        return torch.zeros(0, dtype=torch.float32, device=logits.device)
    return out[0] if len(out) == 1 else torch.cat(out)


def softmax_into(logits: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``torch.softmax(logits, -1)`` written into ``out`` (the same kernel, the same values)."""
    return torch.ops.aten._softmax.out(logits, -1, False, out=out)


def inverse_cdf_draw(logits: torch.Tensor, temperature: float, u: torch.Tensor,
                     scratch: Scratch | None = None) -> torch.Tensor:
    """Tokens ``[...]`` drawn from ``softmax(logits / temperature)`` ``[..., V]`` with the uniforms
    ``u`` ``[...]`` in [0, 1): the first token whose cumulative probability (float64 sums)
    exceeds ``u`` times the total. A token of probability 0 (a -inf logit) is never drawn.
    ``scratch`` (2-D ``logits`` only): reuse its buffers for the temporaries (same values)."""
    if scratch is not None and logits.dim() == 2:
        n, v = logits.shape
        scaled = torch.div(logits, temperature, out=scratch.get("draw_scaled", n, v, logits.dtype, logits.device))
        p = softmax_into(scaled, scratch.get("draw_p", n, v, scaled.dtype, logits.device))
        cdf = scratch.get("draw_cdf", n, v, torch.float64, logits.device).copy_(p).cumsum_(-1)
    else:
        p = torch.softmax(logits / temperature, dim=-1)
        # float64 sums in order; the same values as ``cumsum(p, dtype=float64)``, which on a CPU
        # converts element by element and costs about 6x more than converting first
        cdf = torch.cumsum(p.double(), dim=-1)
    total = cdf[..., -1:]
    target = u.to(device=cdf.device, dtype=torch.float64).unsqueeze(-1) * total
    target = torch.minimum(target, torch.nextafter(total, torch.zeros_like(total)))  # stay below the top
    # (clamped: NaN logits give a NaN CDF and an index past the end; the step's guard reports them)
    return torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp_(max=logits.shape[-1] - 1)


def propose_tokens(
    logits: torch.Tensor,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    generator: torch.Generator,
) -> torch.Tensor:
    """The token the engine proposes at each of ``n`` positions (``logits`` ``[n, V]``): the argmax
    at temperature 0, else an inverse-CDF draw from softmax(filtered logits / temperature) with
    ``n`` float64 uniforms from the row's ``generator`` (see the module docstring)."""
    if temperature == 0:  # top-k/top-p always keep the first maximum: nothing to filter
        return first_argmax(logits)
    filtered = filter_logits(logits, top_k, top_p)
    u = torch.rand(filtered.shape[:-1], generator=generator, dtype=torch.float64)
    return inverse_cdf_draw(filtered, temperature, u)
