"""A tiny random-weight MMaDA + MAGVIT-v2 pair in the official layouts, rebuilt deterministically
from a recipe (the reference fixtures name the recipe; CI rebuilds the same weights).

The MMaDA model keeps the official vocabulary layout (the reserved prompt ids 126084.., mask 126336,
text vocabulary 126,464) with a narrow network and a small codebook, so the reference code runs on it
unchanged. The tokenizer is MAGVIT-v2 with 6-bit codes (64 codes), 32 px images, 4x downsampling:
8 x 8 = 64 image tokens.
"""

from __future__ import annotations

import torch
from tiny import make_tokenizer, peaked

from unmask.models.loading import build_model, save_model
from unmask.models.magvitv2 import MAGVITv2, MAGVITv2Config, save_magvitv2
from unmask.models.mmada import MMaDAConfig

TEXT_VOCAB = 126464
MAGVIT_TINY = dict(ch=32, ch_mult=[1, 1, 2], num_res_blocks=[1, 1, 1], dec_ch_mult=[1, 1, 2],
                   dec_num_res_blocks=[1, 1, 1], attn_resolutions=[8], resolution=32, codebook_bits=6)
MAGVIT_TINY_REFERENCE_ARGS = dict(  # the same sizes in the reference constructors' argument names
    encoder=dict(ch=32, ch_mult=[1, 1, 2], num_res_blocks=[1, 1, 1], attn_resolutions=[8], resolution=32,
                 z_channels=6),
    decoder=dict(ch=32, ch_mult=[1, 1, 2], num_res_blocks=[1, 1, 1], attn_resolutions=[8], resolution=32,
                 z_channels=6),
    codebook_dim=6)


def mmada_config(codebook_bits: int = 6, num_vq_tokens: int = 64) -> MMaDAConfig:
    codes = 2 ** codebook_bits
    return MMaDAConfig(d_model=32, n_layers=2, n_heads=2, mlp_hidden_size=64, vocab_size=TEXT_VOCAB + codes,
                       embedding_size=TEXT_VOCAB + codes, new_vocab_size=TEXT_VOCAB + codes, llm_vocab_size=TEXT_VOCAB,
                       codebook_size=codes, num_vq_tokens=num_vq_tokens, max_sequence_length=1024,
                       rope_theta=10000.0)


def tiny_magvit(seed: int = 0, **overrides) -> MAGVITv2:
    """Weights drawn parameter by parameter (sorted names) from one generator, so they depend on
    nothing but the seed: convolutions ~ N(0, 1/fan_in), biases ~ N(0, 0.05), norm scales ~ 1 + N(0, 0.1)."""
    model = MAGVITv2(MAGVITv2Config(**{**MAGVIT_TINY, **overrides})).eval()
    g = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in sorted(params):
            p = params[name]
            if p.dim() == 4:
                p.copy_(torch.randn(p.shape, generator=g) / (p[0].numel() ** 0.5))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return model


def tiny_mmada(seed: int = 0, std: float = 0.6, **overrides):
    return peaked(build_model(mmada_config(**overrides), seed=seed), std=std, seed=seed)


def write_tiny_mmada(folder, seed: int = 0, std: float = 0.6, dtype: str = "float32", shard: int | None = None,
                     with_vq: bool = True):
    """``folder/model`` (config.json, safetensors, char tokenizer) and ``folder/vq``."""
    from pathlib import Path

    folder = Path(folder)
    save_model(tiny_mmada(seed, std), folder / "model", dtype=dtype, max_shard_bytes=shard)
    make_tokenizer().save_pretrained(str(folder / "model"))
    if with_vq:
        save_magvitv2(tiny_magvit(seed), folder / "vq")
    return folder
