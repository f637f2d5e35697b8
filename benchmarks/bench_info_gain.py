"""Info-Gain benchmark (issue 3): what the lookahead samplers cost and buy.

For every sampler setting: NFE (forward calls of the batch), forward rows (rows computed across
those calls; a lookahead over 8 candidates for 3 prompts is 1 NFE and 24 rows), wall and process
CPU time, and the mean cumulative entropy of the decoded tokens (sum over a row's tokens of the
entropy of the prediction it was taken from, averaged over prompts; lower = more certain path).

Settings: ``confidence`` (greedy, temperature 0); ``info_gain`` and ``lookum`` with N = 8
candidates, without and with the high-confidence bypass ``threshold=0.9``; ``info_gain`` with
``beam_size=2``; and ``best_of=8`` runs of ``confidence`` at temperature 1 (keep the run with the
lowest cumulative entropy), which computes about as many rows as Info-Gain: the equal-budget
baseline. The headline ratio is Info-Gain NFE / confidence NFE at equal steps (target <= 1.05):
Info-Gain reuses the winner's lookahead logits as the next step's logits, so a step should cost
one (batched) forward, like confidence.

Default model: random LLaDA, 4 layers, d_model 256, 4 heads, MLP hidden 688, vocabulary 8192,
fp32; 3 prompts of 16/24/32 random tokens in one left-padded batch; max_new_tokens 64, block 32,
steps 64 (one token per step), no KV cache. A random model predicts almost uniform distributions
(entropy ~ log V everywhere), so its entropy column says little about quality: pass ``--model``
with a trained model for that. With a synthetic-task model folder (``task.json``, e.g.
``tiny-sudoku``) the prompts are the task's test puzzles, decoded by infilling
(``max_new_tokens=0``, one token per step), and the table adds the task accuracy.

    python benchmarks/bench_info_gain.py --quick
    python benchmarks/bench_info_gain.py --profile --json bench_info_gain.json
    python benchmarks/bench_info_gain.py --model tiny-sudoku --prompts 8
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_line, md_table, median, random_llada, random_prompts, setup_torch, spread, sync  # noqa: E402

from unmask.decoding.engine import generate  # noqa: E402

RANDOM_MODEL = {"n_layers": 4, "d_model": 256, "n_heads": 4, "mlp_hidden": 688, "vocab": 8192}
PROMPT_LENGTHS = [16, 24, 32]

SETTINGS = [  # (label, sampler, options: sampler options and GenerationConfig overrides)
    ("confidence", "confidence", {}),
    ("info_gain N=8", "info_gain", {"candidate_number": 8}),
    ("info_gain N=8, threshold 0.9", "info_gain", {"candidate_number": 8, "threshold": 0.9}),
    ("lookum N=8", "lookum", {"candidate_number": 8}),
    ("lookum N=8, threshold 0.9", "lookum", {"candidate_number": 8, "threshold": 0.9}),
    ("info_gain N=8, beam 2", "info_gain", {"candidate_number": 8, "beam_size": 2}),
    ("confidence best_of=8, T=1", "confidence", {"best_of": 8, "temperature": 1.0}),
]


def load(args, device: torch.device):
    """(model, prompts, generation overrides, task, items, description)."""
    if args.model:
        from unmask.models import from_pretrained, resolve_model_path
        from unmask.tasks import task_from_json

        folder = resolve_model_path(args.model)
        model, _ = from_pretrained(str(folder), dtype=torch.float32, device=str(device))
        model.eval()
        c = model.config
        desc = (f"trained model {args.model} ({folder}): {c.n_layers} layers, d_model {c.d_model}, "
                f"vocab {c.vocab_size}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, fp32")
        if (folder / "task.json").exists():
            task = task_from_json(json.loads((folder / "task.json").read_text()))
            items = task.make_dataset(args.prompts, seed=args.seed)
            prompts = [task.prompt_ids(it) for it in items]
            n_masks = [p.count(c.mask_token_id) for p in prompts]
            desc += (f"; {len(prompts)} {task.name} test items (seed {args.seed}), infilling "
                     f"{min(n_masks)}-{max(n_masks)} masks each, one token per step")
            return model, prompts, {"max_new_tokens": 0}, task, items, desc
        specials = {c.mask_token_id, c.eos_token_id, getattr(c, "pad_token_id", None)}
        vocab = c.vocab_size
        g = torch.Generator().manual_seed(args.seed)
        prompts = []
        for i in range(args.prompts):
            ids = torch.randint(0, vocab, (PROMPT_LENGTHS[i % len(PROMPT_LENGTHS)],), generator=g).tolist()
            prompts.append([t if t not in specials else 0 for t in ids])
    else:
        m = RANDOM_MODEL
        model = random_llada(m["n_layers"], m["d_model"], m["n_heads"], m["mlp_hidden"], m["vocab"],
                             seed=args.seed).to(device)
        prompts = random_prompts(args.prompts, PROMPT_LENGTHS, m["vocab"], seed=args.seed + 1)
        desc = (f"random LLaDA, {m['n_layers']} layers, d_model {m['d_model']}, {m['n_heads']} heads, MLP hidden "
                f"{m['mlp_hidden']}, vocab {m['vocab']}, fp32 "
                f"({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters)")
    n = args.max_new_tokens
    desc += (f"; {len(prompts)} random-token prompts of {sorted({len(p) for p in prompts})} tokens in one batch, "
             f"max_new_tokens {n}, block {args.block}, steps {n}")
    return model, prompts, {"max_new_tokens": n, "block_size": args.block, "steps": n}, None, None, desc


def run_once(model, prompts, sampler: str, opts: dict[str, Any], base: dict[str, Any], device, task, items):
    sync(device)
    cpu0 = time.process_time()
    out = generate(model, prompts, sampler, **base, **opts)
    cpu = time.process_time() - cpu0
    res = {
        "nfe": out.nfe, "forward_rows": out.forward_rows, "seconds": out.seconds, "cpu_seconds": cpu,
        "mean_cumulative_entropy": sum(out.cumulative_entropy) / len(out.cumulative_entropy),
        "mean_tokens_decoded": sum(len(t.tokens) for t in out.traces) / len(out.traces),
        "lookahead_steps": sum(1 for t in out.traces for st in t.steps if st.kind == "lookahead"),
        "steps": sum(len(t.steps) for t in out.traces),
    }
    if task is not None:
        scores = [task.score(it, seq) for it, seq in zip(items, out.sequences)]
        res["accuracy"] = sum(s["correct"] for s in scores) / len(scores)
        if all("cell_accuracy" in s for s in scores):
            res["cell_accuracy"] = sum(s["cell_accuracy"] for s in scores) / len(scores)
    return res


def profile(model, prompts, base, device) -> str:
    """Process-CPU-time split of one run per sampler: model forwards, the engine's entropy
    computations (per-step views: [n, V]; lookahead H_next: [M, W, V]) and everything else."""
    import unmask.decoding.engine as engine_mod

    rows = []
    for label, sampler, opts in [SETTINGS[0], SETTINGS[1], SETTINGS[5], SETTINGS[6]]:
        acc = {"predict": 0.0, "view": 0.0, "lookahead": 0.0}

        def timed(fn, key_of, acc=acc):
            def wrapped(*a, **k):
                sync(device)
                t = time.process_time()
                try:
                    return fn(*a, **k)
                finally:
                    sync(device)
                    acc[key_of(*a)] += time.process_time() - t
            return wrapped

        orig = engine_mod.entropy_from_logits
        engine_mod.entropy_from_logits = timed(orig, lambda lg: "lookahead" if lg.dim() == 3 else "view")
        model.predict = timed(model.predict, lambda *a: "predict")
        try:
            t0 = time.process_time()
            out = generate(model, prompts, sampler, **base, **opts)
            total = time.process_time() - t0
        finally:
            engine_mod.entropy_from_logits = orig
            del model.predict  # back to the class method
        rest = total - sum(acc.values())
        rows.append([label, out.nfe, out.forward_rows, total] +
                    [f"{100 * v / total:.0f}%" for v in (acc["predict"], acc["view"], acc["lookahead"], rest)])
    return md_table(["setting", "NFE", "forward rows", "CPU s", "model forwards", "entropy in step views",
                     "entropy of lookahead (H_next)", "rest (engine, sampler, trace)"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 prompts, 32 new tokens, 1 repeat")
    ap.add_argument("--model", default=None, help="trained model folder or alias (default: the random model)")
    ap.add_argument("--prompts", type=int, default=None, help="prompts in the batch (default 3, quick 2)")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default 64, quick 32")
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--use-cache", default="none", choices=["none", "prefix", "dual"])
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per setting (default 3, quick 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--profile", action="store_true", help="add a CPU-time split (forwards / entropy / rest)")
    ap.add_argument("--json", metavar="PATH", help="also write every number to this JSON file")
    args = ap.parse_args()
    args.prompts = args.prompts or (2 if args.quick else 3)
    args.max_new_tokens = args.max_new_tokens or (32 if args.quick else 64)
    repeats = args.repeats or (1 if args.quick else 3)

    device = setup_torch(args.threads, args.device)
    model, prompts, base, task, items, desc = load(args, device)
    base = {**base, "use_cache": args.use_cache, "seed": args.seed}
    started = time.time()
    print("## bench_info_gain\n")
    print(f"Machine: {machine_line(args.threads, device)}.")
    print(f"Setup: {desc}; use_cache {args.use_cache}. NFE and entropies are deterministic; times are medians of "
          f"{repeats} interleaved run(s) (CPU-s = process CPU time, less sensitive to other jobs).\n", flush=True)
    generate(model, prompts[:1], "confidence", **{**base, "max_new_tokens": min(base["max_new_tokens"], 4),
                                                   "steps": None})  # warm-up

    results: dict[str, list[dict[str, Any]]] = {}
    for rep in range(repeats):
        for label, sampler, opts in SETTINGS:
            r = run_once(model, prompts, sampler, opts, base, device, task, items)
            results.setdefault(label, []).append(r)
            print(f"  [{time.time() - started:5.0f}s] rep {rep + 1}/{repeats} {label}: nfe {r['nfe']}, "
                  f"rows {r['forward_rows']}, {r['seconds']:.1f}s", file=sys.stderr, flush=True)

    ref = results["confidence"][0]
    rows, summary = [], []
    for label, sampler, opts in SETTINGS:
        rs = results[label]
        r0 = rs[0]
        row = [label, r0["nfe"], f"{r0['nfe'] / ref['nfe']:.3f}", r0["forward_rows"],
               f"{r0['forward_rows'] / ref['forward_rows']:.1f}", median(r["seconds"] for r in rs),
               spread([r["seconds"] for r in rs]), median(r["cpu_seconds"] for r in rs),
               f"{r0['mean_cumulative_entropy']:.3f}", f"{r0['lookahead_steps']}/{r0['steps']}"]
        if task is not None:
            row += [r0.get("accuracy"), r0.get("cell_accuracy")]
        rows.append(row)
        summary.append({"setting": label, "sampler": sampler, "options": opts,
                        "nfe_ratio_vs_confidence": r0["nfe"] / ref["nfe"], "runs": rs})
    headers = ["setting", "NFE", "NFE / confidence", "forward rows", "rows / confidence", "wall s (median)",
               "wall range", "CPU s (median)", "mean cumulative entropy (nats)", "lookahead steps / steps"]
    if task is not None:
        headers += ["solved", "cell accuracy"]
    print(md_table(headers, rows))
    ig = results["info_gain N=8"][0]["nfe"] / ref["nfe"]
    print(f"\nInfo-Gain NFE / confidence NFE = {ig:.3f} (target <= 1.05: {'met' if ig <= 1.05 else 'MISSED'})")
    prof = None
    if args.profile:
        prof = profile(model, prompts, base, device)
        print("\nWhere the CPU time goes (one extra run each, process CPU time):\n")
        print(prof)
    print(f"\n(total wall time {time.time() - started:.0f} s)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "machine": machine_line(args.threads, device), "setup": desc, "use_cache": args.use_cache,
            "repeats": repeats, "results": summary, "info_gain_nfe_ratio": ig, "profile": prof,
        }, indent=2, default=str))


if __name__ == "__main__":
    main()
