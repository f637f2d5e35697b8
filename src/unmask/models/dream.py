"""Dream-7B (Dream-org/Dream-v0-*; also apple/DiffuCoder-7B-*) in plain PyTorch.

Qwen2 layout with official key names: GQA attention with q/k/v biases, SwiGLU MLP, RMSNorm, RoPE in
the model dtype, fully bidirectional. Dream keeps the next-token convention of its AR parent: the
raw logits at position i predict token i + 1. :meth:`DiffusionLM.predict` undoes that shift (the
only place in unmask that knows about it).
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
class DreamConfig:
    hidden_size: int = 3584
    intermediate_size: int = 18944
    num_hidden_layers: int = 28
    num_attention_heads: int = 28
    num_key_value_heads: int = 4
    vocab_size: int = 152064
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1000000.0
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 131072
    mask_token_id: int = 151666
    eos_token_id: int = 151643
    pad_token_id: int = 151643
    bos_token_id: int = 151643
    model_type: str = "Dream"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def max_sequence_length(self) -> int:
        return self.max_position_embeddings

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DreamConfig:
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        kwargs = {k: v for k, v in d.items() if k in known and v is not None}
        extra = {k: v for k, v in d.items() if k not in known}
        return cls(**kwargs, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        d.update({"architectures": ["DreamModel"], "hidden_act": "silu"})
        return {**extra, **d}


class DreamAttention(nn.Module):
    def __init__(self, cfg: DreamConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.n_heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = d // cfg.num_attention_heads
        self.q_proj = nn.Linear(d, self.n_heads * self.head_dim, bias=True)
        self.k_proj = nn.Linear(d, self.kv_heads * self.head_dim, bias=True)
        self.v_proj = nn.Linear(d, self.kv_heads * self.head_dim, bias=True)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, d, bias=False)


class DreamMLP(nn.Module):
    def __init__(self, cfg: DreamConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DreamLayer(nn.Module):
    def __init__(self, cfg: DreamConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = DreamAttention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = DreamMLP(cfg)

    def forward(self, x, cos, sin, key_mask, cache: KVCache | None, layer: int, start: int):
        b, q_len, _ = x.shape
        at = self.self_attn
        a = self.input_layernorm(x)
        q = at.q_proj(a).view(b, q_len, at.n_heads, at.head_dim).transpose(1, 2)
        k = at.k_proj(a).view(b, q_len, at.kv_heads, at.head_dim).transpose(1, 2)
        v = at.v_proj(a).view(b, q_len, at.kv_heads, at.head_dim).transpose(1, 2)
        q = apply_rope(q, cos, sin, full_precision=False)
        k = apply_rope(k, cos, sin, full_precision=False)
        k_all, v_all = (k, v) if cache is None else cache.layer_window(layer, start, k, v)
        o = attention(q, k_all, v_all, key_mask)
        x = x + at.o_proj(o.transpose(1, 2).reshape(b, q_len, -1))
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, k, v


class _DreamBackbone(nn.Module):
    def __init__(self, cfg: DreamConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DreamLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class Dream(DiffusionLM):
    """``DreamModel`` layout: ``model.*`` backbone plus a separate ``lm_head``."""

    shift_logits = True
    config_class = DreamConfig

    def __init__(self, config: DreamConfig) -> None:
        super().__init__()
        self.config = config
        self.model = _DreamBackbone(config)
        if not config.tie_word_embeddings:
            self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.rope_theta = config.rope_theta

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
