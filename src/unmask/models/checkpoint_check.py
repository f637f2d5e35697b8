"""Checks of a checkpoint folder made *before* any model is built.

A hand-edited or half-downloaded checkpoint fails in many ways that surface far from their cause:
a string where config.json should have an integer breaks a matrix shape inside ``nn.Linear``, a
mask id outside the vocabulary breaks the first embedding lookup (or, worse, silently indexes a
different token), a truncated safetensors file fails inside the Rust reader, int32 weights load
and then fail in a matmul. Here each of those becomes one :class:`UnmaskError` that names the
file and the field, before a single tensor is read.

What is checked:

* ``config.json`` is a JSON object; every field the native config classes use has the right JSON
  type (integers are integers, not strings or booleans; floats are finite); sizes are positive;
  heads divide the width; the special token ids exist in the vocabulary.
* each safetensors file: its header is complete, valid JSON and describes tensors whose byte
  ranges fit the file exactly (so truncated, empty and garbage files are caught without reading
  the data), and every tensor is floating point (F32, F16, BF16, F64).

NaN/inf *values* in the weights are not scanned here (that would read every byte of a 16 GB
checkpoint); the decoding engine stops on non-finite logits instead (see
:mod:`unmask.decoding.guards`).
"""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..errors import UnmaskError

#: safetensors dtype codes -> bytes per element
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
             "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "U16": 2, "U32": 4, "U64": 8, "BOOL": 1}
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the format's own limit
ID_FIELDS = ("mask_token_id", "eos_token_id", "pad_token_id")  # bos is never used to index logits


def _kind(annotation: Any) -> str:
    text = str(annotation)
    for k in ("bool", "int", "float", "str"):
        if text.split("|")[0].strip() == k:
            return k
    return "other"


def check_config(raw: Any, path: str | Path) -> None:
    """Validate a parsed config.json (before :func:`unmask.models.loading.config_from_dict`)."""
    from .architecture import architecture_of
    from .dream import DreamConfig
    from .llada import LLaDAConfig
    from .sdar import SDARConfig

    if not isinstance(raw, dict):
        raise UnmaskError(f"{path} must hold a JSON object (field: value), not a {type(raw).__name__}")
    cls = architecture_of(raw).config_class
    for f in fields(cls):
        if f.name == "extra" or f.name not in raw or raw[f.name] is None:
            continue
        v, kind = raw[f.name], _kind(f.type)
        where = f"{path}: {f.name}"
        if f.name == "eos_token_id" and isinstance(v, list) and v and all(type(t) is int for t in v):
            v = v[0]  # Qwen-family configs may list several EOS ids; the first is the EOS
        if kind == "bool" and not isinstance(v, bool):
            raise UnmaskError(f"{where} must be true or false, got {v!r}")
        if kind == "int":
            if isinstance(v, bool) or not isinstance(v, int):
                raise UnmaskError(f"{where} must be an integer, got {v!r}")
            if f.name.endswith("_token_id"):
                if v < 0:
                    raise UnmaskError(f"{where} must be >= 0, got {v}")
            elif v < 0 or (v == 0 and f.name not in getattr(cls, "ZERO_OK", ())):
                raise UnmaskError(f"{where} must be > 0, got {v}")
        if kind == "float":
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
                raise UnmaskError(f"{where} must be a finite number, got {v!r}")
            if float(v) <= 0:
                raise UnmaskError(f"{where} must be > 0, got {v}")
        if kind == "str" and not isinstance(v, str):
            raise UnmaskError(f"{where} must be a string, got {v!r}")
    config = cls.from_dict(raw)
    if isinstance(config, SDARConfig):
        # Qwen3 layout: head_dim is its own field (hidden_size need not be heads x head_dim)
        heads, kv, vocab = config.num_attention_heads, config.num_key_value_heads, config.vocab_size
        if config.head_dim % 2:
            raise UnmaskError(f"{path}: head_dim ({config.head_dim}) must be even (RoPE)")
        if heads % kv:
            raise UnmaskError(f"{path}: num_attention_heads ({heads}) must be divisible by num_key_value_heads ({kv})")
        _check_ids(config, raw, vocab, path)
        return
    if isinstance(config, LLaDAConfig):
        width, heads, kv = config.d_model, config.n_heads, config.n_kv_heads or config.n_heads
        vocab = config.embedding_size or config.vocab_size
        names = ("d_model", "n_heads", "n_kv_heads")
    else:
        assert isinstance(config, DreamConfig)
        width, heads, kv = config.hidden_size, config.num_attention_heads, config.num_key_value_heads
        vocab = config.vocab_size
        names = ("hidden_size", "num_attention_heads", "num_key_value_heads")
    if width % heads:
        raise UnmaskError(f"{path}: {names[0]} ({width}) must be divisible by {names[1]} ({heads})")
    if getattr(config, "rope", True) and (width // heads) % 2:
        raise UnmaskError(f"{path}: the head size {names[0]}/{names[1]} = {width // heads} must be even (RoPE)")
    if heads % kv:
        raise UnmaskError(f"{path}: {names[1]} ({heads}) must be divisible by {names[2]} ({kv})")
    _check_ids(config, raw, vocab, path)


def _check_ids(config: Any, raw: dict[str, Any], vocab: int, path: str | Path) -> None:
    """The special token ids index the logits: each must be inside the vocabulary."""
    for name in ID_FIELDS:
        if not hasattr(config, name):
            continue
        v = getattr(config, name)
        if v is not None and not 0 <= v < vocab:
            default = "" if name in raw else " (the default; config.json does not set it)"
            raise UnmaskError(f"{path}: {name} {v}{default} is outside the vocabulary of {vocab} tokens")


def check_safetensors(path: str | Path) -> dict[str, Any]:
    """Validate one safetensors file's header against its size; returns the header."""
    p = Path(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as fh:
            head = fh.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n < 2 or n > MAX_HEADER_BYTES or 8 + n > size:
                raise UnmaskError(f"{p} is not a complete safetensors file (empty, truncated or not safetensors)")
            blob = fh.read(n)
    except OSError as e:
        raise UnmaskError(f"cannot read {p}: {e.strerror}") from None
    try:
        header = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UnmaskError(f"{p} is not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise UnmaskError(f"{p} is not a safetensors file (its header is not a JSON object)")
    data_len = size - 8 - n
    end_max = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        try:
            dtype, shape, (a, b) = entry["dtype"], entry["shape"], entry["data_offsets"]
            numel = math.prod(int(d) for d in shape)
            ok = dtype in _ITEMSIZE and 0 <= a <= b and b - a == numel * _ITEMSIZE[dtype]
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise UnmaskError(f"{p}: tensor {key!r} has a malformed header entry (file damaged?)")
        if dtype not in FLOAT_DTYPES:
            raise UnmaskError(f"{p}: tensor {key!r} is stored as {dtype}; model weights must be floating point "
                              f"({', '.join(FLOAT_DTYPES)})")
        end_max = max(end_max, b)
    if end_max > data_len:
        raise UnmaskError(f"{p} is truncated: its header describes {end_max} bytes of tensor data, the file has {data_len}")
    return header


def check_weight_files(files: list[Path]) -> None:
    for f in files:
        check_safetensors(f)
