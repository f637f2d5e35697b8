"""LLaDA-8B (Base, Instruct, LLaDA-1.5) in plain PyTorch, with the official state-dict key names.

A LLaMA-style bidirectional transformer written OLMo-style: separate q/k/v projections, SwiGLU MLP
(``ff_proj`` goes through SiLU, ``up_proj`` is the linear branch), RMSNorm, RoPE applied in fp32,
no causal mask, no timestep input. Logits at position i predict token i (no shift).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import DiffusionLM, RMSNorm, apply_rope, attention, init_weights
from .cache import KVCache


@dataclass
class LLaDAConfig:
    """Fields of LLaDA's ``config.json`` that change the computation (others are kept in ``extra``)."""

    d_model: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: int | None = None
    mlp_hidden_size: int | None = 12288
    mlp_ratio: int = 4
    vocab_size: int = 126464
    embedding_size: int | None = 126464
    rms_norm_eps: float = 1e-5
    rope_theta: float = 500000.0
    rope_full_precision: bool = True
    # OLMo/LLaDA config switch: with ``rope: false`` (and no ALiBi) the model adds a learned
    # absolute position table ``wpe`` instead of rotating q/k. LLaDA-8B uses RoPE; our tiny
    # task models use ``wpe`` because their fixed layouts (Sudoku cells, NAE-SAT triples) are
    # about *which* absolute cell a token sits in, which relative rotations learn only slowly.
    rope: bool = True
    weight_tying: bool = False
    include_bias: bool = False
    include_qkv_bias: bool = False
    max_sequence_length: int = 4096
    mask_token_id: int = 126336
    eos_token_id: int = 126081
    pad_token_id: int = 126081
    model_type: str = "llada"
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LLaDAConfig:
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        kwargs = {k: v for k, v in d.items() if k in known and v is not None}
        extra = {k: v for k, v in d.items() if k not in known}
        return cls(**kwargs, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        d.update({"architectures": ["LLaDAModelLM"], "block_type": "llama", "activation_type": "silu",
                  "layer_norm_type": "rms", "alibi": False})
        return {**extra, **d}

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def hidden(self) -> int:
        return self.mlp_hidden_size or self.mlp_ratio * self.d_model

    @property
    def rows(self) -> int:
        return self.embedding_size or self.vocab_size


class LLaDABlock(nn.Module):
    def __init__(self, cfg: LLaDAConfig) -> None:
        super().__init__()
        d, hd = cfg.d_model, cfg.d_model // cfg.n_heads
        qkv_bias = cfg.include_bias or cfg.include_qkv_bias
        self.n_heads, self.kv_heads, self.head_dim = cfg.n_heads, cfg.kv_heads, hd
        self.rope_fp32 = cfg.rope_full_precision
        self.attn_norm = RMSNorm(d, cfg.rms_norm_eps)
        self.q_proj = nn.Linear(d, d, bias=qkv_bias)
        self.k_proj = nn.Linear(d, cfg.kv_heads * hd, bias=qkv_bias)
        self.v_proj = nn.Linear(d, cfg.kv_heads * hd, bias=qkv_bias)
        self.attn_out = nn.Linear(d, d, bias=cfg.include_bias)
        self.ff_norm = RMSNorm(d, cfg.rms_norm_eps)
        self.ff_proj = nn.Linear(d, cfg.hidden, bias=cfg.include_bias)
        self.up_proj = nn.Linear(d, cfg.hidden, bias=cfg.include_bias)
        self.ff_out = nn.Linear(cfg.hidden, d, bias=cfg.include_bias)

    def forward(self, x, cos, sin, key_mask, cache: KVCache | None, layer: int, start: int):
        """``cos``/``sin`` None means no rotary embedding (the model uses learned positions)."""
        b, q_len, _ = x.shape
        a = self.attn_norm(x)
        q = self.q_proj(a).view(b, q_len, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(a).view(b, q_len, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(a).view(b, q_len, self.kv_heads, self.head_dim).transpose(1, 2)
        if cos is not None:
            q = apply_rope(q, cos, sin, self.rope_fp32)
            k = apply_rope(k, cos, sin, self.rope_fp32)
        k_all, v_all = (k, v) if cache is None else cache.layer_window(layer, start, k, v)
        o = attention(q, k_all, v_all, key_mask)  # [B, H, Q, D]
        x = x + self.attn_out(o.transpose(1, 2).reshape(b, q_len, -1))
        m = self.ff_norm(x)
        x = x + self.ff_out(F.silu(self.ff_proj(m)) * self.up_proj(m))
        return x, k, v


class _Transformer(nn.Module):
    def __init__(self, cfg: LLaDAConfig) -> None:
        super().__init__()
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(cfg.rows, cfg.d_model),
                "blocks": nn.ModuleList(LLaDABlock(cfg) for _ in range(cfg.n_layers)),
                "ln_f": RMSNorm(cfg.d_model, cfg.rms_norm_eps),
            }
        )
        if not cfg.rope:
            self.transformer["wpe"] = nn.Embedding(cfg.max_sequence_length, cfg.d_model)
        if not cfg.weight_tying:
            self.transformer["ff_out"] = nn.Linear(cfg.d_model, cfg.rows, bias=cfg.include_bias)


class LLaDA(DiffusionLM):
    """``LLaDAModelLM`` layout: parameters live under ``model.transformer.*``."""

    shift_logits = False
    config_class = LLaDAConfig

    def __init__(self, config: LLaDAConfig) -> None:
        super().__init__()
        self.config = config
        self.model = _Transformer(config)
        self.head_dim = config.d_model // config.n_heads
        self.rope_theta = config.rope_theta
        self.uses_rope = config.rope

    @property
    def blocks(self) -> nn.ModuleList:
        return self.model.transformer["blocks"]

    def embed(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        t = self.model.transformer
        if self.config.rope:
            return t["wte"](ids)
        return t["wte"](ids) + t["wpe"](positions)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        t = self.model.transformer
        h = t["ln_f"](h)
        if self.config.weight_tying:
            return F.linear(h, t["wte"].weight)
        return t["ff_out"](h)

    def reset_parameters(self) -> None:
        init_weights(self)
