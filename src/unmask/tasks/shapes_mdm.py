"""Train the tiny MMaDA-layout text-to-image MDM of ``tiny-shapes`` on caption -> image codes (CPU, resumable).

``python -m unmask.tasks.shapes_mdm --out runs/shapes-mdm --vq runs/shapes-tok/tokenizer --steps 8000``

The model is :class:`unmask.models.mmada.MMaDA` (LLaDA's network) in MMaDA's unified vocabulary:
text ids first, then the MAGVIT-v2 codes at ``image_offset``. Two id layouts (``--layout``):

* ``compact`` (the default): the character tokenizer's 32 ids, the reference's 11 prompt tokens
  (``<|t2i|>``, ``<|soi|>``, ``[iPAD]``, ...; their ids in the config's ``special_token_ids``),
  the mask, then the codes from 44 -- exactly the config that
  :mod:`unmask.multimodal.compact` writes for a model trained in the official ids, and loaded
  and decoded through the same MMaDA path. Why it is the default: a 1,068-row embedding instead
  of 127,488 rows makes a step of the 1M-parameter ``tiny`` model several times cheaper (dense
  Adam over 16M never-used embedding parameters dominated the old step).
* ``mmada``: MMaDA-8B's ids (the characters at the bottom of the 126,464-id text range, prompt
  tokens at 126084.., mask 126336, codes from 126464), as the first ``tiny-shapes`` was trained.

Each training row is the reference's t2i layout (:func:`unmask.multimodal.prompting.t2i_layout`)
with the text part ``max_text_len + 1`` wide. The learning rate warms up linearly over
``--warmup`` steps, then decays to 0 at ``--steps`` on a cosine (``--decay cosine``, the
default; the number of steps is then part of the run's definition) or stays constant.

The loss is MMaDA's t2i objective: a mask ratio ``cos(pi/2 * u)``, ``u ~ U(0, 1)``, per row (at
least one image token masked), cross-entropy of the masked image tokens over the code slice of the
vocabulary (the head rows of the codes only: the other rows can never be a target), averaged over
the masked tokens. Captions are dropped (replaced by the empty text, the unconditional row of
classifier-free guidance) with probability ``--cond_dropout`` (0.1, MMaDA's value).

Everything random in a step (scenes, masks, dropout) is drawn from generators seeded by
``(seed, step)``, and the model from ``seed``; so a resumed run is bit-identical to an
uninterrupted one and rerunning the command reproduces the weights. ``last.pt`` (weights,
optimizer, step) is written every ``--save_every`` steps and at the end, and so is the exported
folder ``OUT/model``: ``config.json`` + ``model.safetensors`` + the character tokenizer, loadable
with :func:`unmask.models.loading.load_model` like MMaDA-8B, and ``t2i.json`` (the text width,
the code grid and the SHA-256 of the VQ tokenizer's weights it pairs with). ``OUT/vq`` is a copy
of that tokenizer folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..models.loading import build_model, save_model
from ..models.magvitv2 import MAGVITv2, load_magvitv2
from ..models.mmada import MMaDA, MMaDAConfig
from ..multimodal.prompting import SPECIAL_IDS, special_ids, t2i_layout
from . import shapes as S
from .shapes_tokenizer import to_pixels

TEXT_VOCAB = 126464  # the official llm_vocab_size: keeps the reference's reserved ids
MAX_TEXT_LEN = 48  # the longest caption is 45 characters; + <bos> <eos>
#: the characters of every caption (checked against the caption set in the tests)
ALPHABET = " abcdefghiklmnopqrstuvwy"
SIZES: dict[str, dict[str, int]] = {
    "small": dict(d_model=192, n_layers=6, n_heads=6, mlp_hidden_size=512),
    "tiny": dict(d_model=128, n_layers=4, n_heads=4, mlp_hidden_size=384),
    "test": dict(d_model=16, n_layers=1, n_heads=2, mlp_hidden_size=32),
}


def char_tokenizer():
    from ..tokenizer import build_char_tokenizer

    return build_char_tokenizer(ALPHABET)


def compact_text_ids(n_tokenizer: int) -> tuple[dict[str, int], int]:
    """The compact layout's prompt-token ids and mask id: after the tokenizer's ids, in
    :data:`~unmask.multimodal.prompting.SPECIAL_IDS` order, then the mask -- the ids
    :func:`unmask.multimodal.compact.compact_model` writes for a model trained in MMaDA-8B's ids."""
    special = {name: n_tokenizer + i for i, name in enumerate(SPECIAL_IDS)}
    return special, n_tokenizer + len(special)


