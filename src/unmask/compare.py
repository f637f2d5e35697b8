"""``unmask compare``: the same task items decoded by several samplers, side by side.

This is how a user sees what a decoding order buys: accuracy (with a 95% Wilson interval), mean
NFE, forward rows, cumulative entropy and time per sample, plus task-specific figures (observation
accuracy for NAE-SAT; how often a product digit was decoded before the last factor digit for
multiplication).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

from .errors import UnmaskError


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (sensible at 0% and 100%, unlike +-1.96 SE)."""
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def parse_range(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        if "-" in text:
            lo, hi = (int(v) for v in text.split("-", 1))
        else:
            lo = hi = int(text)
    except ValueError:
        raise UnmaskError(f"expected a number or a range like 28-32, got {text!r}") from None
    if not (0 <= lo <= hi <= 81):
        raise UnmaskError(f"givens range {text!r} must satisfy 0 <= lo <= hi <= 81")
    return lo, hi


def load_items(path: str | Path) -> list[dict[str, Any]]:
    """Items from a JSONL file in the task's format (one JSON object per line); an item without an
    ``id`` is named after the file and its position."""
    from .userio import read_jsonl

    path = Path(path)
    items = read_jsonl(path)
    for i, item in enumerate(items, 1):
        item.setdefault("id", f"{path.stem}-{i}")
    return items


def run_compare(session, items: list[dict[str, Any]], samplers: list[str], sampler_options: dict[str, Any],
                overrides: dict[str, Any], batch_size: int = 32, progress: bool = False,
                lockstep=None) -> list[dict[str, Any]]:
    """Decode every item with every sampler; one summary row per sampler. Names ``lockstep_gs`` /
    ``lockstep_jacobi`` (optionally ``:sampler``) decode the task's R and A regions in lockstep,
    with the gates of ``lockstep`` (:class:`unmask.decoding.lockstep.LockstepOptions`; its mode, when
    set, turns every plain name into lockstep with that sampler inside the regions)."""
    from .decoding.lockstep import LockstepOptions, summarize_traces, task_regions
    from .tasks.multiply import product_before_factors

    task = session.task
    prompts = [session.task_prompt_ids(it) for it in items]
    grades = sudoku_grades(items) if task.name == "sudoku" else None
    regions = task.regions() if hasattr(task, "regions") else None
    cfg = {**overrides, "max_new_tokens": 0, "stop_at_eos": False, "suppress_token_ids": tuple(task.suppressed_ids())}
    rows = []
    lockstep = lockstep or LockstepOptions()
    for name in samplers:
        mode, inner = parse_sampler_name(name)
        mode = mode or lockstep.mode
        ls_opts = dataclasses.replace(lockstep, mode=mode) if mode is not None else None
        ls_traces = []
        correct, nfe, frows, ftoks, ent, secs, obs, prod_first = 0, 0, 0, 0, 0.0, 0.0, [], 0
        premature, r_ok, a_cons = 0, 0.0, 0.0  # reasoning/answer tasks (judge)
        gen_tokens = 0
        by_grade: dict[str, list[int]] = {}  # Sudoku: technique -> [solved, items]
        for lo in range(0, len(items), batch_size):
            chunk = prompts[lo : lo + batch_size]
            # one seed per item: unconditional tasks have identical prompts, and a shared seed would
            # decode every item identically
            base = int(cfg.get("seed", 0) or 0)
            seeds = [base + lo + j for j in range(len(chunk))]
            step_cfg = {**cfg, "seed": seeds}
            if mode is not None:
                spans = [task_regions(task, it) for it in items[lo : lo + len(chunk)]]
                step_cfg["plan"] = ls_opts.plan(spans)
            out = session.generate_ids(chunk, inner, sampler_options, step_cfg)
            secs += out.seconds
            for j, seq in enumerate(out.sequences):
                item = items[lo + j]
                answer = task.parse(seq)
                score = task.score(item, answer)
                correct += int(score.get("correct", 0.0) == 1.0)
                if grades is not None:
                    tally = by_grade.setdefault(grades[lo + j], [0, 0])
                    tally[0] += int(score.get("correct", 0.0) == 1.0)
                    tally[1] += 1
                if "obs_accuracy" in score:
                    obs.append(score["obs_accuracy"])
                tr = out.traces[j]
                gen_tokens += sum(1 for r in tr.tokens if r.position < tr.prompt_length)
                nfe += tr.nfe
                frows += tr.forward_rows
                ftoks += tr.forward_tokens
                ent += tr.cumulative_entropy
                if task.name == "multiply":
                    prod_first += int(product_before_factors([p for _, p, _ in tr.order]))
                if mode is not None:
                    ls_traces.append(tr)
                elif regions is not None:
                    premature += int(premature_answer(tr, regions))
                if regions is not None:
                    r_ok += score.get("r_correct", 0.0)
                    a_cons += score.get("a_consistent", 0.0)
            if progress:
                # progress is a diagnostic: on stderr, so `unmask compare ... > table.md` keeps only
                # the table (a line like "random: 4/4" on stdout reads like a score)
                print(f"  {name}: {min(lo + batch_size, len(items))}/{len(items)}", file=sys.stderr, flush=True)
        n = len(items)
        lo_ci, hi_ci = wilson(correct, n)
        if mode is not None and not name.lower().startswith("lockstep"):
            name = f"lockstep_{'gs' if mode == 'gauss_seidel' else 'jacobi'}:{name}"
        row = {
            "sampler": name, "n": n, "accuracy": correct / n, "ci_low": lo_ci, "ci_high": hi_ci,
            "mean_nfe": nfe / n, "mean_forward_rows": frows / n,
            "mean_forward_tokens": ftoks / n, "mean_cumulative_entropy": ent / n,
            "ms_per_sample": 1000 * secs / n,
        }
        if obs:
            row["obs_accuracy"] = sum(obs) / len(obs)
        if task.name == "multiply":
            row["product_first_rate"] = prod_first / n
        if regions is not None:
            row["r_correct"] = r_ok / n
            row["a_consistent"] = a_cons / n
            row["premature_rate"] = premature / n
        if mode is not None:
            # premature answer from the canvas A's first decision saw (Gauss-Seidel: after R's
            # commit of that step), the same reading premature_answer() makes of plain traces
            summ = summarize_traces(ls_traces)
            row["premature_rate"] = summ.pop("premature_rate")
            row["lockstep"] = {"mode": mode, "sampler": inner, **summ}
        row["tokens_per_second"] = gen_tokens / secs if secs > 0 else 0.0
        if grades is not None:
            row["by_technique"] = {g: by_grade[g] for g in SUDOKU_TECHNIQUES if g in by_grade}
        rows.append(row)
    return rows


def premature_answer(trace, regions: dict[str, tuple[int, int]], threshold: float = 0.5) -> bool:
    """True when the trace committed its first answer (A) token while less than ``threshold`` of
    the reasoning region R was filled. Tokens of the same step are simultaneous (they come from
    one forward and do not see each other), so only R tokens of *earlier* steps count as filled."""
    r0, r1 = regions["R"]
    a0, a1 = regions["A"]
    a_steps = [step for step, pos, _ in trace.order if a0 <= pos < a1]
    if not a_steps:
        return False
    first = min(a_steps)
    filled = sum(1 for step, pos, _ in trace.order if r0 <= pos < r1 and step < first)
    return filled < threshold * (r1 - r0)


def sudoku_grades(items: list[dict[str, Any]]) -> list[str]:
    """Each puzzle's technique grade: the item's ``technique`` key, else computed from the puzzle
    (user files from ``--data`` rarely carry one)."""
    from .tasks.sudoku import parse_grid, technique_needed

    out = []
    for it in items:
        grade = it.get("technique")
        if grade is None:
            try:
                grade = technique_needed(parse_grid(str(it.get("puzzle", ""))))
            except ValueError:
                grade = "unparsable"
        out.append(str(grade))
    return out


SUDOKU_TECHNIQUES = ("naked_singles", "hidden_singles", "beyond_singles", "unparsable")
_GRADE_SHORT = {"naked_singles": "naked", "hidden_singles": "hidden", "beyond_singles": "beyond",
                "unparsable": "unparsable"}


def format_table(rows: list[dict[str, Any]]) -> str:
    extra = [k for k in ("obs_accuracy", "product_first_rate", "r_correct", "a_consistent", "premature_rate")
             if k in rows[0]]
    grades = "by_technique" in rows[0]
    ls = any("lockstep" in r for r in rows)
    head = ["sampler", "accuracy (95% CI)", "NFE", "fwd rows", "fwd tokens", "cum. entropy", "ms/sample", *extra]
    if ls:
        head += ["steps", "NFE/step", "tok/s", "A first step", "R filled then"]
    if grades:
        head.append("solved by technique")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["sampler"],
            f"{100 * r['accuracy']:.1f}% ({100 * r['ci_low']:.1f}-{100 * r['ci_high']:.1f})",
            f"{r['mean_nfe']:.1f}", f"{r['mean_forward_rows']:.1f}",
            f"{r.get('mean_forward_tokens', 0.0):.0f}", f"{r['mean_cumulative_entropy']:.2f}",
            f"{r['ms_per_sample']:.1f}",
        ]
        cells += [f"{100 * r[k]:.1f}%" for k in extra]
        if ls:
            m = r.get("lockstep")
            if m is None:
                cells += ["-", "-", f"{r.get('tokens_per_second', 0.0):.0f}", "-", "-"]
            else:
                first, fill = m["mean_a_first_step"], m["mean_r_fill_at_a_first"]
                cells += [f"{m['mean_steps']:.1f}", f"{m['nfe_per_step']:.2f}", f"{r.get('tokens_per_second', 0.0):.0f}",
                          "-" if first is None else f"{first:.1f}", "-" if fill is None else f"{100 * fill:.0f}%"]
        if grades:
            cells.append(", ".join(f"{_GRADE_SHORT.get(g, g)} {k}/{n}" for g, (k, n) in r["by_technique"].items()))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: compare's sampler names: lockstep_gs / lockstep_jacobi, optionally ``:inner_sampler``
