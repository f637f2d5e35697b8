"""Pieces shared by the native LLaDA and Dream modules.

The engine talks to every architecture through :meth:`DiffusionLM.predict`, which returns logits
*aligned* so that row i predicts token i. Dream's one-position shift is undone in exactly one place,
:meth:`DiffusionLM.predict` (driven by the class attribute ``shift_logits``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .cache import KVCache


class RMSNorm(nn.Module):
    """RMSNorm computed in fp32 and cast back before the weight (the HF Llama recipe)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin ``[B, 1, Q, D]`` in fp32 for integer positions ``[B, Q]`` (NeoX/HF half layout)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim))
    freqs = positions.float()[..., None] * inv_freq  # [B, Q, D/2]
    emb = torch.cat((freqs, freqs), dim=-1)[:, None]  # [B, 1, Q, D]
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, full_precision: bool) -> torch.Tensor:
    """Rotate ``x`` ``[B, H, Q, D]``. LLaDA rotates in fp32 (``full_precision``); Dream in the model
    dtype with cos/sin cast down, as the respective reference implementations do."""
    if full_precision:
        x32 = x.float()
        return (x32 * cos + rotate_half(x32) * sin).to(x.dtype)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return x * cos + rotate_half(x) * sin


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """RoPE positions that ignore left padding: the first real token gets position 0.

    With these positions a left-padded row sees exactly the rotations it would see alone, which is
    what makes batched and one-by-one decoding agree (LLaDA's reference uses absolute indices; that
    is only equal up to float rounding)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_mask: torch.Tensor | None,
) -> torch.Tensor:
    """Bidirectional attention. q ``[B, H, Q, D]``, k/v ``[B, Hkv, K, D]``, key_mask ``[B, K]`` bool
    (True = real token) or None (no padding). Only keys are masked, so padded query rows still
    attend to real keys and never produce NaN. The mask is applied as given, never inspected: asking
    whether it is all True would block on the device once per layer and forward; the caller
    passes None when it knows there is no padding (see :meth:`DiffusionLM.forward`)."""
    n_rep = q.shape[1] // k.shape[1]
    if n_rep > 1:
        b, h, t, d = k.shape
        k = k[:, :, None].expand(b, h, n_rep, t, d).reshape(b, h * n_rep, t, d)
        v = v[:, :, None].expand(b, h, n_rep, t, d).reshape(b, h * n_rep, t, d)
    mask = None
    if key_mask is not None:
        mask = key_mask[:, None, None, :].to(torch.bool)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=False)


@dataclass
class ModelOutput:
    logits: torch.Tensor  # [B, Q, V]
    cache: KVCache | None = None


class DiffusionLM(nn.Module):
    """Base class: one call signature for every architecture.

    ``forward(input_ids, attention_mask, cache, start, return_cache)`` returns the *raw* logits of
    the architecture (Dream's are shifted). ``predict`` returns aligned logits for a window of the
    canvas and is what the decoding engine calls.
    """

    shift_logits: bool = False
    config: object

    # Subclasses implement: embed(ids, positions), layers (iterable of blocks with attn(x, ...)), final(h)
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        start: int = 0,
        return_cache: bool = False,
        head_range: tuple[int, int] | None = None,
        positions: torch.Tensor | None = None,
        vocab_range: tuple[int, int] | None = None,
    ) -> ModelOutput:
        """Run the transformer on ``input_ids`` ``[B, Q]`` that sit at canvas positions
        ``[start, start + Q)``.

        ``head_range`` = ``(lo, hi)`` (indices into the Q query rows) applies the LM head to those
        rows only: the head is a large GEMM (vocabulary x d_model per position) and its fp32
        logits dominate memory for long canvases, so the engine asks only for what it reads.

        * ``cache is None``: ``start`` must be 0 and ``input_ids`` is the whole canvas.
          ``return_cache=True`` returns K/V for every position (the refresh forward).
        * ``cache`` given: keys are the cached ones with the window replaced by fresh K/V
          (see :mod:`unmask.models.cache`). The cache is never modified.

        ``attention_mask`` ``[B, T_keys]`` (1 = real token, 0 = left padding) covers all key
        positions, i.e. the whole canvas. None means no padding: attention is unmasked (the engine
        passes None for batches without padding, so the forward never has to ask the device
        whether a mask is all ones).

        ``positions`` ``[B, T]`` overrides the rotary positions (default: counted from the first
        real token). MMaDA's text-to-image reference rotates by the absolute index, pads
        included; rotary attention is shift-invariant, so this only changes float rounding, but
        it makes the reference fixtures bit-exact.

        ``vocab_range`` = ``(lo, hi)`` returns logits for those vocabulary ids only (MMaDA's image
        decoding reads the 8,192 image codes of a 134,656-id vocabulary).
        """
        b, q_len = input_ids.shape
        if cache is None and start != 0:
            raise ValueError("a forward without a cache must start at position 0")
        if cache is not None and return_cache:
            raise ValueError("return_cache is only for the full refresh forward (cache=None)")
        total = q_len if cache is None else max(cache.length, start + q_len)
        if attention_mask is None:
            key_mask = None
            if positions is None:
                positions = torch.arange(total, device=input_ids.device).expand(b, total)
        else:
            if attention_mask.shape[-1] != total:
                raise ValueError(f"attention_mask covers {attention_mask.shape[-1]} positions, keys are {total}")
            key_mask = attention_mask.to(torch.bool)
            if positions is None:
                positions = positions_from_mask(attention_mask)
        positions = positions[:, start : start + q_len]
        if getattr(self, "uses_rope", True):
            cos, sin = rope_cos_sin(positions, self.head_dim, self.rope_theta)
        else:
            cos = sin = None
        h = self.embed(input_ids, positions)
        new_keys: list[torch.Tensor] = []
        new_values: list[torch.Tensor] = []
        for i, block in enumerate(self.blocks):
            h, k, v = block(h, cos, sin, key_mask, cache, i, start)
            if return_cache:
                new_keys.append(k)
                new_values.append(v)
        if head_range is not None:
            h = h[:, head_range[0] : head_range[1]]
        logits = self.head(h) if vocab_range is None else self.head_columns(h, *vocab_range)
        out_cache = KVCache(new_keys, new_values) if return_cache else None
        return ModelOutput(logits=logits, cache=out_cache)

    @torch.no_grad()
    def predict(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        start: int = 0,
        end: int | None = None,
        return_cache: bool = False,
        logits_end: int | None = None,
    ) -> ModelOutput:
        """Aligned logits ``[B, end - start, V]`` for canvas positions ``[start, end)``: row j
        predicts token ``start + j``. With a cache, ``logits_end`` < ``end`` computes the window
        ``[start, end)`` (e.g. block + suffix in prefix mode) but returns logits only for
        ``[start, logits_end)``.

        ``x`` is the whole canvas ``[B, T]``. Without a cache the whole canvas is run and the window
        is sliced out; with a cache only the window is run. For shifted models (Dream) the
        prediction for token i lives at raw position i - 1, so a windowed call runs one extra
        query position (start - 1) and drops it: the first position of a block is predicted
        correctly in every cache mode (no unconditional commit at refresh, unlike Fast-dLLM).
        """
        t = x.shape[1]
        end = t if end is None else end
        if cache is None:
            if not self.shift_logits:
                out = self(x, attention_mask, return_cache=return_cache, head_range=(start, end))
                return ModelOutput(out.logits, out.cache)
            if start > 0:  # raw rows start-1 .. end-2 predict tokens start .. end-1
                out = self(x, attention_mask, return_cache=return_cache, head_range=(start - 1, end - 1))
                return ModelOutput(out.logits, out.cache)
            out = self(x, attention_mask, return_cache=return_cache, head_range=(0, end))
            logits = torch.cat([out.logits[:, :1], out.logits[:, :-1]], dim=1)
            return ModelOutput(logits, out.cache)
        lo = start - 1 if (self.shift_logits and start > 0) else start
        want = end if logits_end is None else logits_end  # logits needed for [start, want)
        shift = 1 if (self.shift_logits and start > 0) else 0
        # Dream at start > 0: raw rows lo .. want-2 predict tokens start .. want-1
        n_rows = want - lo - shift
        out = self(x[:, lo:end], attention_mask, cache=cache, start=lo, head_range=(0, n_rows))
        logits = out.logits
        if self.shift_logits and start == 0:
            logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
        return ModelOutput(logits)

    def head_columns(self, h: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """Logits for vocabulary ids ``[lo, hi)`` (subclasses may avoid computing the rest)."""
        return self.head(h)[..., lo:hi]

    # ---- helpers every subclass provides through attributes ----
    head_dim: int
    rope_theta: float

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """Small-normal init for freshly built (random or to-be-trained) models."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=std)
    # scale residual projections a little, as GPT-2 does, so deep stacks start stable
    n_layers = max(1, len(getattr(module, "blocks", [])))
    for name, p in module.named_parameters():
        if name.endswith(("attn_out.weight", "o_proj.weight", "ff_out.weight", "down_proj.weight")) and p.dim() == 2:
            if "blocks" in name or "layers" in name:
                nn.init.normal_(p, mean=0.0, std=std / math.sqrt(2 * n_layers))
