"""The tiny-shapes case study: unmask samplers on held-out text-to-image prompts, GenEval-style.

    python benchmarks/shapes_case_study.py --out runs/shapes_case_study            # run the plan (resumable)
    python benchmarks/shapes_case_study.py --out runs/shapes_case_study --report \\
        --tables docs/shapes_case_study.md --grid docs/shapes_grid.png             # tables + picture grid

Every configuration is one ``unmask eval --task shapes_geneval`` run (402 held-out items, 67 per
category, one image each from the item's own seed) in ``OUT``; reruns skip what is done, so the
script can be stopped and restarted at any time. The plan is ordered by how much each run tells:

1. every sampler at 8 steps at the reference temperature (1.0: tokens drawn from the guided
   distribution, as MMaDA draws them);
2. MaskGIT cosine, confidence and Info-Gain at 4 steps, MaskGIT and confidence at 16;
3. a guidance sweep (w = 0, 1, 2, 5, 8 next to the main runs' 3.5) for the best sampler of
   phase 1, on the first ``--sweep_n`` items;
4. Info-Gain at 16 steps;
5. every sampler at 8 steps with greedy tokens (temperature 0);
6. the rest of the grid (4 and 16 steps for the other samplers, at both temperatures).

Why the reference temperature first: with greedy tokens, confidence, margin and entropy are
deterministic functions of the caption (the item's seed no longer matters), so their 67 items of a
category collapse onto its distinct test captions (4 single-object, 2 two-object, 3 counting and 6
colour captions); the greedy table reports that.

``--phases 1,2,3`` runs a subset. ``--report`` reads whatever summaries exist (complete or not)
and writes the Markdown tables (per-category accuracy, 95% Wilson intervals, NFE, model rows,
forward tokens, wall time per image) and the picture grid: the same prompts (one per category)
under each sampler at 8 greedy steps.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

SAMPLERS = ("maskgit", "confidence", "margin", "entropy", "random", "info_gain", "lookum")
LABEL = {"maskgit": "MaskGIT cosine", "confidence": "confidence", "margin": "margin", "entropy": "entropy",
         "random": "random", "info_gain": "Info-Gain", "lookum": "LookUM"}
CATS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
GUIDANCE = 3.5  # MMaDA's inference default
SWEEP = (0.0, 1.0, 2.0, 3.5, 5.0, 8.0)


def plan(phase: int, best: str | None, sweep_n: int) -> list[dict[str, Any]]:
    """The runs of one phase: ``sampler, steps, temperature, guidance, limit``."""
    run = lambda s, k, t, w=GUIDANCE, n=None: dict(sampler=s, steps=k, temperature=t, guidance=w, limit=n)  # noqa: E731
    first = ("maskgit", "confidence", "info_gain")
    if phase == 1:
        return [run(s, 8, 1.0) for s in SAMPLERS]
    if phase == 2:
        return [run(s, 4, 1.0) for s in first] + [run(s, 16, 1.0) for s in first[:2]]
    if phase == 3:
        return [run(best or "maskgit", 8, 1.0, w, sweep_n) for w in SWEEP if w != GUIDANCE]
    if phase == 4:
        return [run("info_gain", 16, 1.0)]
    if phase == 5:
        return [run(s, 8, 0.0) for s in SAMPLERS]
    if phase == 6:
        return [run(s, k, t) for t in (1.0, 0.0) for k in (4, 16) for s in SAMPLERS]
    raise ValueError(phase)


def _parse_run(spec: str) -> dict[str, Any]:
    f = spec.split(":")
    return dict(sampler=f[0], steps=int(f[1]), temperature=float(f[2]), guidance=float(f[3]),
                limit=int(f[4]) if len(f) > 4 else None)


def run_dir(out: Path, model: str, r: dict[str, Any]) -> Path:
    name = Path(model.rstrip("/")).name
    tag = "" if r["temperature"] == 1.0 else f"-t{r['temperature']:g}"
    return out / f"shapes_geneval-{name}-{r['sampler']}-s{r['steps']}-w{r['guidance']:g}{tag}"


def evaluate(out: Path, model: str, vq: str | None, r: dict[str, Any], batch_size: int) -> int:
    from unmask.cli import main as cli

    argv = ["eval", "--task", "shapes_geneval", "--model_name_or_path", model, "--sampler", r["sampler"],
            "--steps", str(r["steps"]), "--guidance_scale", str(r["guidance"]), "--temperature", str(r["temperature"]),
            "--output_dir", str(out), "--batch_size", str(batch_size), "--json"]
    if vq:
        argv += ["--vq_model_path", vq]
    if r["limit"]:
        argv += ["--limit", str(r["limit"])]
    print("run:", " ".join(argv[3:]), flush=True)
    return cli(argv)


def summaries(out: Path) -> list[dict[str, Any]]:
    """Every run's summary; a run stopped part-way (no ``summary.json`` for what its
    ``results.jsonl`` holds) is summarised from its results and marked incomplete."""
    from unmask.eval.shapes_geneval import DEFAULT_N_PER_CATEGORY, summarize

    rows = []
    for d in sorted(out.glob("shapes_geneval-*")):
        if not (d / "run.json").exists() or not (d / "results.jsonl").exists():
            continue
        res = {}
        for line in (d / "results.jsonl").read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            res[r["index"]] = r
        if not res:
            continue
        f = d / "summary.json"
        s = json.loads(f.read_text()) if f.exists() else None
        if s is None or s["n"] != len(res):
            settings = json.loads((d / "run.json").read_text())
            s = summarize(sorted(res.values(), key=lambda r: r["index"]), 6 * DEFAULT_N_PER_CATEGORY, settings)
        s["run_dir"] = str(d)
        rows.append(s)
    return rows


def best_sampler(out: Path) -> str | None:
    """The sampler with the best overall score among complete 8-step runs at temperature 1, w = 3.5."""
    cand = [s for s in summaries(out) if s["steps"] == 8 and s.get("temperature") == 1.0
            and s["guidance_scale"] == GUIDANCE and s["complete"]]
    return max(cand, key=lambda s: s["overall"])["sampler"] if cand else None


# ---- report ---------------------------------------------------------------------------------

def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    p, d = k / n, 1 + z * z / n
    c, h = (p + z * z / (2 * n)) / d, z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def row_of(s: dict[str, Any]) -> dict[str, Any]:
    cats = s["categories"]
    k = sum(c["correct"] for c in cats.values())
    n = sum(c["n"] for c in cats.values())
    return {"sampler": s["sampler"], "steps": s["steps"], "T": s.get("temperature", 1.0), "w": s["guidance_scale"],
            "n": s["n"], "overall": s["overall"], "ci": wilson(k, n), "cats": cats, "nfe": s["mean_nfe"],
            "rows": s["mean_model_rows"], "tokens": s.get("mean_forward_tokens", 0.0),
            "sec": s["wall_seconds"] / max(1, s["n"]), "complete": s["complete"]}


def main_table(rows: list[dict[str, Any]]) -> str:
    head = ("| sampler | steps | T | n | overall % (95% CI) | " + " | ".join(CATS)
            + " | NFE | model rows | forward tokens | s/image |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lo, hi = r["ci"]
        cats = " | ".join(pct(r["cats"][c]["accuracy"]) if c in r["cats"] else "-" for c in CATS)
        n = f"{r['n']}" + ("" if r["complete"] else " (partial)")
        lines.append(f"| {LABEL.get(r['sampler'], r['sampler'])} | {r['steps']} | {r['T']:g} | {n} | "
                     f"**{pct(r['overall'])}** ({pct(lo)}-{pct(hi)}) | {cats} | {r['nfe']:.0f} | {r['rows']:.0f} | "
                     f"{r['tokens']:.0f} | {r['sec']:.3f} |")
    return "\n".join(lines)


def ci_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| sampler | steps | T | " + " | ".join(CATS) + " |", "|" + "---|" * (3 + len(CATS))]
    for r in rows:
        cells = []
        for c in CATS:
            if c not in r["cats"]:
                cells.append("-")
                continue
            lo, hi = wilson(r["cats"][c]["correct"], r["cats"][c]["n"])
            cells.append(f"{r['cats'][c]['correct']}/{r['cats'][c]['n']} ({pct(lo)}-{pct(hi)})")
        lines.append(f"| {LABEL.get(r['sampler'], r['sampler'])} | {r['steps']} | {r['T']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def head_to_head(out: Path, rows: list[dict[str, Any]]) -> str:
    """Info-Gain against MaskGIT cosine at the same steps, temperature and guidance, on the same
    items (MaskGIT's run cut to Info-Gain's first n items when Info-Gain has fewer)."""
    lines = ["| steps | T | n | categories where Info-Gain >= MaskGIT (strictly better) | Info-Gain - MaskGIT, overall (pp) |",
             "|---|---|---|---|---|"]
    for r in rows:
        if r["sampler"] != "info_gain":
            continue
        m = _prefix(out, "maskgit", r["steps"], r["T"], r["w"], r["n"])
        if m is None:
            continue
        ge = [c for c in CATS if r["cats"][c]["accuracy"] >= m["cats"][c]["accuracy"]]
        gt = [c for c in CATS if r["cats"][c]["accuracy"] > m["cats"][c]["accuracy"]]
        lines.append(f"| {r['steps']} | {r['T']:g} | {r['n']} | {len(ge)}/6 ({len(gt)}: {', '.join(gt) or 'none'}) | "
                     f"{100 * (r['overall'] - m['overall']):+.1f} |")
    return "\n".join(lines)


def compare_table(before: Path, rows: list[dict[str, Any]]) -> str:
    """Each run of this study next to the same run (sampler, steps, T, w, items) of an earlier
    study in ``before``: overall and per-category accuracy, before -> after."""
    old = {(r["sampler"], r["steps"], r["T"], r["w"], r["n"]): r for r in map(row_of, summaries(before))}
    lines = ["| sampler | steps | T | w | n | overall % before -> after (95% CI after) | " + " | ".join(CATS) + " |",
             "|" + "---|" * (6 + len(CATS))]
    for r in rows:
        o = old.get((r["sampler"], r["steps"], r["T"], r["w"], r["n"]))
        if o is None:
            continue
        lo, hi = r["ci"]
        cats = " | ".join(f"{pct(o['cats'][c]['accuracy'])} -> {pct(r['cats'][c]['accuracy'])}" for c in CATS)
        lines.append(f"| {LABEL.get(r['sampler'], r['sampler'])} | {r['steps']} | {r['T']:g} | {r['w']:g} | {r['n']} | "
                     f"{pct(o['overall'])} -> **{pct(r['overall'])}** ({pct(lo)}-{pct(hi)}) | {cats} |")
    return "\n".join(lines)


FAILURES = ("wrong shape", "object missing", "too few", "wrong colour", "wrong relation", "too many")
OBJECTS = {"single_object": 1, "two_object": 2, "colors": 1, "position": 2, "color_attr": 2}  # counting: its n


def failure_kind(row: dict[str, Any]) -> str:
    """The kind of GenEval's first failed check for one scored image (its reason lines come in the
    order the checks run). An included shape that is not detected is a *wrong shape* when the
    image still holds as many confident objects as the caption names (one was drawn as another
    shape, or too unclear to classify), else an *object missing* (merged into another, or never
    drawn); then too few of a counted shape, the wrong colour, the wrong relation (or no target to
    relate to), or more objects than a counting prompt allows."""
    first = row["reason"].split("\n")[0]
    if first.startswith("no target") or " target, found" in first:
        return "wrong relation"
    head = first.split(",")[0]
    if "<" in head:
        return "too many"
    if len(head.split()) == 3:  # "expected red circle>=1"
        return "wrong colour"
    want = int(head.split(">=")[1])
    found = int(first.split("found ")[1].split()[0])
    if found:
        return "too few"
    drawn = sum(len(v) for v in row.get("details", {}).values())
    return "wrong shape" if drawn >= OBJECTS.get(row["tag"], want) else "object missing"


def failure_table(out: Path, row: dict[str, Any]) -> str:
    """Per category, what the first failed check was, for the failed images of one run."""
    d = next(Path(s["run_dir"]) for s in summaries(out) if s["sampler"] == row["sampler"]
             and s["steps"] == row["steps"] and s.get("temperature") == row["T"] and s["guidance_scale"] == row["w"])
    counts = {c: dict.fromkeys(FAILURES, 0) for c in CATS}
    for line in (d / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        if not r["correct"]:
            counts[r["tag"]][failure_kind(r)] += 1
    lines = ["| category | failed | " + " | ".join(FAILURES) + " |", "|" + "---|" * (2 + len(FAILURES))]
    for c in CATS:
        lines.append(f"| {c} | {sum(counts[c].values())} | " + " | ".join(str(counts[c][k]) for k in FAILURES) + " |")
    return "\n".join(lines)


def report(out: Path, tables: Path | None, grid: Path | None, grid_items: int, before: Path | None = None,
           results_json: Path | None = None) -> str:
    if results_json:
        results_json.write_text(json.dumps(summaries(out), indent=1) + "\n")
    rows = [row_of(s) for s in summaries(out)]
    order = {s: i for i, s in enumerate(SAMPLERS)}
    rows.sort(key=lambda r: (r["w"] != GUIDANCE, r["T"], r["steps"], order.get(r["sampler"], 99), r["w"]))
    main_rows = [r for r in rows if r["w"] == GUIDANCE]
    parts = ["### Samplers at equal step budgets (w = 3.5)", "", main_table(main_rows), "",
             "T = 0 rows: confidence, margin and entropy are then deterministic in the caption, so a category's "
             "items collapse onto its distinct test captions (4 single-object, 2 two-object, 3 counting, "
             "6 colours; position and colour attribution have 67 distinct captions each).", "",
             "### Per category, correct / n (95% Wilson interval, %)", "", ci_table(main_rows), "",
             "### Info-Gain against MaskGIT cosine at equal steps (same items)", "", head_to_head(out, main_rows), ""]
    sweeps: dict[tuple, list[dict[str, Any]]] = {}  # one table per (sampler, steps, T, items) swept
    for r in rows:
        if r["w"] != GUIDANCE:
            sweeps.setdefault((r["sampler"], r["steps"], r["T"], r["n"]), []).append(r)
    for (sampler, steps, temp, n), sw in sweeps.items():
        base = _prefix(out, sampler, steps, temp, GUIDANCE, n)  # the w = 3.5 point, on the same items
        pts = sorted([*sw, *([base] if base else [])], key=lambda r: r["w"])
        parts += [f"### Guidance sweep ({LABEL.get(sampler, sampler)}, {steps} steps, T = {temp:g}, "
                  f"first {n} items)", "", _with_w(main_table(pts), pts), ""]
    full = [r for r in main_rows if r["complete"] and r["T"] == 1.0]
    if full:
        top = max(full, key=lambda r: r["overall"])
        parts += [f"### Why images fail ({LABEL.get(top['sampler'], top['sampler'])}, {top['steps']} steps, "
                  f"T = {top['T']:g}: the first check each failed image fails)", "", failure_table(out, top), ""]
    if before:
        parts += [f"### Before -> after (the same runs of the study in {before})", "", compare_table(before, rows), ""]
    text = "\n".join(parts)
    if tables:
        tables.write_text(text + "\n")
    if grid:
        make_grid(out, [r for r in rows if r["steps"] == 8 and r["T"] == 1.0 and r["w"] == GUIDANCE], grid, grid_items)
    return text


def _with_w(table: str, pts: list[dict[str, Any]]) -> str:
    lines = table.splitlines()
    lines[0] = "| w " + lines[0]
    lines[1] = "|---" + lines[1]
    for i, r in enumerate(pts):
        lines[2 + i] = f"| {r['w']:g} " + lines[2 + i]
    return "\n".join(lines)


def _prefix(out: Path, sampler: str, steps: int, temperature: float, w: float, n: int) -> dict[str, Any] | None:
    """A table row of the first ``n`` items of the run with these settings (None if it has fewer)."""
    from unmask.eval.shapes_geneval import summarize

    for s in summaries(out):
        if (s["sampler"], s["steps"], s.get("temperature"), s["guidance_scale"]) != (sampler, steps, temperature, w):
            continue
        res = {}
        for x in (Path(s["run_dir"]) / "results.jsonl").read_text().splitlines():
            try:
                r = json.loads(x)
            except json.JSONDecodeError:
                continue
            if r["index"] < n:
                res[r["index"]] = r
        if len(res) == n:
            return row_of(summarize([res[i] for i in sorted(res)], n, {
                "sampler": sampler, "steps": steps, "temperature": temperature, "guidance_scale": w}))
    return None


def make_grid(out: Path, rows: list[dict[str, Any]], path: Path, n_items: int, scale: int = 3) -> None:
    """Rows: samplers; columns: the first ``n_items`` held-out items (round-robin, so the first six
    are one per category); each cell the item's image, its caption on top, a tick when scored correct."""
    from PIL import Image, ImageDraw

    from unmask.eval.shapes_geneval import suite

    items = suite()[:n_items]
    order = {s: i for i, s in enumerate(SAMPLERS)}
    rows = sorted(rows, key=lambda r: order.get(r["sampler"], 99))
    folders = {s["sampler"]: Path(s["run_dir"]) for s in summaries(out)
               if s["steps"] == 8 and s.get("temperature") == 1.0 and s["guidance_scale"] == GUIDANCE}
    cell, label_w, head_h, pad = 32 * scale, 110, 44, 6
    w = label_w + n_items * (cell + pad)
    h = head_h + len(rows) * (cell + pad + 12)
    canvas = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(canvas)
    for j, it in enumerate(items):
        x = label_w + j * (cell + pad)
        words, lines, cur = it["prompt"].split(), [], ""
        for wd in words:
            if len(cur) + len(wd) + 1 > 17:
                lines.append(cur)
                cur = wd
            else:
                cur = (cur + " " + wd).strip()
        lines.append(cur)
        for li, text in enumerate(lines[:4]):
            draw.text((x, 2 + 10 * li), text, fill="black")
    for i, r in enumerate(rows):
        y = head_h + i * (cell + pad + 12)
        draw.text((4, y + cell // 2 - 6), LABEL.get(r["sampler"], r["sampler"]), fill="black")
        folder = folders.get(r["sampler"])
        res = {}
        if folder and (folder / "results.jsonl").exists():
            res = {x["index"]: x for x in map(json.loads, (folder / "results.jsonl").read_text().splitlines())}
        for j, it in enumerate(items):
            x = label_w + j * (cell + pad)
            img_path = folder / "images" / f"{it['index']:05}.png" if folder else None
            if img_path and img_path.exists():
                canvas.paste(Image.open(img_path).convert("RGB").resize((cell, cell), Image.NEAREST), (x, y))
                ok = res.get(it["index"], {}).get("correct")
                draw.text((x, y + cell + 1), "correct" if ok else "wrong", fill=(0, 120, 0) if ok else (170, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="tiny-shapes", help="model folder or alias (default tiny-shapes)")
    p.add_argument("--vq", default=None, help="MAGVIT-v2 folder (default: the model folder's vq/)")
    p.add_argument("--out", default="runs/shapes_case_study")
    p.add_argument("--phases", default="1,2,3,4,5,6", help="which phases of the plan to run, in order")
    p.add_argument("--sweep_n", type=int, default=120, help="items per guidance-sweep point (round-robin)")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--limit", type=int, default=None, help="cap every run at this many items (cost probes)")
    p.add_argument("--runs", default=None,
                   help="explicit runs instead of the phases, comma-separated SAMPLER:STEPS:T:W[:N] (N = first N items); "
                        "two processes may share --out when their runs differ")
    p.add_argument("--report", action="store_true", help="only write the tables (and grid) from what exists")
    p.add_argument("--tables", default=None, help="write the Markdown tables here")
    p.add_argument("--grid", default=None, help="write the picture grid (PNG) here")
    p.add_argument("--grid_items", type=int, default=12)
    p.add_argument("--before", default=None, help="with --report: an earlier study's --out, compared run by run")
    p.add_argument("--results_json", default=None, help="with --report: write every run's summary here (a list)")
    args = p.parse_args(argv)
    out = Path(args.out)
    if not args.report:
        out.mkdir(parents=True, exist_ok=True)
        if args.runs:
            phases = [lambda: [_parse_run(x) for x in args.runs.split(",") if x.strip()]]
        else:  # each phase planned when it starts (the sweep needs phase 1's best sampler)
            phases = [lambda x=x: plan(int(x), best_sampler(out), args.sweep_n) for x in args.phases.split(",") if x.strip()]
        for make in phases:
            for r in make():
                if args.limit:
                    r["limit"] = min(r["limit"] or args.limit, args.limit)
                if evaluate(out, args.model, args.vq, r, args.batch_size) != 0:
                    return 2
    print(report(out, Path(args.tables) if args.tables else None, Path(args.grid) if args.grid else None,
                 args.grid_items, Path(args.before) if args.before else None,
                 Path(args.results_json) if args.results_json else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
