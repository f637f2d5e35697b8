"""Is tiny-shapes' failure binding or generalisation? The same sampler on seen and held-out captions.

    python benchmarks/shapes_seen_captions.py --sampler confidence --steps 8 --n 67

The case study scores held-out captions only: every position, colour-attribution, counting and
two-object caption there names a composition the model never saw in training (a colour-shape
pair, a relation triple, a number-shape pair or a shape pair). A low score there can mean two
different things: the model cannot bind attributes to objects at all, or it binds them for the
compositions it was trained on and does not generalise. This script separates the two: it draws
``--n`` training captions per category (each with its own seed, so a run is reproducible), has the
model draw them with the same sampler, steps, temperature and guidance, scores them with the same
GenEval rules, and prints the per-category table next to the held-out suite's first ``--n`` items
per category under the same settings. It also scores ground-truth renders of the tokenizer's
reconstructions of the training scenes (the ceiling), so each row reads against what the
tokenizer allows.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import numpy as np


def train_items(n: int, seed: int) -> list[dict]:
    """``n`` training captions per category, round-robin over categories, each with its own seed."""
    from unmask.tasks import shapes as S

    rng = random.Random(seed)
    per = [[dict(rng.choice(S.records("train", t)), seed=rng.randrange(2**31)) for _ in range(n)]
           for t in S.CATEGORIES]
    return [dict(it, index=i) for i, it in enumerate(it for group in zip(*per) for it in group)]


def draw(model, tok, vq, items, args, text_len) -> list[dict]:
    from unmask.multimodal.t2i import t2i
    from unmask.tasks.shapes_scorer import score_image

    rows = []
    for a in range(0, len(items), args.batch_size):
        chunk = items[a : a + args.batch_size]
        res = t2i(model, vq, [it["prompt"] for it in chunk], args.sampler, tokenizer=tok,
                  guidance_scale=args.guidance, steps=args.steps, seed=[it["seed"] for it in chunk],
                  max_text_len=text_len, temperature=args.temperature)
        rows += [score_image(img.numpy(), it) for it, img in zip(chunk, res.images)]
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="tiny-shapes")
    p.add_argument("--vq", default=None, help="MAGVIT-v2 folder (default: the model folder's vq/)")
    p.add_argument("--sampler", default="confidence")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--guidance", type=float, default=3.5)
    p.add_argument("--n", type=int, default=67, help="captions per category, each split")
    p.add_argument("--seed", type=int, default=4321)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--json", default=None, help="also write the summaries here")
    args = p.parse_args()

    import torch

    from unmask.eval.shapes_geneval import suite, wilson
    from unmask.multimodal.commands import load_pair, model_text_len
    from unmask.tasks import shapes as S
    from unmask.tasks.shapes_scorer import score_image, summarize
    from unmask.tasks.shapes_tokenizer import reconstruct

    torch.set_num_threads(1)
    model, tok, vq = load_pair(args.model, args.vq, "float32", "cpu")
    text_len = model_text_len(args.model)
    seen = train_items(args.n, args.seed)
    held = [it for it in suite() if it["index"] < 6 * args.n]  # the suite is round-robin: first n per category
    t0 = time.perf_counter()
    out = {"settings": vars(args)}
    for name, items in (("seen (training captions)", seen), ("held-out (test suite)", held)):
        out[name] = summarize(draw(model, tok, vq, items, args, text_len))
    recon = reconstruct(vq, np.stack([S.ground_truth(it) for it in seen]))  # the tokenizer load_pair loaded
    out["seen: tokenizer ceiling"] = summarize([score_image(r, it) for r, it in zip(recon, seen)])
    print(f"{args.model}, {args.sampler}, {args.steps} steps, T = {args.temperature:g}, w = {args.guidance:g}; "
          f"{args.n} captions per category ({time.perf_counter() - t0:.0f} s)\n")
    print("| captions | overall % (95% CI) | " + " | ".join(S.CATEGORIES) + " |")
    print("|" + "---|" * (2 + len(S.CATEGORIES)))
    for name in ("seen (training captions)", "held-out (test suite)", "seen: tokenizer ceiling"):
        s = out[name]
        cats = s["categories"]
        k = sum(c["correct"] for c in cats.values())
        lo, hi = wilson(k, s["images"])
        print(f"| {name} | {100 * s['overall']:.1f} ({100 * lo:.1f}-{100 * hi:.1f}) | "
              + " | ".join(f"{100 * cats[t]['accuracy']:.1f}" for t in S.CATEGORIES) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