MODE_NAMES = {"lockstep_gs": "gauss_seidel", "lockstep_gauss_seidel": "gauss_seidel", "lockstep_jacobi": "jacobi"}


def parse_sampler_name(name: str) -> tuple[str | None, str]:
    """``lockstep_gs`` -> (gauss_seidel, confidence); ``lockstep_jacobi:info_gain`` -> (jacobi,
    info_gain); a plain name -> (None, name)."""
    head, _, inner = name.partition(":")
    key = head.strip().lower().replace("-", "_")
    if key in MODE_NAMES:
        return MODE_NAMES[key], (inner.strip() or "confidence")
    if key.startswith("lockstep"):
        raise UnmaskError(f"unknown lockstep sampler {name!r}; use lockstep_gs or lockstep_jacobi, optionally "
                          "followed by :sampler (e.g. lockstep_gs:info_gain)")
    if inner:
        raise UnmaskError(f"{name!r}: only lockstep_gs / lockstep_jacobi take a ':sampler' suffix")
    return None, name


TASK_MODELS = {"sudoku": "tiny-sudoku", "multiply": "tiny-multiply", "nae_sat": "tiny-nae-sat", "judge": "tiny-judge"}


def cmd_compare(args: argparse.Namespace) -> int:
    from .cli import config_overrides, resolve_device, sampler_options
    from .session import Session

    task_name = args.task.replace("-", "_")
    model = args.model_name_or_path or TASK_MODELS.get(task_name)
    if model is None:
        from .tasks import task_names

        if task_name in task_names():
            raise UnmaskError(f"no built-in model for --task {task_name}: train one (unmask train --task {task_name} "
                              f"--out runs/{task_name}) and pass --model_name_or_path runs/{task_name}/model")
        raise UnmaskError(f"unknown task {args.task!r}; choose one of {', '.join(TASK_MODELS)} (or a trained model's "
                          f"task with --model_name_or_path: {', '.join(task_names())})")
    if args.technique and task_name != "sudoku":
        raise UnmaskError("--technique only applies to --task sudoku")
    session = Session.load(model, device=resolve_device(args.device), dtype=args.dtype)
    if session.task is None or session.task.name != task_name:
        have = session.task.name if session.task else "no task"
        raise UnmaskError(f"model {model} was trained for {have}, not {task_name}")
    if args.n <= 0:
        raise UnmaskError(f"--n must be > 0, got {args.n}")
    if args.data:
        items = load_items(args.data)
        session.task.check_items(items, args.data)
        if args.technique:
            # grade the user's puzzles and keep the asked-for grade (before --n, so --n counts kept items)
            items = [it for it, g in zip(items, sudoku_grades(items)) if g == args.technique]
            if not items:
                raise UnmaskError(f"no puzzle in {args.data} needs exactly {args.technique}")
        items = items[: args.n]
    else:
        difficulty = {}
        if task_name == "sudoku":
            difficulty["givens"] = parse_range(args.givens) or (28, 32)
            if args.technique:
                difficulty["technique"] = args.technique
        elif args.givens:
            raise UnmaskError("--givens only applies to --task sudoku")
        items = session.task.make_dataset(args.n, seed=args.data_seed, **difficulty)
    samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    if not samplers:
        raise UnmaskError("--samplers is empty")
    from .decoding.lockstep import task_regions
    from .options import lockstep_options
    from .samplers import make_sampler

    opts = sampler_options(args)
    named = any(parse_sampler_name(s)[0] for s in samplers)  # lockstep_* names carry their own mode
    lockstep = lockstep_options(args, region_flags_alone=named)
    for s in samplers:
        mode, inner = parse_sampler_name(s)
        make_sampler(inner, **opts)  # fail fast on an unknown name or a bad option
        if mode or lockstep.mode:
            task_regions(session.task, items[0])
    overrides = config_overrides(args)
    overrides.pop("max_new_tokens", None)
    rows = run_compare(session, items, samplers, opts, overrides, batch_size=args.batch_size,
                       progress=not args.json, lockstep=lockstep)
    if args.wandb:
        from .tracking import log_rows

        flat = [{**{k: v for k, v in r.items() if k != "lockstep"}, **(r.get("lockstep") or {})} for r in rows]
        log_rows(args.wandb_project, f"compare-{task_name}", {"task": task_name, **lockstep.config()}, flat)
    if args.json:
        print(json.dumps({"task": task_name, "model": str(model), "n": len(items), "rows": rows,
                          "config": getattr(args, "resolved_config", None)}))
    else:
        print(f"task={task_name} model={model} n={len(items)}")
        print(format_table(rows))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from .cli import add_flag, add_sampling_flags

    p = sub.add_parser("compare", help="decode the same task items with several samplers and compare")
    add_flag(p, "task", required=True, help="sudoku | multiply | nae_sat | judge")
    add_flag(p, "samplers", default="random,confidence,margin,entropy,info_gain,lookum",
             help="comma-separated sampler names (lockstep_gs[:sampler], lockstep_jacobi[:sampler] too)")
    add_flag(p, "n", type=int, default=200, help="number of items")
    add_flag(p, "givens", default=None, help="Sudoku clue range, e.g. 28-32 or 24-27 (below 22 is impractical)")
    add_flag(p, "technique", default=None, choices=["naked_singles", "hidden_singles", "beyond_singles"],
             help="Sudoku: only puzzles whose hardest needed technique is this one")
    add_flag(p, "data_seed", type=int, default=1234, help="seed of the generated test items")
    add_flag(p, "json", action="store_true")
    add_sampling_flags(p, "compare")
    p.set_defaults(func=cmd_compare)
