"""Train the tiny MAGVIT-v2 tokenizer of ``tiny-shapes`` on rendered scenes (CPU, resumable).

``python -m unmask.tasks.shapes_tokenizer --out runs/shapes-tok --steps 20000``

The tokenizer is :class:`unmask.models.magvitv2.MAGVITv2` with tiny sizes (:data:`TINY_CONFIG`): two
downsamplings take a 32x32 scene to an 8x8 grid, so an image is 64 tokens, and 10 LFQ bits give a
1024-code codebook; 16 base channels (0.59M parameters) train at about a second per batch of 16
on a busy shared CPU core. Why these: a 4x4-pixel patch of a flat-coloured scene holds the background, one
of eight colours, or an edge between them, so a thousand codes cover it with room, and the MDM's
vocabulary stays small. The loss is the reference's: pixel reconstruction (mean squared error) plus
the quantizer's commitment and entropy terms, as :meth:`MAGVITv2.forward` returns them. No GAN or
perceptual loss: the scenes are flat colours, and the scorer only needs colours and outlines.

Decoder fine-tuning (``--init FOLDER --decoder_only``). LFQ has no learned codebook: an image's
codes are the signs of the encoder's output, so training the decoder alone leaves every code as it
was, and an MDM trained on those codes still fits the new tokenizer (``shapes_mdm`` ties a model
to the encoder's weights by checksum, not to the whole file). ``--palette_weight`` adds a
per-pixel cross entropy over the scene palette (:func:`palette_ce`), the quantity the scorer
reads. That is how the shipped ``tiny-shapes/vq`` was sharpened after its MDM was trained.

Batches are a pure function of ``(seed, step)`` (see :func:`batch`), so a resumed run draws the
same images as an uninterrupted one. A checkpoint (``last.pt``: weights, optimizer, step) is
written every ``--save_every`` steps and at the end, plus the tokenizer folder itself
(``config.json`` + ``model.safetensors``, loadable with :func:`load_magvitv2`); rerunning the same
command resumes from ``last.pt``. Each evaluation appends a JSON line to ``log.jsonl`` with the
reconstruction error on held-out test scenes and, when the scorer is importable, how often the
scorer reads a reconstruction the same as its original (:func:`reconstruction_report`).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models.magvitv2 import MAGVITv2, MAGVITv2Config, load_magvitv2, save_magvitv2
from . import shapes as S

TINY_CONFIG: dict[str, Any] = dict(
    ch=16, ch_mult=[1, 2, 4], num_res_blocks=[1, 1, 1], dec_ch_mult=[1, 2, 4], dec_num_res_blocks=[1, 1, 1],
    attn_resolutions=[], resolution=S.IMAGE_SIZE, codebook_bits=10, norm_groups=8,
)


def to_pixels(images: np.ndarray) -> torch.Tensor:
    """``[B, H, W, 3]`` uint8 -> ``[B, 3, H, W]`` float in [-1, 1], the tokenizer's input range."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_images(pixels: torch.Tensor) -> np.ndarray:
    """The inverse of :func:`to_pixels`, clamped and rounded to uint8."""
    return pixels.clamp(-1, 1).add(1).mul(127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def batch(seed: int, step: int, n: int) -> np.ndarray:
    """The ``n`` training images of one step: training-caption scenes drawn from ``(seed, step)``."""
    rng = random.Random(seed * 1_000_003 + step)
    pools = {tag: S.records("train", tag) for tag in S.CATEGORIES}
    out = []
    for _ in range(n):
        meta = rng.choice(pools[rng.choice(S.CATEGORIES)])
        out.append(S.render(S.sample_scene(meta, rng)))
    return np.stack(out)


_BG = torch.tensor(S.BACKGROUND, dtype=torch.float32).div(127.5).sub(1.0).view(1, 3, 1, 1)


def weighted_mse(recon: torch.Tensor, x: torch.Tensor, fg_weight: float) -> torch.Tensor:
    """Squared error with object pixels (those that differ from the background colour) weighted
    ``1 + fg_weight``, normalised by the mean weight so the scale matches plain MSE."""
    fg = ((x - _BG).abs().amax(1, keepdim=True) > 1e-3).float()
    w = 1.0 + fg_weight * fg
    return (((recon - x) ** 2) * w).mean() / w.mean()


_PALETTE = torch.tensor(S.PALETTE, dtype=torch.float32).div(127.5).sub(1.0)  # in the pixel range [-1, 1]


def palette_ce(recon: torch.Tensor, x: torch.Tensor, tau: float = 0.05) -> torch.Tensor:
    """Cross entropy of each pixel's palette label under logits ``-|rgb - colour|^2 / tau``.

    The scorer reads a pixel as its nearest palette colour, so a reconstruction is right where
    every pixel is nearer its true colour than any other. Squared error keeps pulling a pixel that
    is already on the right side of that boundary and barely pushes one that is just across it
    (an edge pixel of a small object, the pixels GenEval's strict counting threshold reads);
    this term does the opposite. Targets are exact: rendered scenes hold palette colours only."""
    pal = _PALETTE.to(recon.device)
    target = ((x[:, None] - pal[None, :, :, None, None]) ** 2).sum(2).argmin(1)  # [B, H, W]
    logits = -((recon[:, None] - pal[None, :, :, None, None]) ** 2).sum(2) / tau  # [B, K, H, W]
    return torch.nn.functional.cross_entropy(logits, target)


@torch.no_grad()
def reconstruct(model: MAGVITv2, images: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Encode to codes and decode back: what the MDM's images go through."""
    model.eval()
    outs = []
    for i in range(0, len(images), chunk):
        codes = model.encode(to_pixels(images[i : i + chunk]))
        outs.append(to_images(model.decode(codes)))
    return np.concatenate(outs)


def reconstruction_report(model: MAGVITv2, n_per_category: int = 50, seed: int = 1234) -> dict[str, Any]:
    """Reconstruction error and scorer agreement on the held-out test suite's ground-truth scenes.

    ``mse`` is over pixels scaled to [0, 1]; ``scorer_same`` is the fraction of images whose GenEval
    verdict (correct or not) is the same for the reconstruction as for the original, and
    ``scorer_correct`` the fraction of reconstructions the scorer accepts, per category too."""
    items = S.eval_suite(n_per_category, seed)
    originals = np.stack([S.ground_truth(it) for it in items])
    recon = reconstruct(model, originals)
    err = (originals.astype(np.float64) - recon.astype(np.float64)) / 255.0
    report: dict[str, Any] = {"n": len(items), "mse": float(np.mean(err**2)),
                              "psnr": float(10 * np.log10(1.0 / max(np.mean(err**2), 1e-12)))}
    try:
        from .shapes_scorer import score_image
    except ImportError:  # the scorer module is optional here so the trainer runs on its own
        return report
    same, correct, per = 0, 0, {t: [0, 0] for t in S.CATEGORIES}
    for it, a, b in zip(items, originals, recon):
        ra, rb = score_image(a, it)["correct"], score_image(b, it)["correct"]
        same += ra == rb
        correct += rb
        per[it["tag"]][0] += rb
        per[it["tag"]][1] += 1
    report.update(scorer_same=same / len(items), scorer_correct=correct / len(items),
                  scorer_correct_by_category={t: c / n for t, (c, n) in per.items()})
    return report


def train(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    model = MAGVITv2(MAGVITv2Config(**TINY_CONFIG))
    ckpt = out / "last.pt"
    if args.init and not ckpt.exists():
        model.load_state_dict(load_magvitv2(args.init).state_dict())
        print(f"initialised from {args.init}", flush=True)
    trained = model.decoder.parameters() if args.decoder_only else model.parameters()
    if args.decoder_only:  # the encoder and quantizer stay as they are: every image keeps its codes
        model.encoder.requires_grad_(False)
        model.quantize.requires_grad_(False)
    opt = torch.optim.Adam(trained, lr=args.lr, betas=(0.9, 0.99))
    step = 0
    if ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
        print(f"resumed from {ckpt} at step {step}", flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"tokenizer: {n_params / 1e6:.3f}M parameters, {model.config.codebook_size} codes, "
          f"{(S.IMAGE_SIZE // model.config.downsample) ** 2} tokens per image", flush=True)

    def save() -> None:
        tmp = out / "last.pt.tmp"
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "args": vars(args)}, tmp)
        tmp.replace(ckpt)
        save_magvitv2(model, out / "tokenizer")

    t0 = time.time()
    while step < args.steps:
        model.train()
        lr = args.lr * min(1.0, (step + 1) / args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        x = to_pixels(batch(args.seed, step, args.batch_size))
        if args.decoder_only:
            model.encoder.eval()  # frozen: its codes are the ones the MDM was trained on
            with torch.no_grad():
                z = model.quantize.vectors_of(model.encode(x), model.grid(*x.shape[-2:]))
            zero = torch.zeros(())
            res = {"reconstruction": model.decoder(z), "commit_loss": zero, "entropy_loss": zero}
        else:
            res = model(x)
        rec = weighted_mse(res["reconstruction"], x, args.fg_weight)
        loss = rec + res["commit_loss"] + res["entropy_loss"]
        if args.palette_weight:
            loss = loss + args.palette_weight * palette_ce(res["reconstruction"], x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % args.log_every == 0:
            print(f"step {step} loss {loss.item():.4f} rec {rec.item():.4f} commit {res['commit_loss'].item():.4f} "
                  f"entropy {res['entropy_loss'].item():.4f} lr {lr:.2e} {time.time() - t0:.0f}s", flush=True)
        if step % args.save_every == 0 or step == args.steps:
            save()
        if step % args.eval_every == 0 or step == args.steps:
            rep = reconstruction_report(model, args.eval_n)
            rep["step"] = step
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(rep) + "\n")
            print("eval " + json.dumps(rep), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m unmask.tasks.shapes_tokenizer", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="run folder: last.pt, tokenizer/, log.jsonl")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--fg_weight", type=float, default=4.0, help="extra squared-error weight of object pixels")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log_every", type=int, default=50)
    p.add_argument("--save_every", type=int, default=250)
    p.add_argument("--eval_every", type=int, default=1000)
    p.add_argument("--eval_n", type=int, default=50, help="held-out scenes per category in each evaluation")
    p.add_argument("--init", metavar="FOLDER", help="start from this tokenizer folder's weights (fresh optimizer)")
    p.add_argument("--decoder_only", action="store_true",
                   help="train the decoder only (needs --init): codes stay exactly as they were, so an MDM "
                        "trained on them still fits")
    p.add_argument("--palette_weight", type=float, default=0.0,
                   help="weight of the per-pixel palette cross entropy (0: the reference's loss only)")
    p.add_argument("--report", metavar="FOLDER", help="only print the reconstruction report of a tokenizer folder")
    args = p.parse_args(argv)
    for name in ("steps", "batch_size", "warmup", "log_every", "save_every", "eval_every", "eval_n"):
        if getattr(args, name) < 1:
            print(f"error: --{name} must be at least 1", file=sys.stderr)
            return 2
    if args.decoder_only and not args.init:
        print("error: --decoder_only needs --init (the tokenizer whose codes to keep)", file=sys.stderr)
        return 2
    if args.palette_weight < 0:
        print("error: --palette_weight must be >= 0", file=sys.stderr)
        return 2
    if args.report:
        print(json.dumps(reconstruction_report(load_magvitv2(args.report), args.eval_n), indent=1))
        return 0
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