def model_config(size: str, codebook_size: int, num_vq_tokens: int, layout: str = "mmada") -> MMaDAConfig:
    """``layout="mmada"``: MMaDA-8B's ids (126,464 text rows); ``"compact"``: the character
    tokenizer's ids, the prompt tokens and the mask (44 text rows), the same config a compact
    export of the former writes. Both load and decode through the same MMaDA path."""
    body = dict(**SIZES[size], codebook_size=codebook_size, num_vq_tokens=num_vq_tokens,
                max_sequence_length=256, rope_theta=10000.0, weight_tying=True)
    if layout == "mmada":
        rows = TEXT_VOCAB + codebook_size
        return MMaDAConfig(**body, vocab_size=rows, embedding_size=rows, new_vocab_size=rows, llm_vocab_size=TEXT_VOCAB)
    tok = char_tokenizer()
    special, mask = compact_text_ids(len(tok))
    rows = mask + 1 + codebook_size
    return MMaDAConfig(**body, vocab_size=rows, embedding_size=rows, new_vocab_size=rows, llm_vocab_size=mask + 1,
                       mask_token_id=mask, special_token_ids=special, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)


def learning_rate(args: argparse.Namespace, step: int) -> float:
    """Linear warm-up over ``--warmup`` steps, then constant or a cosine decay to 0 at ``--steps``
    (so with ``--decay cosine`` the number of steps is part of the run's definition)."""
    warm = min(1.0, (step + 1) / args.warmup)
    if args.decay == "constant" or step < args.warmup:
        return args.lr * warm
    frac = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, frac)))


def step_batch(seed: int, step: int, n: int) -> tuple[list[str], np.ndarray]:
    """The captions and rendered scenes of one step: a pure function of ``(seed, step)``."""
    rng = random.Random(seed * 1_000_003 + step)
    pools = {tag: S.records("train", tag) for tag in S.CATEGORIES}
    captions, images = [], []
    for _ in range(n):
        meta = rng.choice(pools[rng.choice(S.CATEGORIES)])
        captions.append(meta["prompt"])
        images.append(S.render(S.sample_scene(meta, rng)))
    return captions, np.stack(images)


@torch.no_grad()
def encode(vq: MAGVITv2, images: np.ndarray) -> torch.Tensor:
    vq.eval()
    return vq.encode(to_pixels(images)).reshape(len(images), -1)


