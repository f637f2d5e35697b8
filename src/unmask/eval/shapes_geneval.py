"""``unmask eval --task shapes_geneval``: the tiny-shapes text-to-image evaluation, GenEval-style.

The model draws one image per held-out test item (:func:`unmask.tasks.shapes.eval_suite`, the
item's own seed) through :func:`unmask.multimodal.t2i.t2i` with any sampler, and the programmatic
detector of :mod:`unmask.tasks.shapes_scorer` checks it as GenEval would. The run folder::

    OUT/shapes_geneval-<model>-<sampler>-s<steps>-w<guidance>/
        run.json        the settings; a resumed run must match them
        images/00000.png
        results.jsonl   one row per item: GenEval's columns plus index, nfe, model_rows, seconds
        summary.json    accuracy per category, overall (their mean), 95% intervals, cost

Items are ordered round-robin over the six categories, so ``--limit N`` keeps the categories
balanced. Resumable like every eval: items already in ``results.jsonl`` are skipped, and since each
item's image depends only on its own seed (each row of a t2i batch has its own random stream),
a resumed run writes what an uninterrupted one would, whatever the batch size.

The text width of the prompt layout comes from the model folder's ``t2i.json`` (written by the
tiny-shapes trainer) and defaults to MMaDA's 512; the VQ tokenizer defaults to the model folder's
``vq/`` (``tiny-shapes`` ships one). Tokens are drawn at temperature 1 (the reference) unless
``--temperature`` is given (0 = argmax; the folder name then ends in ``-t<T>``). Cost per item:
``nfe`` (decoding steps), ``model_rows`` (rows through the network, guidance and lookahead rows
included) and ``forward_tokens`` (those rows times the row length).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UnmaskError

TASK = "shapes_geneval"
DEFAULT_N_PER_CATEGORY = 67  # 6 x 67 = 402 >= 400 held-out prompts
DEFAULT_STEPS = 16


def suite(n_per_category: int = DEFAULT_N_PER_CATEGORY, seed: int = 1234) -> list[dict[str, Any]]:
    """The held-out items, round-robin over the categories (index renumbered in that order)."""
    from ..tasks import shapes as S

    items = S.eval_suite(n_per_category, seed)
    by_tag = [[it for it in items if it["tag"] == t] for t in S.CATEGORIES]
    out = [it for group in zip(*by_tag) for it in group]
    return [dict(it, index=i) for i, it in enumerate(out)]


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def summarize(rows: list[dict[str, Any]], n_expected: int, settings: dict[str, Any]) -> dict[str, Any]:
    from ..tasks.shapes_scorer import summarize as geneval_summary

    s = geneval_summary(rows)
    for c in s["categories"].values():
        c["ci95"] = list(wilson(c["correct"], c["n"]))
    return {"task": TASK, **settings, "n": len(rows), "n_expected": n_expected, "complete": len(rows) == n_expected,
            "overall": s["overall"], "categories": s["categories"],
            "mean_nfe": float(np.mean([r["nfe"] for r in rows])) if rows else 0.0,
            "mean_model_rows": float(np.mean([r["model_rows"] for r in rows])) if rows else 0.0,
            "mean_forward_tokens": float(np.mean([r.get("forward_tokens", 0.0) for r in rows])) if rows else 0.0,
            "wall_seconds": float(sum(r["seconds"] for r in rows))}


def _temperature(args: argparse.Namespace) -> float:
    """``--temperature`` when given (flag, config or preset); else the reference's 1.0, not the
    text commands' table default of 0."""
    src = (getattr(args, "option_sources", None) or {}).get("temperature", "flag")
    value = getattr(args, "temperature", None)
    return 1.0 if value is None or src == "default" else float(value)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..cli import resolve_device, sampler_options
    from ..multimodal.commands import default_vq_path, load_pair, model_text_len
    from ..multimodal.images import save_image
    from ..multimodal.t2i import DEFAULT_GUIDANCE, t2i
    from ..tasks.shapes_scorer import score_image

    vq_path = getattr(args, "vq_model_path", None) or default_vq_path(args.model_name_or_path)
    if not vq_path:
        raise UnmaskError("--task shapes_geneval needs --vq_model_path (the MAGVIT-v2 folder the model was trained with)")
    if args.data:
        raise UnmaskError("--task shapes_geneval draws its held-out prompts itself; --data is not used")
    steps = getattr(args, "steps", None) or DEFAULT_STEPS
    guidance = DEFAULT_GUIDANCE if args.guidance_scale is None else float(args.guidance_scale)
    sampler = args.sampler or "maskgit"
    opts = sampler_options(args)
    temperature = _temperature(args)
    items = suite()
    if args.limit is not None:
        items = items[: args.limit]
    device = resolve_device(args.device)
    model, tok, vq = load_pair(args.model_name_or_path, vq_path, args.dtype, device)
    text_len = model_text_len(args.model_name_or_path)
    settings = {"model": str(args.model_name_or_path), "vq": str(vq_path), "sampler": sampler,
                "sampler_options": opts, "steps": steps, "guidance_scale": guidance, "max_text_len": text_len,
                "temperature": temperature}
    name = Path(str(args.model_name_or_path).rstrip("/")).name or "model"
    tag = "" if temperature == 1.0 else f"-t{temperature:g}"
    out = Path(args.output_dir) / f"{TASK}-{name}-{sampler}-s{steps}-w{guidance:g}{tag}"
    (out / "images").mkdir(parents=True, exist_ok=True)
    run_file = out / "run.json"
    if run_file.exists():
        old = json.loads(run_file.read_text())
        if old != settings:
            diff = sorted(k for k in settings if old.get(k) != settings[k])
            raise UnmaskError(f"{out} holds a run with other settings ({', '.join(diff)}); use another --output_dir")
    else:
        run_file.write_text(json.dumps(settings, indent=1) + "\n")
    results = out / "results.jsonl"
    rows: list[dict[str, Any]] = []
    if results.exists():
        for line in results.read_text().splitlines():
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    break  # a line cut by a kill: that item is redone
    done = {r["index"] for r in rows}
    todo = [it for it in items if it["index"] not in done]
    bs = max(1, int(args.batch_size or 8))
    for a in range(0, len(todo), bs):
        chunk = todo[a : a + bs]
        t0 = time.perf_counter()
        res = t2i(model, vq, [it["prompt"] for it in chunk], sampler, tokenizer=tok, guidance_scale=guidance,
                  steps=steps, seed=[it["seed"] for it in chunk], max_text_len=text_len, sampler_options=opts,
                  temperature=temperature)
        secs = (time.perf_counter() - t0) / len(chunk)
        row_len = text_len + 3 + int(res.codes.shape[1])  # text part + <|soi|> codes <|eoi|>
        new = []
        for it, img, trace in zip(chunk, res.images, res.traces):
            path = out / "images" / f"{it['index']:05}.png"
            save_image(img, path)
            row = score_image(img.numpy(), it)
            new.append({"index": it["index"], **row, "filename": str(path.relative_to(out)), "seed": it["seed"],
                        "nfe": len(trace), "model_rows": res.model_rows / len(chunk),
                        "forward_tokens": res.model_rows * row_len / len(chunk), "seconds": secs})
        with open(results, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in new)
        rows.extend(new)
        if not args.json:
            print(f"{len(rows)}/{len(items)} images", flush=True)
    keep = {it["index"] for it in items}
    summary = summarize(sorted((r for r in rows if r["index"] in keep), key=lambda r: r["index"]), len(items), settings)
    summary["run_dir"] = str(out)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def format_summary(s: dict[str, Any]) -> str:
    lines = [f"{TASK}  model={s['model']}  sampler={s['sampler']}  steps={s['steps']}  w={s['guidance_scale']:g}  "
             f"n={s['n']}/{s['n_expected']}" + ("" if s["complete"] else "  (incomplete)"),
             f"overall={s['overall']:.4f}  mean_nfe={s['mean_nfe']:.1f}  mean_model_rows={s['mean_model_rows']:.1f}  "
             f"wall={s['wall_seconds']:.1f}s"]
    for tag, c in s["categories"].items():
        lo, hi = c["ci95"]
        lines.append(f"  {tag:14s} {c['accuracy']:.3f}  ({c['correct']}/{c['n']}, 95% {lo:.3f}-{hi:.3f})")
    lines.append(f"results: {s['run_dir']}")
    return "\n".join(lines)


