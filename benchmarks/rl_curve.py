"""Reward curve of an ``unmask rl`` run: a Markdown table of the metrics averaged over windows of
steps, and optionally a PNG (matplotlib).

    python benchmarks/rl_curve.py RUN_DIR [--window 10] [--png docs/rl_judge_curve.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--png", default=None)
    args = ap.parse_args()
    rows = [json.loads(ln) for ln in (Path(args.run) / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    keys = [k for k in ("reward", "reward_lr", "premature", "zero_adv_groups", "kl", "tau", "lr",
                                 "grad_norm") if k in rows[0]]
    print("| steps | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for lo in range(0, len(rows), args.window):
        chunk = rows[lo:lo + args.window]
        means = [sum(r[k] for r in chunk) / len(chunk) for k in keys]
        print(f"| {chunk[0]['step']}-{chunk[-1]['step']} | " + " | ".join(f"{m:.3g}" if k == "lr" else f"{m:.3f}"
                                                                     for k, m in zip(keys, means)) + " |")
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        steps = [r["step"] for r in rows]
        fig, ax = plt.subplots(figsize=(6, 3.2))
        for k in ("reward", "reward_lr", "premature"):
            if k in rows[0]:
                vals = [r[k] for r in rows]
                smooth = [sum(vals[max(0, i - args.window + 1):i + 1]) / len(vals[max(0, i - args.window + 1):i + 1])
                          for i in range(len(vals))]
                ax.plot(steps, smooth, label=f"{k} (mean of {args.window} steps)")
        ax.set_xlabel("GRPO step")
        top = max(max(r[k] for r in rows) for k in ("reward", "reward_lr", "premature") if k in rows[0])
        ax.set_ylim(-0.02, max(1.02, top * 1.02))  # a reward summing several scores can exceed 1
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)


if __name__ == "__main__":
    main()
