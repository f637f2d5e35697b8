"""Helpers: tiny random-weight LLaDA and Dream checkpoints written to disk and loaded back
through the same path as the real 8B models."""

from __future__ import annotations

import string

import torch

from unmask.models.dream import DreamConfig
from unmask.models.llada import LLaDAConfig
from unmask.models.loading import build_model, save_model
from unmask.models.sdar import SDARConfig
from unmask.tokenizer import build_char_tokenizer, build_chatml_char_tokenizer

ALPHABET = string.ascii_lowercase + string.digits + " .,?!=+*-"


def make_tokenizer():
    return build_char_tokenizer(ALPHABET)


def make_chatml_tokenizer():
    return build_chatml_char_tokenizer(ALPHABET + "\n")


def tiny_config(arch: str, vocab: int, **kw):
    if arch == "sdar":  # ids of build_chatml_char_tokenizer: <|endoftext|> 0, <|MASK|> 3
        base = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=16, vocab_size=vocab, max_position_embeddings=512,
                    rope_theta=10000.0, mask_token_id=3, eos_token_id=0, bos_token_id=0, pad_token_id=0,
                    block_length=4)
        base.update(kw)
        return SDARConfig(**base)
    ids = dict(mask_token_id=1, eos_token_id=2, pad_token_id=0)
    if arch == "llada":
        base = dict(d_model=32, n_layers=2, n_heads=4, mlp_hidden_size=64, vocab_size=vocab,
                    embedding_size=vocab, max_sequence_length=256, rope_theta=10000.0, **ids)
        base.update(kw)
        return LLaDAConfig(**base)
    base = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=vocab, max_position_embeddings=256, rope_theta=10000.0, **ids)
    base.update(kw)
    return DreamConfig(**base)


def peaked(model, std: float = 0.6, seed: int = 0):
    """Re-initialise with a larger std so predictions are confident and differ between positions
    (a 0.02-std random model is almost uniform, which would make sampler tests vacuous)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * std / (p.shape[1] ** 0.5) * 4)
            elif "bias" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model


def write_tiny(folder, arch: str = "llada", dtype: str = "float32", shard: int | None = None, seed: int = 0,
               vocab: int | None = None, std: float = 0.6, **config):
    """Write a tiny checkpoint in the official layout. ``vocab`` (default: the tokenizer's size)
    may be larger than the tokenizer, e.g. so that Dream's top-k 50 filter has something to cut;
    ``std`` sets how peaked the predictions are (small = weak, near-uniform model). The weights
    depend only on (arch, seed, vocab, std, config), so fixtures can name this recipe and CI
    rebuilds the same checkpoint. ``arch="sdar"`` uses the ChatML tokenizer."""
    tok = make_chatml_tokenizer() if arch == "sdar" else make_tokenizer()
    model = peaked(build_model(tiny_config(arch, vocab or len(tok), **config), seed=seed), std=std, seed=seed)
    save_model(model, folder, dtype=dtype, max_shard_bytes=shard)
    tok.save_pretrained(str(folder))
    return folder




def write_task_model(folder, task_name: str, seed: int = 0, arch: str = "llada", **params):
    """A random-weight LLaDA (or SDAR-layout, ``arch="sdar"``) model for a synthetic task, laid out
    like the built-in models (config.json, model.safetensors, tokenizer, task.json)."""
    import json

    from unmask.tasks.synthetic import get_task

    task = get_task(task_name, **params)
    tok = task.tokenizer
    ids = dict(mask_token_id=tok.mask_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    if arch == "sdar":
        cfg = tiny_config("sdar", len(tok), max_position_embeddings=max(64, task.canvas_len), **ids)
    else:
        cfg = LLaDAConfig(d_model=32, n_layers=2, n_heads=4, mlp_hidden_size=64, vocab_size=len(tok),
                          embedding_size=len(tok), max_sequence_length=task.canvas_len, rope_theta=10000.0, **ids)
    model = peaked(build_model(cfg, seed=seed), seed=seed)
    save_model(model, folder, dtype="bfloat16")
    tok.save_pretrained(str(folder))
    (folder / "task.json").write_text(json.dumps(task.task_json()))
    return folder
