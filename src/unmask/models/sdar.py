"""SDAR and TraDo (JetLM/SDAR-*-Chat, Gen-Verse/TraDo-*) in plain PyTorch.

Block diffusion: the Qwen3 layout (grouped-query attention without q/k/v bias, a per-head RMSNorm
on queries and keys before RoPE, SwiGLU MLP, RMSNorm) with **block-causal** attention. The sequence
is cut into blocks of ``block_length`` tokens counted from the first real token (absolute
positions 0, L, 2L, ...); a token attends to every token of its own block and of all earlier
blocks, never to a later block. Logits at position i predict token i (no shift), as in LLaDA.

Why block-causal matters for decoding: a finished block's keys and values never change again,
because nothing after it is visible to it. So the KV cache is *exact* (not an approximation as
the Fast-dLLM caches of LLaDA/Dream are): :meth:`SDAR.prefill` computes it for the complete
prompt blocks, :meth:`SDAR.predict` runs one block against it, and :meth:`SDAR.extend_cache`
appends a finished block. The engine drives these through the same ``predict`` interface as the
other models (see :mod:`unmask.decoding.block_causal`).

Numerics follow the reference modeling file (a Qwen3 derivative, transformers 4.52): RMSNorm in
fp32 with the weight applied in the model dtype, RoPE cos/sin computed in fp32 and cast to the
model dtype, attention scale ``head_dim ** -0.5``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UnmaskError
from .base import (
    DiffusionLM,
    ModelOutput,
    RMSNorm,
    apply_rope,
    init_weights,
    positions_from_mask,
    rope_cos_sin,
)
from .cache import KVCache


@dataclass
class SDARConfig:
    """Fields of SDAR's ``config.json`` that change the computation (others are kept in ``extra``).

    ``mask_token_id`` (``<|MASK|>``) and ``block_length`` are not in the official config; they
    default to the released models' values (151669 and 4) and may be written into config.json."""

    vocab_size: int = 151936
    hidden_size: int = 4096
    intermediate_size: int = 12288
    num_hidden_layers: int = 36
    num_attention_heads: int = 32
    num_key_value_heads: int = 8
    head_dim: int = 128
    hidden_act: str = "silu"
    max_position_embeddings: int = 32768
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1000000.0
    rope_scaling: dict[str, Any] | None = None
    attention_bias: bool = False
    tie_word_embeddings: bool = False
    use_sliding_window: bool = False
    sliding_window: int | None = None
    bos_token_id: int = 151643
    eos_token_id: int = 151643
    pad_token_id: int | None = None
    mask_token_id: int = 151669
    block_length: int = 4
    model_type: str = "sdar"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def max_sequence_length(self) -> int:
        return self.max_position_embeddings

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SDARConfig:
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        kwargs = {k: v for k, v in d.items() if k in known and v is not None}
        if isinstance(kwargs.get("eos_token_id"), list):  # some configs list several; the first is EOS
            kwargs["eos_token_id"] = kwargs["eos_token_id"][0]
        extra = {k: v for k, v in d.items() if k not in known}
        cfg = cls(**kwargs, extra=extra)
        cfg.check()
        return cfg

    def check(self) -> None:
        """Refuse settings the native model does not implement instead of computing wrong logits."""
        if self.hidden_act != "silu":
            raise UnmaskError(f"config.json hidden_act={self.hidden_act!r}: SDAR uses silu")
        rope_type = (self.rope_scaling or {}).get("rope_type", (self.rope_scaling or {}).get("type", "default"))
        if rope_type != "default":
            raise UnmaskError(f"config.json asks for rope_scaling type {rope_type!r}, which unmask does not implement")
        if self.use_sliding_window:
            raise UnmaskError("config.json enables sliding-window attention, which SDAR does not use and unmask does not implement")
        if self.block_length < 1:
            raise UnmaskError(f"block_length must be >= 1, got {self.block_length}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        d.update({"architectures": ["SDARForCausalLM"]})
        if d["rope_scaling"] is None:  # transformers warns about a null rope_scaling when reading it
            d.pop("rope_scaling")
        return {**extra, **d}


class SDARAttention(nn.Module):
    """Projections and the per-head q/k RMSNorm (official names ``self_attn.{q,k,v,o}_proj``,
    ``self_attn.{q,k}_norm``)."""

    def __init__(self, cfg: SDARConfig) -> None:
        super().__init__()
        d, hd = cfg.hidden_size, cfg.head_dim
        self.n_heads, self.kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, hd
        self.q_proj = nn.Linear(d, self.n_heads * hd, bias=cfg.attention_bias)
        self.k_proj = nn.Linear(d, self.kv_heads * hd, bias=cfg.attention_bias)
        self.v_proj = nn.Linear(d, self.kv_heads * hd, bias=cfg.attention_bias)
        self.o_proj = nn.Linear(self.n_heads * hd, d, bias=cfg.attention_bias)
        self.q_norm = RMSNorm(hd, cfg.rms_norm_eps)
        self.k_norm = RMSNorm(hd, cfg.rms_norm_eps)


class SDARMLP(nn.Module):
    def __init__(self, cfg: SDARConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class SDARLayer(nn.Module):
    def __init__(self, cfg: SDARConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = SDARAttention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = SDARMLP(cfg)

    def forward(self, x, cos, sin, mask: torch.Tensor, cache: KVCache | None, layer: int, start: int):
        """``mask`` ``[B, 1, Q, K]`` bool (True = may attend). Returns the new hidden states and the
        post-RoPE keys/values of positions ``[0, start + Q)`` (the cache's, then this window's)."""
        b, q_len, _ = x.shape
        at = self.self_attn
        a = self.input_layernorm(x)
        q = at.q_norm(at.q_proj(a).view(b, q_len, at.n_heads, at.head_dim)).transpose(1, 2)
        k = at.k_norm(at.k_proj(a).view(b, q_len, at.kv_heads, at.head_dim)).transpose(1, 2)
        v = at.v_proj(a).view(b, q_len, at.kv_heads, at.head_dim).transpose(1, 2)
        q = apply_rope(q, cos, sin, full_precision=False)
        k = apply_rope(k, cos, sin, full_precision=False)
        # keys of the blocks before the window come from the cache (which holds exactly
        # [0, start)), the window is fresh
        k_all, v_all = (k, v) if cache is None else cache.layer_window(layer, start, k, v)
        n_rep = at.n_heads // at.kv_heads
        k_att, v_att = k_all, v_all
        if n_rep > 1:
            k_att = k_all.repeat_interleave(n_rep, dim=1)
            v_att = v_all.repeat_interleave(n_rep, dim=1)
        o = F.scaled_dot_product_attention(q, k_att, v_att, attn_mask=mask, is_causal=False)
        x = x + at.o_proj(o.transpose(1, 2).reshape(b, q_len, -1))
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, k_all, v_all


class _SDARBackbone(nn.Module):
    def __init__(self, cfg: SDARConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(SDARLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


def block_causal_mask(
    q_positions: torch.Tensor, k_positions: torch.Tensor, key_mask: torch.Tensor, block_length: int
) -> torch.Tensor:
    """``[B, 1, Q, K]`` bool: query at position p may see a real key at position r iff
    ``r // L <= p // L`` (same block: both directions; earlier block: yes; later block: no).

    Positions are counted from each row's first real token, so blocks are aligned to absolute
    positions exactly as in the reference (where the prompt starts at position 0)."""
    qb = torch.div(q_positions, block_length, rounding_mode="floor")
    kb = torch.div(k_positions, block_length, rounding_mode="floor")
    allowed = kb[:, None, :] <= qb[:, :, None]  # [B, Q, K]
    return (allowed & key_mask[:, None, :].to(torch.bool))[:, None]


class SDAR(DiffusionLM):
    """``SDARForCausalLM`` layout: ``model.*`` backbone plus ``lm_head`` (absent when tied)."""

    shift_logits = False
    block_causal = True
    config_class = SDARConfig

    def __init__(self, config: SDARConfig) -> None:
        super().__init__()
        self.config = config
        self.model = _SDARBackbone(config)
        if not config.tie_word_embeddings:
            self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.head_dim = config.head_dim
        self.rope_theta = config.rope_theta
        self.block_length = config.block_length

    @property
    def blocks(self) -> nn.ModuleList:
        return self.model.layers

    def embed(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.model.embed_tokens(ids)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        h = self.model.norm(h)
        if self.config.tie_word_embeddings:
            return F.linear(h, self.model.embed_tokens.weight)
        return self.lm_head(h)

    def reset_parameters(self) -> None:
        init_weights(self)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        start: int = 0,
        return_cache: bool = False,
        head_range: tuple[int, int] | None = None,
        block_length: int | None = None,
    ) -> ModelOutput:
        """Run positions ``[start, start + Q)`` of the canvas.

        * ``cache is None``: ``start`` must be 0 and the block-causal mask is applied over the
          ``Q`` positions given. ``return_cache=True`` returns their K/V (the prefill).
        * ``cache`` given: it must hold exactly positions ``[0, start)`` (finished blocks); the
          window attends to them and to itself under the block-causal rule. ``return_cache=True``
          returns the cache extended by the window (positions ``[0, start + Q)``).

        ``attention_mask`` (1 = real, 0 = left padding) may be wider than the keys (the whole
        canvas); only its first ``start + Q`` columns are used. ``block_length`` overrides the
        config's (a decoding setting, like the reference's ``block_length`` argument).
        """
        b, q_len = input_ids.shape
        size = int(block_length or self.block_length)
        if cache is None and start != 0:
            raise ValueError("a forward without a cache must start at position 0")
        if cache is not None and cache.length != start:
            raise ValueError(f"the block-causal cache holds {cache.length} positions but the window starts at {start}")
        total = start + q_len
        if attention_mask is None:
            attention_mask = torch.ones(b, total, dtype=torch.long, device=input_ids.device)
        if attention_mask.shape[-1] < total:
            raise ValueError(f"attention_mask covers {attention_mask.shape[-1]} positions, keys are {total}")
        attention_mask = attention_mask[:, :total]
        all_pos = positions_from_mask(attention_mask)
        positions = all_pos[:, start:total]
        mask = block_causal_mask(positions, all_pos, attention_mask, size)
        cos, sin = rope_cos_sin(positions, self.head_dim, self.rope_theta)
        h = self.embed(input_ids, positions)
        keys: list[torch.Tensor] = []
        values: list[torch.Tensor] = []
        for i, layer in enumerate(self.blocks):
            h, k, v = layer(h, cos, sin, mask, cache, i, start)
            if return_cache:
                keys.append(k)
                values.append(v)
        if head_range is not None:
            h = h[:, head_range[0] : head_range[1]]
        logits = self.head(h)
        return ModelOutput(logits=logits, cache=KVCache(keys, values) if return_cache else None)

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
        block_length: int | None = None,
    ) -> ModelOutput:
        """Logits ``[B, end - start, V]`` for positions ``[start, end)`` of the canvas ``x``.

        Without a cache the whole canvas is run under the block-causal mask (later blocks are
        invisible to the window, so this equals the cached result up to float rounding). With a
        cache holding ``[0, start)`` only the window is run."""
        t = x.shape[1]
        end = t if end is None else end
        want = end if logits_end is None else logits_end
        if cache is None:
            return self(x, attention_mask, return_cache=return_cache, head_range=(start, want), block_length=block_length)
        return self(x[:, start:end], attention_mask, cache=cache, start=start, head_range=(0, want - start),
                    block_length=block_length, return_cache=return_cache)

    @torch.no_grad()
    def prefill(self, x: torch.Tensor, attention_mask: torch.Tensor, end: int, block_length: int | None = None) -> KVCache:
        """The exact cache of positions ``[0, end)`` (whole blocks of finished tokens); empty when
        ``end`` is 0 (a prompt shorter than one block)."""
        if end == 0:
            cfg = self.config
            empty = x.new_zeros((x.shape[0], cfg.num_key_value_heads, 0, cfg.head_dim), dtype=self.dtype)
            n = cfg.num_hidden_layers
            return KVCache([empty] * n, [empty] * n)
        out = self(x[:, :end], attention_mask, return_cache=True, head_range=(0, 0), block_length=block_length)
        return out.cache

    @torch.no_grad()
    def extend_cache(
        self, x: torch.Tensor, attention_mask: torch.Tensor, cache: KVCache, start: int, end: int,
        block_length: int | None = None,
    ) -> KVCache:
        """Append the finished block ``[start, end)`` to a cache of ``[0, start)``: one forward
        over the block's final tokens (the reference's ``store_kv=True`` call)."""
        out = self(x[:, start:end], attention_mask, cache=cache, start=start, return_cache=True,
                   head_range=(0, 0), block_length=block_length)
        return out.cache
