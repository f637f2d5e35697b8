"""Validate the tiny-shapes GenEval-style scorer on rendered ground truth (and reconstructions).

    python benchmarks/shapes_scorer_validation.py --n 500 [--tokenizer runs/shapes-tok/tokenizer]

Prints one Markdown table: per category, how often the scorer accepts the ground-truth scene of a
caption (must be >= 99%), and, as a control that it is not lenient, how often it accepts the same
scene under a different caption of the same category, drawn from both splits (the two orders of a
two-object caption count as the same caption; a few acceptances remain legitimate, e.g. a position
scene that also satisfies another relation diagonally). With ``--tokenizer`` it adds how
often the scorer's verdict on the tokenizer's reconstruction matches the original's.
"""

from __future__ import annotations

import argparse
import random

import numpy as np

from unmask.tasks import shapes as S
from unmask.tasks.shapes_scorer import by_class, check, detect, score_image, summarize


def _differs(a: dict, b: dict) -> bool:
    """Another caption, not the same two objects named in the other order."""
    key = lambda m: sorted(str(r) for r in m["include"])  # noqa: E731
    return a["prompt"] != b["prompt"] and not (a["tag"] == "two_object" and key(a) == key(b))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=500, help="test items per category")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--split", choices=["test", "train"], default="test")
    p.add_argument("--tokenizer", help="a tiny-shapes MAGVIT-v2 folder: also score its reconstructions")
    args = p.parse_args()

    if args.split == "test":
        items = S.eval_suite(args.n, args.seed)
    else:
        rng = random.Random(args.seed)
        items = [dict(rng.choice(S.records("train", t)), seed=rng.randrange(2**31))
                 for t in S.CATEGORIES for _ in range(args.n)]
    images = [S.ground_truth(it) for it in items]
    truth = [score_image(img, it) for img, it in zip(images, items)]

    rng = random.Random(args.seed + 1)
    wrong = []
    for img, it in zip(images, items):
        pool = [m for m in S.records("train", it["tag"]) + S.records("test", it["tag"]) if _differs(m, it)]
        wrong.append(score_image(img, rng.choice(pool)) if pool else None)

    recon_rows = None
    if args.tokenizer:
        from unmask.models.magvitv2 import load_magvitv2
        from unmask.tasks.shapes_tokenizer import reconstruct

        recon = reconstruct(load_magvitv2(args.tokenizer), np.stack(images))
        recon_rows = [score_image(r, it) for r, it in zip(recon, items)]
        err = (np.stack(images).astype(float) - recon.astype(float)) / 255.0
        print(f"reconstruction MSE (pixels in [0, 1]): {np.mean(err ** 2):.5f}")

    s = summarize(truth)
    head = "| category | ground truth accepted | other caption accepted |"
    sep = "|---|---|---|"
    if recon_rows:
        head += " reconstruction accepted | same verdict |"
        sep += "---|---|"
    print(f"{args.split} items, seed {args.seed}, {args.n} per category\n\n{head}\n{sep}")
    for tag in S.CATEGORIES:
        idx = [i for i, it in enumerate(items) if it["tag"] == tag]
        c = s["categories"][tag]
        w = [wrong[i]["correct"] for i in idx if wrong[i] is not None]
        row = f"| {tag} | {c['correct']}/{c['n']} ({c['accuracy']:.1%}) | {sum(w)}/{len(w)} |"
        if recon_rows:
            rc = sum(recon_rows[i]["correct"] for i in idx)
            same = sum(recon_rows[i]["correct"] == truth[i]["correct"] for i in idx)
            row += f" {rc}/{len(idx)} ({rc / len(idx):.1%}) | {same / len(idx):.1%} |"
        print(row)
    line = f"| overall (mean of categories) | {s['overall']:.1%} | |"
    if recon_rows:
        line += f" {summarize(recon_rows)['overall']:.1%} | |"
    print(line)
    if recon_rows:
        idx = [i for i, it in enumerate(items) if it["tag"] == "counting"]
        cells = []
        for thr in (0.9, 0.5, 0.3):
            ok = sum(check(items[i], by_class(detect(recon[i]), "counting", thr))[0] for i in idx)
            cells.append(f"{thr:g}: {ok}/{len(idx)}")
        print(f"\ncounting reconstructions accepted at detection confidence {', '.join(cells)} "
              "(diagnostic: GenEval's counting threshold is 0.9, the score keeps it)")


if __name__ == "__main__":
    main()