def cmd_shapes_geneval(args: argparse.Namespace) -> int:
    s = run(args)
    print(json.dumps(s) if args.json else format_summary(s))
    return 0


def mmada_backend(args: argparse.Namespace):
    """A :data:`unmask.eval.geneval.T2I_BACKENDS` entry: an MMaDA model with ``--vq_model_path``
    draws GenEval's images through :func:`unmask.multimodal.t2i.t2i` (one row per seed, batched)."""
    from ..multimodal.commands import default_vq_path, model_text_len

    vq_path = getattr(args, "vq_model_path", None) or default_vq_path(args.model_name_or_path)
    if not vq_path:
        return None
    from PIL import Image

    from ..cli import resolve_device, sampler_options
    from ..multimodal.commands import load_pair
    from ..multimodal.t2i import DEFAULT_GUIDANCE, DEFAULT_STEPS, t2i

    model, tok, vq = load_pair(args.model_name_or_path, vq_path, args.dtype, resolve_device(args.device))
    text_len = model_text_len(args.model_name_or_path)
    guidance = DEFAULT_GUIDANCE if args.guidance_scale is None else float(args.guidance_scale)
    steps = getattr(args, "steps", None) or DEFAULT_STEPS
    opts = sampler_options(args)

    temperature = _temperature(args)

    def generate(prompt: str, seeds):
        res = t2i(model, vq, [prompt] * len(seeds), args.sampler or "maskgit", tokenizer=tok, guidance_scale=guidance,
                  steps=steps, seed=list(seeds), max_text_len=text_len, sampler_options=opts, temperature=temperature)
        return [Image.fromarray(img.numpy()) for img in res.images]

    return generate
