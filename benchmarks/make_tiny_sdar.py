"""Write a random-weight checkpoint in the official SDAR/TraDo layout (config.json field names,
``model.*`` / ``lm_head`` key names, optional sharded safetensors index, a ChatML tokenizer).

Used by the parity script (the same folder loads into the reference modeling code) and the
benchmark; the tests build theirs through tests/tiny.py. Example::

    PYTHONPATH=src python3 benchmarks/make_tiny_sdar.py /tmp/sdar/tiny --hidden 64 --layers 2
"""

from __future__ import annotations

import argparse
import string
from pathlib import Path

import torch

from unmask.models.loading import build_model, save_model
from unmask.models.sdar import SDARConfig
from unmask.tokenizer import build_chatml_char_tokenizer

ALPHABET = string.ascii_lowercase + string.digits + " .,?!=+*-\n"


def peaked_(model: torch.nn.Module, std: float, seed: int) -> None:
    """Re-draw every matrix with a larger spread so predictions are confident and differ between
    positions (a 0.02-std model is close to uniform, which makes remasking rules vacuous)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * std * 4 / (p.shape[1] ** 0.5))
            elif name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))


def write_tiny_sdar(
    folder: str | Path, hidden: int = 64, layers: int = 2, heads: int = 4, kv_heads: int = 2, head_dim: int = 16,
    intermediate: int = 128, vocab: int | None = None, block_length: int = 4, tie: bool = False,
    dtype: str = "float32", shard_bytes: int | None = None, std: float = 0.6, seed: int = 0,
) -> Path:
    tok = build_chatml_char_tokenizer(ALPHABET)
    cfg = SDARConfig(
        vocab_size=vocab or len(tok), hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim, max_position_embeddings=4096,
        rope_theta=10000.0, tie_word_embeddings=tie, bos_token_id=0, eos_token_id=0, pad_token_id=0,
        mask_token_id=tok.convert_tokens_to_ids("<|MASK|>"), block_length=block_length,
        # fields the reference modeling file reads from its config (training-only switch)
        extra={"model_type": "sdar", "fuse_cross_entropy": False, "initializer_range": 0.02,
               "attention_dropout": 0.0, "max_window_layers": layers, "use_cache": True},
    )
    model = build_model(cfg, seed=seed)
    if std > 0:
        peaked_(model, std, seed)
    save_model(model, folder, dtype=dtype, max_shard_bytes=shard_bytes)
    tok.save_pretrained(str(folder))
    return Path(folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv_heads", type=int, default=2)
    ap.add_argument("--head_dim", type=int, default=16)
    ap.add_argument("--intermediate", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=None)
    ap.add_argument("--block_length", type=int, default=4)
    ap.add_argument("--tie", action="store_true")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--shard_bytes", type=int, default=None)
    ap.add_argument("--std", type=float, default=0.6)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    out = write_tiny_sdar(a.folder, a.hidden, a.layers, a.heads, a.kv_heads, a.head_dim, a.intermediate, a.vocab,
                          a.block_length, a.tie, a.dtype, a.shard_bytes, a.std, a.seed)
    print(out)


if __name__ == "__main__":
    main()
