"""A lossless compact-vocabulary copy of an MMaDA model whose text side is tiny (``tiny-shapes``).

Keeping MMaDA-8B's ids lets a small model load and decode through exactly the MMaDA-8B path,
but the embedding then has 126,464 text rows of which a character model reads a few dozen (65 MB
in float32 for ``tiny-shapes``, whose network is about 4 MB). The rows it never reads cannot
change a text-to-image run: the head is only ever asked for the code columns, and an embedding
row that no input id selects never enters a forward. So :func:`compact_model` keeps

* the tokenizer's ids ``[0, n_tokenizer)`` unchanged (the tokenizer file needs no change),
* then the reference's prompt tokens (``<|t2i|>``, ``<|soi|>``, ..., in
  :data:`~unmask.multimodal.prompting.SPECIAL_IDS` order) and the mask id,
* then the image codes,

and writes the new ids into the config (``special_token_ids``, ``mask_token_id``,
``llm_vocab_size``), which :func:`~unmask.multimodal.prompting.special_ids` and the t2i loop read.
Every kept row is copied bit for bit, so the compact model computes the same logits as the
original for every layout built from the kept ids: the same codes and images for every sampler
(``tests/test_shapes_compact.py`` checks this on a random model).

``python -m unmask.multimodal.compact SRC_FOLDER DST_FOLDER`` converts a folder; the tokenizer,
``t2i.json`` and other side files are copied along.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import torch

from ..errors import UnmaskError
from .prompting import SPECIAL_IDS, special_ids

#: files of a model folder that describe the weights (rewritten), not copied
_WEIGHT_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json")


def kept_text_ids(config, n_tokenizer: int) -> list[int]:
    """Old text ids in their new order: the tokenizer's, the prompt tokens, the mask."""
    sp = special_ids(config)
    ids = list(range(n_tokenizer))
    for name in SPECIAL_IDS:
        if sp[name] not in ids:
            ids.append(sp[name])
    if config.mask_token_id not in ids:
        ids.append(int(config.mask_token_id))
    if max(ids) >= config.image_offset:
        raise UnmaskError(f"a kept text id ({max(ids)}) is not below the image offset {config.image_offset}")
    return ids


def compact_model(model, n_tokenizer: int, bos: int | None = None, eos: int | None = None, pad: int | None = None):
    """A new model with only the used rows; returns ``(model, old_to_new)`` (text ids only).
    ``bos``/``eos``/``pad``: the tokenizer's ids, written into the config where the config's own
    ids are not kept (the t2i loop takes them from the tokenizer anyway)."""
    from ..models.loading import build_model

    cfg = model.config
    if not hasattr(cfg, "codebook_size"):
        raise UnmaskError(f"{type(model).__name__} is not an MMaDA model (its config has no codebook_size)")
    old = kept_text_ids(cfg, n_tokenizer)
    remap = {o: n for n, o in enumerate(old)}
    n_text = len(old)
    rows = n_text + cfg.codebook_size
    sp = special_ids(cfg)
    new_cfg = replace(
        cfg, vocab_size=rows, embedding_size=rows, new_vocab_size=rows, llm_vocab_size=n_text,
        num_new_special_tokens=0, mask_token_id=remap[cfg.mask_token_id],
        special_token_ids={k: remap[v] for k, v in sp.items()},
        bos_token_id=remap.get(cfg.bos_token_id, bos if bos is not None else 0),
        eos_token_id=remap.get(cfg.eos_token_id, eos if eos is not None else 0),
        pad_token_id=remap.get(cfg.pad_token_id, pad if pad is not None else 0),
        extra=dict(cfg.extra))
    new_cfg.validate()
    index = torch.tensor(old + list(range(cfg.image_offset, cfg.image_offset + cfg.codebook_size)))
    state = {}
    for k, v in model.state_dict().items():
        vocab_sized = k.endswith(("wte.weight", "transformer.ff_out.weight", "transformer.ff_out.bias")) \
            and v.shape[0] == cfg.rows
        state[k] = v.detach()[index].clone() if vocab_sized else v.detach().clone()
    new = build_model(new_cfg, seed=0)
    new.load_state_dict(state)
    return new.to(dtype=next(model.parameters()).dtype).eval(), remap


def compact_folder(src: str | Path, dst: str | Path) -> Path:
    """Convert the model folder ``src`` into ``dst`` (created; side files copied)."""
    from ..models.loading import load_model, save_model
    from ..tokenizer import load_tokenizer

    src, dst = Path(src), Path(dst)
    if dst.resolve() == src.resolve():
        raise UnmaskError("the compact copy needs another folder than its source")
    model = load_model(src)
    tok = load_tokenizer(src)
    small, _ = compact_model(model, len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.name in _WEIGHT_FILES or f.name.startswith("model-"):
            continue
        if f.is_dir():
            shutil.copytree(f, dst / f.name, dirs_exist_ok=True)
        else:
            shutil.copy2(f, dst / f.name)
    save_model(small, dst)
    return dst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m unmask.multimodal.compact", description=__doc__.split("\n")[0])
    p.add_argument("src", help="MMaDA model folder (config.json, model.safetensors, tokenizer)")
    p.add_argument("dst", help="folder for the compact copy")
    args = p.parse_args(argv)
    try:
        out = compact_folder(args.src, args.dst)
    except UnmaskError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
