"""Lockstep reasoning/answer decoding: the step and NFE pattern of each mode and gate.

For every setting: steps, NFE (forward calls per prompt), NFE per step, the step at which A was
first committed and how much of R was filled on the canvas that decision saw, the premature rate
(A first committed while R < 50% filled) and milliseconds per prompt.

Default model: random LLaDA (2 layers, d_model 128, vocabulary 512, fp32) and 3 prompts of 12/16/20
random tokens, each followed by R (``--r`` masks, default 32), two fixed tokens, A (``--a``, default
8). A random model's predictions are nearly uniform, so with the default thresholds (0.90 / 0.92)
nothing passes and every step is a *fallback* (one position per region): that isolates the
schedule. The ``tau=0.0001`` rows let everything pass, so ``max_fill_frac`` alone sets the pace
(each step commits ``max(1, floor(0.4 * remaining))``). With ``--model`` pointing at a task model
whose task has regions (``tiny-judge``), the prompts are the task's test canvases and the table
adds accuracy.

    python benchmarks/bench_lockstep.py
    python benchmarks/bench_lockstep.py --model tiny-judge --prompts 50
    python benchmarks/bench_lockstep.py --trace docs_trace.json   # a trace for `unmask viz`
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

from _common import random_llada, random_prompts  # noqa: E402

from unmask.decoding.engine import generate  # noqa: E402
from unmask.decoding.lockstep import LockstepPlan, lockstep_metrics  # noqa: E402

SETTINGS: list[dict[str, Any]] = [
    {"mode": "jacobi"},
    {"mode": "gauss_seidel"},
    {"mode": "gauss_seidel", "answer_after": 0.5},
    {"mode": "jacobi", "tau_r": 1e-4, "tau_a": 1e-4},
    {"mode": "gauss_seidel", "tau_r": 1e-4, "tau_a": 1e-4},
    {"mode": "gauss_seidel", "tau_r": 1e-4, "tau_a": 1e-4, "use_cache": "dual"},
    {"mode": "gauss_seidel", "sampler": "info_gain"},
    {"mode": "jacobi", "sampler": "info_gain"},
]


def random_setup(args) -> tuple[Any, list[list[int]], list[dict[str, tuple[int, int]]], Any]:
    vocab = 512
    model = random_llada(2, 128, 4, 256, vocab, seed=0, max_len=512).eval()
    mask = model.config.mask_token_id
    prompts, spans = [], []
    for p in random_prompts(args.prompts, [12, 16, 20], vocab, seed=1):
        r = (len(p), len(p) + args.r)
        ids = p + [mask] * args.r + [5, 6]
        a = (len(ids), len(ids) + args.a)
        prompts.append(ids + [mask] * args.a)
        spans.append({"R": r, "A": a})
    return model, prompts, spans, None


def task_setup(args):
    from unmask.session import Session

    session = Session.load(args.model, device="cpu")
    task = session.task
    if task is None or not hasattr(task, "regions"):
        raise SystemExit(f"{args.model} is not a task model with reasoning/answer regions")
    items = task.make_dataset(args.prompts, seed=1234)
    prompts = [session.task_prompt_ids(it) for it in items]
    spans = [{k: tuple(v) for k, v in task.regions(it).items()} for it in items]
    return session.model, prompts, spans, (task, items)


def run(args) -> list[dict[str, Any]]:
    torch.set_num_threads(args.threads)
    model, prompts, spans, task_items = task_setup(args) if args.model else random_setup(args)
    extra = {}
    if task_items is not None:
        extra["suppress_token_ids"] = tuple(task_items[0].suppressed_ids())
    rows = []
    for st in SETTINGS:
        st = dict(st)
        sampler = st.pop("sampler", "confidence")
        cache = st.pop("use_cache", "none")
        plan = LockstepPlan(spans, **st)
        t0 = time.perf_counter()
        out = generate(model, prompts, sampler, max_new_tokens=0, plan=plan, use_cache=cache, seed=0,
                       candidate_number=4, **extra)
        secs = time.perf_counter() - t0
        mets = [lockstep_metrics(t) for t in out.traces]
        n = len(mets)
        label = f"{st['mode']} {sampler}" + "".join(f" {k}={v}" for k, v in st.items() if k != "mode")
        if cache != "none":
            label += f" cache={cache}"
        row = {
            "setting": label,
            "steps": sum(m["steps"] for m in mets) / n,
            "nfe": sum(m["nfe"] for m in mets) / n,
            "nfe_per_step": sum(m["nfe"] for m in mets) / sum(m["steps"] for m in mets),
            "a_first_step": sum(m["a_first_step"] for m in mets) / n,
            "r_fill_at_a_first": sum(m["r_fill_at_a_first"] for m in mets) / n,
            "premature": sum(m["premature_answer"] for m in mets) / n,
            "ms_per_prompt": 1000 * secs / n,
        }
        if task_items is not None:
            task, items = task_items
            row["accuracy"] = sum(task.verify(it, task.parse(s)) for it, s in zip(items, out.sequences)) / n
        rows.append(row)
        if args.trace and st == {"mode": "gauss_seidel", "answer_after": 0.5} and sampler == "confidence":
            Path(args.trace).write_text(json.dumps({"label": f"lockstep gauss_seidel, answer_after 0.5 · {sampler}",
                                                    "trace": out.traces[0].to_dict()}))
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    keys = [k for k in rows[0] if k != "setting"]
    lines = ["| setting | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for r in rows:
        lines.append(f"| {r['setting']} | " + " | ".join(f"{r[k]:.2f}" for k in keys) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="task model with regions (e.g. tiny-judge); default: random LLaDA")
    ap.add_argument("--prompts", type=int, default=3)
    ap.add_argument("--r", type=int, default=32, help="R masks (random model)")
    ap.add_argument("--a", type=int, default=8, help="A masks (random model)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--trace", default=None,
                    help="save the first prompt's Gauss-Seidel answer_after=0.5 trace here (for unmask viz)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = run(args)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