def training_rows(model: MMaDA, tok, captions: list[str], codes: torch.Tensor, gen: torch.Generator,
                  cond_dropout: float, max_text_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Input ids, attention mask, the masked-position flags ``[B, N]`` and the image start."""
    cfg = model.config
    b, n = codes.shape
    drop = torch.rand(b, generator=gen) < cond_dropout
    texts = [[] if d else tok(c)["input_ids"] for c, d in zip(captions, drop.tolist())]
    u = torch.rand(b, generator=gen)
    ratio = torch.cos(u * torch.pi / 2)
    n_mask = (ratio * n).floor().long().clamp(1, n)
    order = torch.rand(b, n, generator=gen).argsort(1)
    masked = order < n_mask[:, None]  # a uniform random subset of n_mask positions per row
    image_ids = torch.where(masked, torch.full_like(codes, cfg.mask_token_id), codes + cfg.image_offset)
    layout = t2i_layout(texts, n, tok.bos_token_id, tok.eos_token_id, cfg.mask_token_id, max_text_len, image_ids,
                        special_ids(cfg))
    return layout.ids, layout.mask, masked, layout.image_start


def loss_of(model: MMaDA, ids, mask, masked, codes, image_start: int) -> torch.Tensor:
    cfg = model.config
    n = codes.shape[1]
    positions = torch.arange(ids.shape[1])[None].expand(ids.shape[0], -1)  # absolute, as the t2i decoder
    out = model(ids, mask, head_range=(image_start, image_start + n), positions=positions,
                vocab_range=(cfg.image_offset, cfg.image_offset + cfg.codebook_size))
    return F.cross_entropy(out.logits[masked].float(), codes[masked])


def t2i_meta(folder: Path) -> dict[str, Any]:
    """An exported model folder's ``t2i.json`` ({} when it has none)."""
    return json.loads((folder / "t2i.json").read_text()) if (folder / "t2i.json").exists() else {}


def start_from(model: MMaDA, folder: Path, vq_folder: Path) -> None:
    """Load the weights of an exported model folder (``--init``): a continuation of a finished
    run under a new schedule. Only the weights carry over (a fresh optimizer, step 0); the folder
    must be of the same size and layout and paired with the same VQ tokenizer (its ``t2i.json``)."""
    from safetensors.torch import load_file

    meta = t2i_meta(folder)
    mine = meta.get("vq_encoder_sha256") or meta.get("vq_sha256")
    if mine not in (encoder_sha256(vq_folder), vq_sha256(vq_folder)):
        raise SystemExit(f"error: --init {folder} was trained with another VQ tokenizer than {vq_folder}")
    state = load_file(str(folder / "model.safetensors"))
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise SystemExit(f"error: --init {folder} does not fit this --size/--layout ({first})") from None
    print(f"initialised from {folder} (step {meta.get('step')})", flush=True)


def vq_sha256(folder: str | Path) -> str:
    return hashlib.sha256((Path(folder) / "model.safetensors").read_bytes()).hexdigest()


def encoder_sha256(folder: str | Path) -> str:
    """SHA-256 of the tokenizer's encoder and quantizer weights (names and bytes, in name order):
    all that decides an image's codes. An MDM is tied to this, not to the whole file: a tokenizer
    whose decoder was fine-tuned (``shapes_tokenizer --decoder_only``) gives every image the same
    codes, so the MDM trained on them still fits it."""
    from safetensors.torch import load_file

    h = hashlib.sha256()
    state = load_file(str(Path(folder) / "model.safetensors"))
    for k in sorted(k for k in state if k.startswith(("encoder.", "quantize."))):
        h.update(k.encode())
        h.update(state[k].contiguous().numpy().tobytes())
    return h.hexdigest()


def export(model: MMaDA, tok, out: Path, vq_folder: Path, step: int, max_text_len: int,
           init_step: int | None = None) -> Path:
    """Write ``OUT/model`` (and ``OUT/vq`` once). ``t2i.json`` records the run's step and, for a
    continuation (``--init``), the step of the model it started from (``init_step``)."""
    folder = out / "model"
    save_model(model, folder)
    tok.save_pretrained(str(folder))
    side = int(model.config.num_vq_tokens ** 0.5)
    meta = {"max_text_len": max_text_len, "image_tokens": model.config.num_vq_tokens, "grid": [side, side],
            "vq_sha256": vq_sha256(vq_folder), "vq_encoder_sha256": encoder_sha256(vq_folder), "step": step}
    if init_step is not None:
        meta["init_step"] = init_step
    (folder / "t2i.json").write_text(json.dumps(meta, indent=1) + "\n")
    if not (out / "vq").exists():
        shutil.copytree(vq_folder, out / "vq")
    return folder


def train(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    vq_folder = out / "vq" if (out / "vq").exists() else Path(args.vq)
    vq = load_magvitv2(vq_folder)
    n_img = (S.IMAGE_SIZE // vq.config.downsample) ** 2
    tok = char_tokenizer()
    model = build_model(model_config(args.size, vq.codebook_size, n_img, args.layout), seed=args.seed)
    assert isinstance(model, MMaDA)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    step = 0
    ckpt = out / "last.pt"
    if args.init and not ckpt.exists():
        start_from(model, Path(args.init), vq_folder)
    if ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        if state.get("vq_sha256") != vq_sha256(vq_folder):
            raise SystemExit(f"error: {ckpt} was trained with another VQ tokenizer than {vq_folder}")
        if state["args"].get("layout", "mmada") != args.layout or state["args"].get("decay", "constant") != args.decay:
            raise SystemExit(f"error: {ckpt} was trained with another --layout or --decay")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
        print(f"resumed from {ckpt} at step {step}", flush=True)
    print(f"mdm: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, {vq.codebook_size} codes, "
          f"{n_img} image tokens, text width {args.max_text_len + 1}", flush=True)

    init_step = t2i_meta(Path(args.init)).get("step") if args.init else None  # recorded in every export

    def save() -> None:
        tmp = out / "last.pt.tmp"
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "args": vars(args),
                    "vq_sha256": vq_sha256(vq_folder)}, tmp)
        tmp.replace(ckpt)
        export(model, tok, out, vq_folder, step, args.max_text_len, init_step)

    t0 = time.time()
    last_loss = float("nan")
    while step < args.steps:
        model.train()
        lr = learning_rate(args, step)
        for g in opt.param_groups:
            g["lr"] = lr
        captions, images = step_batch(args.seed, step, args.batch_size)
        codes = encode(vq, images)
        gen = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
        ids, mask, masked, start = training_rows(model, tok, captions, codes, gen, args.cond_dropout, args.max_text_len)
        loss = loss_of(model, ids, mask, masked, codes, start)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        last_loss = loss.item()
        if step % args.log_every == 0 or step == args.steps:
            rec = {"step": step, "loss": last_loss, "lr": lr, "seconds": round(time.time() - t0, 1)}
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")
            print(json.dumps(rec), flush=True)
        if step % args.save_every == 0 or step == args.steps:
            save()
    model.eval()
    return {"step": step, "loss": last_loss, "model": model}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m unmask.tasks.shapes_mdm", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="run folder: last.pt, log.jsonl, model/, vq/")
    p.add_argument("--vq", required=True, help="the MAGVIT-v2 tokenizer folder (copied to OUT/vq on first save)")
    p.add_argument("--size", choices=sorted(SIZES), default="tiny")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--decay", choices=("cosine", "constant"), default="cosine",
                   help="after the warm-up: cosine to 0 at --steps, or constant")
    p.add_argument("--layout", choices=("compact", "mmada"), default="compact",
                   help="vocabulary ids: compact (44 text rows) or MMaDA-8B's (126,464)")
    p.add_argument("--cond_dropout", type=float, default=0.1, help="probability of the empty caption (CFG)")
    p.add_argument("--max_text_len", type=int, default=MAX_TEXT_LEN)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log_every", type=int, default=50)
    p.add_argument("--save_every", type=int, default=250)
    p.add_argument("--init", default=None,
                   help="start from this exported model folder's weights (fresh optimizer, step 0): a "
                        "continuation under a new schedule; use another --seed for fresh scenes")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("steps", "batch_size", "warmup", "log_every", "save_every", "max_text_len"):
        if getattr(args, name) < 1:
            print(f"error: --{name} must be at least 1", file=sys.stderr)
            return 2
    if not 0.0 <= args.cond_dropout < 1.0:
        print("error: --cond_dropout must be in [0, 1)", file=sys.stderr)
        return 2
    if args.init and not (Path(args.init) / "model.safetensors").exists():
        print(f"error: --init {args.init} is not an exported model folder (no model.safetensors)", file=sys.stderr)
        return 2
    if not (Path(args.vq) / "config.json").exists() and not (Path(args.out) / "vq").exists():
        print(f"error: --vq {args.vq} is not a MAGVIT-v2 tokenizer folder (no config.json)", file=sys.stderr)
        return 2
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
