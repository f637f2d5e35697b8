"""Info-Gain benchmark (issues 3 and 16): what the lookahead samplers cost next to confidence decoding,
per KV-cache mode, in forwards, forward tokens and time.

For every sampler setting and cache mode: NFE (forward calls), forward rows (rows across those
calls; a lookahead over 8 candidates is 1 NFE and 8 rows), forward tokens (rows x query length
summed over the calls: the device-independent cost; a dual-cache step runs 32 query positions, a
no-cache step the whole canvas), the mean number of distinct candidates per lookahead step, wall
time, tokens/s and the mean cumulative entropy (sum over a row's decoded tokens of the entropy of
the prediction it was taken from; lower = more certain path), plus the task accuracy for the tiny
task models. Ratios are against ``confidence`` in the same cache mode, from the same run.

Settings (``--settings``, comma-separated labels; default the issue's four): ``confidence``
(greedy); ``info_gain`` (N = 8, position temperature 0.1); ``info_gain thr0.9`` (with the
high-confidence bypass at 0.9); ``lookum`` (N = 8); and the cheaper variants ``info_gain m0.1`` /
``m0.3`` / ``m0.5`` (``lookahead_margin``), ``info_gain N4``, ``info_gain beam2`` and
``confidence best_of8`` (temperature 1, the equal-budget baseline).

Default model: random LLaDA, 6 layers, d_model 512, 8 heads, MLP hidden 1376, vocabulary 32000,
fp32; one prompt of 24 random tokens; 256 new tokens, block 32, steps 256 (one token per step).
A random model predicts almost uniform distributions, so its entropies say little about quality.
With a task model folder (``task.json``, e.g. ``tiny-sudoku``) the prompts are the task's test
items, decoded by infilling, and the table adds the accuracy; ``--sudoku-half`` makes each Sudoku
prompt half a solved grid (its last 27 cells masked).

    python benchmarks/bench_info_gain.py --quick
    python benchmarks/bench_info_gain.py --use-cache dual --repeats 2 --json ig_dual.json
    python benchmarks/bench_info_gain.py --model tiny-sudoku --prompts 30 --threshold-everywhere
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

RANDOM_MODEL = {"n_layers": 6, "d_model": 512, "n_heads": 8, "mlp_hidden": 1376, "vocab": 32000}
PROMPT_LENGTHS = [24]

ALL_SETTINGS = {  # label -> (sampler, options: sampler options and GenerationConfig overrides)
    "confidence": ("confidence", {}),
    "info_gain": ("info_gain", {"candidate_number": 8}),
    "info_gain thr0.9": ("info_gain", {"candidate_number": 8, "threshold": 0.9}),
    "lookum": ("lookum", {"candidate_number": 8}),
    "info_gain m0.1": ("info_gain", {"candidate_number": 8, "lookahead_margin": 0.1}),
    "info_gain m0.3": ("info_gain", {"candidate_number": 8, "lookahead_margin": 0.3}),
    "info_gain m0.5": ("info_gain", {"candidate_number": 8, "lookahead_margin": 0.5}),
    "info_gain N4": ("info_gain", {"candidate_number": 4}),
    "info_gain beam2": ("info_gain", {"candidate_number": 8, "beam_size": 2}),
    "confidence best_of8": ("confidence", {"best_of": 8, "temperature": 1.0}),
}
DEFAULT_SETTINGS = "confidence,info_gain,info_gain thr0.9,lookum"

# GPU estimate (not a measurement): an 8B model in bf16 on one H200-class GPU. A forward reads the
# weights once (memory-bound floor) and does 2 x params FLOPs per query token (compute-bound).
GPU_PARAMS = 8e9
GPU_BANDWIDTH = 4.8e12  # bytes/s
GPU_FLOPS = 0.6 * 989e12  # dense bf16 at 60% utilisation
GPU_MS_PER_FORWARD = 2 * GPU_PARAMS / GPU_BANDWIDTH * 1e3  # weights read once: ~3.3 ms
GPU_MS_PER_TOKEN = 2 * GPU_PARAMS / GPU_FLOPS * 1e3  # ~0.027 ms; the two meet at ~120 tokens


def gpu_estimate_ms(nfe: int, forward_tokens: int) -> float:
    """Estimated 8B decode time from the measured counts: every forward costs the larger of the
    weight-read floor and its compute (query tokens taken as the run's mean per forward)."""
    if nfe == 0:
        return 0.0
    return nfe * max(GPU_MS_PER_FORWARD, forward_tokens / nfe * GPU_MS_PER_TOKEN)


def sudoku_half_items(task, n: int, seed: int) -> list[dict[str, Any]]:
    """Half a solved grid: the test items' solutions with the last 27 cells blanked."""
    from unmask.tasks.sudoku import grid_to_text, parse_grid

    items = []
    for it in task.make_dataset(n, seed=seed):
        sol = parse_grid(it["solution"])
        items.append({"puzzle": grid_to_text(sol[:54] + [0] * 27), "solution": it["solution"]})
    return items


def load(args, device: torch.device):
    """(model, prompts, generation overrides, task, items, description)."""
    if args.model:
        from unmask.models import from_pretrained, resolve_model_path
        from unmask.tasks import task_from_json

        folder = resolve_model_path(args.model)
        model, _ = from_pretrained(str(folder), dtype=torch.float32, device=str(device))
        model.eval()
        c = model.config
        desc = (f"trained model {args.model}: {c.n_layers} layers, d_model {c.d_model}, vocab {c.vocab_size}, "
                f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, fp32")
        if not (folder / "task.json").exists():
            raise SystemExit(f"{args.model} has no task.json: pass a task model or no --model")
        task = task_from_json(json.loads((folder / "task.json").read_text()))
        if args.sudoku_half:
            items = sudoku_half_items(task, args.prompts, args.seed)
            what = "half solved grids (last 27 cells masked)"
        else:
            items = task.make_dataset(args.prompts, seed=args.seed)
            what = f"{task.name} test items"
        prompts = [task.prompt_ids(it) for it in items]
        n_masks = [p.count(c.mask_token_id) for p in prompts]
        desc += (f"; {len(prompts)} {what} (seed {args.seed}) in one batch, infilling "
                 f"{min(n_masks)}-{max(n_masks)} masks each, one token per step, temperature {args.temperature}")
        base = {"max_new_tokens": 0, "stop_at_eos": False, "temperature": args.temperature,
                "suppress_token_ids": tuple(task.suppressed_ids())}
        return model, prompts, base, task, items, desc
    m = RANDOM_MODEL
    model = random_llada(m["n_layers"], m["d_model"], m["n_heads"], m["mlp_hidden"], m["vocab"], seed=args.seed).to(device)
    prompts = random_prompts(args.prompts, PROMPT_LENGTHS, m["vocab"], seed=args.seed + 1)
    n = args.max_new_tokens
    desc = (f"random LLaDA, {m['n_layers']} layers, d_model {m['d_model']}, {m['n_heads']} heads, MLP hidden "
            f"{m['mlp_hidden']}, vocab {m['vocab']}, fp32 ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M "
            f"parameters); {len(prompts)} random-token prompt(s) of {sorted({len(p) for p in prompts})} tokens, "
            f"max_new_tokens {n}, block {args.block}, steps {n}")
    base = {"max_new_tokens": n, "block_size": args.block, "steps": n, "stop_at_eos": False}
    return model, prompts, base, None, None, desc


def run_once(model, prompts, sampler: str, opts: dict[str, Any], base: dict[str, Any], device, task, items):
    sync(device)
    out = generate(model, prompts, sampler, **{**base, **opts})
    sync(device)
    look = [st for t in out.traces for st in t.steps if st.kind == "lookahead"]
    res = {
        "nfe": out.nfe, "forward_rows": out.forward_rows, "forward_tokens": out.forward_tokens,
        "seconds": out.seconds, "tokens_per_second": out.tokens_per_second,
        "mean_cumulative_entropy": sum(out.cumulative_entropy) / len(out.cumulative_entropy),
        "lookahead_steps": len(look), "steps": sum(len(t.steps) for t in out.traces),
        "distinct_candidates": (sum(len(st.info["J"]) for st in look) / len(look)) if look else 0.0,
    }
    if task is not None:
        scores = [task.score(it, task.parse(seq)) for it, seq in zip(items, out.sequences)]
        res["accuracy"] = sum(s["correct"] for s in scores) / len(scores)
    return res


def profile(model, prompts, base, device, cache: str) -> str:
    """Process-CPU-time split of one Info-Gain run: model forwards, the entropy computations
    (per-step views and lookahead H_next) and everything else."""
    import unmask.decoding.engine as engine_mod

    acc = {"predict": 0.0, "entropy": 0.0}

    def timed(fn, key):
        def wrapped(*a, **k):
            sync(device)
            t = time.process_time()
            try:
                return fn(*a, **k)
            finally:
                sync(device)
                acc[key] += time.process_time() - t
        return wrapped

    orig = engine_mod.entropy_from_logits
    engine_mod.entropy_from_logits = timed(orig, "entropy")
    model.predict = timed(model.predict, "predict")
    try:
        t0 = time.process_time()
        out = generate(model, prompts, "info_gain", **{**base, "use_cache": cache, "candidate_number": 8})
        total = time.process_time() - t0
    finally:
        engine_mod.entropy_from_logits = orig
        del model.predict
    rest = total - sum(acc.values())
    return md_table(["setting", "use_cache", "NFE", "forward tokens", "CPU s", "model forwards", "entropies",
                     "rest (engine, sampler, trace)"],
                    [["info_gain", cache, out.nfe, out.forward_tokens, total,
                      *(f"{100 * v / total:.0f}%" for v in (acc["predict"], acc["entropy"], rest))]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="32 new tokens, 1 repeat")
    ap.add_argument("--model", default=None, help="task model folder or alias (default: the random model)")
    ap.add_argument("--prompts", type=int, default=None, help="prompts in the batch (default 1; task models 8)")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default 256, quick 32")
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--use-cache", default="none,prefix,dual", help="comma-separated cache modes")
    ap.add_argument("--settings", default=DEFAULT_SETTINGS, help=f"comma-separated of: {', '.join(ALL_SETTINGS)}")
    ap.add_argument("--threshold-everywhere", action="store_true",
                    help="pass threshold 0.9 to every setting (the issue's tiny-sudoku comparison)")
    ap.add_argument("--sudoku-half", action="store_true", help="tiny-sudoku prompts: half a solved grid")
    ap.add_argument("--temperature", type=float, default=0.0, help="token temperature (task models)")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per setting (default 2, quick 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--profile", action="store_true", help="add a CPU-time split of one Info-Gain run per cache mode")
    ap.add_argument("--json", metavar="PATH", help="also write every number to this JSON file")
    args = ap.parse_args()
    args.prompts = args.prompts or (8 if args.model else 1)
    args.max_new_tokens = args.max_new_tokens or (32 if args.quick else 256)
    repeats = args.repeats or (1 if args.quick else 2)
    caches = [c.strip() for c in args.use_cache.split(",") if c.strip()]
    labels = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [s for s in labels if s not in ALL_SETTINGS]
    if unknown:
        raise SystemExit(f"unknown settings {unknown}; choose from {list(ALL_SETTINGS)}")
    if "confidence" not in labels:
        labels.insert(0, "confidence")  # the reference of every ratio

    device = setup_torch(args.threads, args.device)
    model, prompts, base, task, items, desc = load(args, device)
    base = {**base, "seed": args.seed}
    extra = {"threshold": 0.9} if args.threshold_everywhere else {}
    started = time.time()
    print("## bench_info_gain\n")
    print(f"Machine: {machine_line(args.threads, device)}.")
    print(f"Setup: {desc}; cache modes {', '.join(caches)}{'; threshold 0.9 for every setting' if extra else ''}. "
          f"NFE, forward tokens and entropies are deterministic; wall times are medians of {repeats} interleaved "
          f"run(s) (A, B, A, B), ratios against confidence from the same run.\n", flush=True)
    warm = {**base, "max_new_tokens": min(base["max_new_tokens"], 4)} if base["max_new_tokens"] else base
    generate(model, prompts[:1], "confidence", **{**warm, "steps": None})  # warm-up

    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rep in range(repeats):
        for cache in caches:
            for label in labels:
                sampler, opts = ALL_SETTINGS[label]
                r = run_once(model, prompts, sampler, {**opts, **extra, "use_cache": cache}, base, device, task, items)
                results.setdefault((cache, label), []).append(r)
                print(f"  [{time.time() - started:5.0f}s] rep {rep + 1}/{repeats} {cache} {label}: nfe {r['nfe']}, "
                      f"tokens {r['forward_tokens']}, {r['seconds']:.1f}s", file=sys.stderr, flush=True)

    rows, summary, targets = [], [], []
    for cache in caches:
        ref = results[(cache, "confidence")]
        ref_wall = median(r["seconds"] for r in ref)
        ref_gpu = gpu_estimate_ms(ref[0]["nfe"], ref[0]["forward_tokens"])
        for label in labels:
            rs = results[(cache, label)]
            r0 = rs[0]
            wall = median(r["seconds"] for r in rs)
            ft_ratio = r0["forward_tokens"] / ref[0]["forward_tokens"]
            row = [label, cache, r0["nfe"], r0["forward_rows"], r0["forward_tokens"], f"{ft_ratio:.2f}",
                   f"{r0['distinct_candidates']:.2f}", f"{r0['lookahead_steps']}/{r0['steps']}", wall,
                   spread([r["seconds"] for r in rs]), f"{wall / ref_wall:.2f}",
                   median(r["tokens_per_second"] for r in rs), f"{r0['mean_cumulative_entropy']:.3f}",
                   f"{gpu_estimate_ms(r0['nfe'], r0['forward_tokens']) / ref_gpu:.2f}"]
            if task is not None:
                row.append(f"{100 * r0['accuracy']:.1f}%")
            rows.append(row)
            summary.append({"setting": label, "use_cache": cache, "options": ALL_SETTINGS[label][1],
                            "forward_tokens_ratio": ft_ratio, "wall_ratio": wall / ref_wall, "runs": rs})
            if label != "confidence" and r0["lookahead_steps"]:
                bound = r0["distinct_candidates"] + 0.5
                targets.append(f"- {cache}, {label}: forward tokens / confidence = {ft_ratio:.2f} "
                               f"(target <= distinct candidates per lookahead step + 0.5 = {bound:.2f}: "
                               f"{'met' if ft_ratio <= bound else 'MISSED'}); wall / confidence = {wall / ref_wall:.2f}")
    headers = ["setting", "use_cache", "NFE", "forward rows", "forward tokens", "tokens / confidence",
               "distinct candidates per lookahead", "lookahead steps / steps", "wall s (median)", "wall range",
               "wall / confidence", "tokens/s", "mean cumulative entropy (nats)", "est. 8B GPU time / confidence"]
    if task is not None:
        headers.append("accuracy")
    print(md_table(headers, rows))
    if targets:
        print("\nTargets (ratios against confidence in the same cache mode):\n")
        print("\n".join(targets))
    print(f"\nThe last column is an estimate, not a measurement: an 8B bf16 model on one H200-class GPU, each "
          f"forward max({GPU_MS_PER_FORWARD:.1f} ms weight read, {GPU_MS_PER_TOKEN * 1000:.0f} us x query tokens), "
          f"query tokens = forward tokens / NFE of the run.")
    prof = None
    if args.profile:
        prof = "\n\n".join(profile(model, prompts, base, device, c) for c in caches)
        print("\nWhere the CPU time of one Info-Gain run goes (process CPU time):\n")
        print(prof)
    print(f"\n(total wall time {time.time() - started:.0f} s)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "machine": machine_line(args.threads, device), "setup": desc, "caches": caches, "repeats": repeats,
            "results": summary, "profile": prof,
        }, indent=2, default=str))


if __name__ == "__main__":
    main()
