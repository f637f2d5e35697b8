"""unmask next to the Fast-dLLM reference loop (issue 26): same random weights, same settings, CPU.

The reference (NVlabs/Fast-dLLM ``llada/generate.py``: ``generate_with_dual_cache`` with and
without ``threshold``, and the cache-free ``generate``) runs from a checkout on disk, inside its own
virtual environment (the transformers version it pins), in a subprocess. Nothing of its code is in
this repository: this file only imports it, by path, in the worker it starts with that
environment's Python. unmask runs under ``--compat fast_dllm``, in its own subprocess, from any
source tree (``--unmask_src``, repeatable, so another branch can be timed in the same run).

Why separate processes: the two sides need different transformers versions, and a fresh process
per side keeps one side's allocator and thread state out of the other's timings. Each worker
loads the checkpoint once per row, runs one untimed warm-up (one block), then answers timed
requests; the driver interleaves them A B A B (reference, unmask, reference, unmask, ...) so a
change in the machine's load hits both sides alike. Every worker runs one torch thread.

Per row it reports the median process CPU seconds and wall seconds of one whole generation (the
batch's prompts; the reference loop takes one prompt at a time, so it runs them one after
another), the loop's own CPU seconds (the total minus the CPU time inside the model's
``forward``, which ends at the logits), the ratios unmask / reference of both, the forwards (NFE)
and whether the generated tokens are identical.

    # the reference environment (once): see docs/benchmarks.md, "Next to Fast-dLLM"
    nice -n 10 env PYTHONPATH=src OMP_NUM_THREADS=1 python3 benchmarks/bench_fast_dllm.py \\
        --fast_dllm /path/to/Fast-dLLM --ref_python /path/to/refenv/bin/python
    # also time another branch's source in the same run
    ... --unmask_src src --unmask_src /path/to/other/worktree/src
"""

from __future__ import annotations

import argparse
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: model shapes: name -> (layers, d_model, heads, MLP hidden, vocabulary)
MODELS = {
    "probe": (1, 64, 4, 128, 126_464),  # benchmarks/bench_engine.py's probe: LLaDA-8B's vocabulary
    "d512": (6, 512, 8, 1536, 32_000),
}

#: the issue's table: name -> (label, model, cache, threshold (None: one token per step), batch)
ROWS = {
    "dual_thr": ("dual cache, threshold 0.9, batch 1, V 126k", "probe", "dual", 0.9, 1),
    "dual_one": ("dual cache, one token per step, batch 1, V 126k", "probe", "dual", None, 1),
    "dual_one_b4": ("dual cache, one token per step, batch 4, V 126k", "probe", "dual", None, 4),
    "dual_thr_d512": ("dual cache, threshold 0.9, batch 1, d512 / 6 layers / V 32k", "d512", "dual", 0.9, 1),
    "none_one": ("no cache, one token per step, batch 1, V 126k", "probe", "none", None, 1),
}

REF = "fast_dllm"


# ----------------------------------------------------------------------------- workers


def _serve(model, run) -> None:
    """Answer JSON requests, one per line on stdin, with one JSON line each on the original stdout
    (everything else the libraries print goes to stderr, so it cannot corrupt a reply). The
    model's ``forward`` (transformer and LM head, up to the logits) is wrapped to add up the CPU
    time spent in it, so the loop's own cost is the total minus that."""
    reply = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    inside = {"cpu": 0.0, "calls": 0}
    forward = model.forward

    def timed(*a, **k):
        c0 = time.process_time()
        try:
            return forward(*a, **k)
        finally:
            inside["cpu"] += time.process_time() - c0
            inside["calls"] += 1

    model.forward = timed
    for line in sys.stdin:
        req = json.loads(line)
        inside.update(cpu=0.0, calls=0)
        c0, w0 = time.process_time(), time.perf_counter()
        tokens, nfe = run(req)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        reply.write(json.dumps({"cpu": cpu, "wall": wall, "model_cpu": inside["cpu"], "forwards": inside["calls"],
                                "tokens": tokens, "nfe": nfe}) + "\n")
        reply.flush()


def worker_reference(ckpt: str, fast_dllm: str) -> None:
    """Runs inside the reference's environment: imports Fast-dLLM's loop and model class by path."""
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(fast_dllm) / "llada"))
    import generate as fast  # Fast-dLLM llada/generate.py
    from model.modeling_llada import LLaDAModelLM  # Fast-dLLM's model code (with the dual cache)

    model = LLaDAModelLM.from_pretrained(ckpt, torch_dtype=torch.float32).eval()
    mask_id = json.loads((Path(ckpt) / "config.json").read_text())["mask_token_id"]

    def run(req):
        loop = fast.generate_with_dual_cache if req["cache"] == "dual" else fast.generate
        tokens, nfe = [], 0
        for p in req["prompts"]:  # the reference builds a batch-1 canvas: one prompt at a time
            with torch.no_grad():
                out, n = loop(model, torch.tensor([p]), steps=req["steps"], gen_length=req["gen_length"],
                              block_length=req["block"], temperature=0.0, remasking="low_confidence",
                              mask_id=mask_id, threshold=req["threshold"])
            tokens.append(out[0, len(p):].tolist())
            nfe += n
        return tokens, nfe

    _serve(model, run)


def worker_unmask(ckpt: str) -> None:
    """Runs with PYTHONPATH set to the unmask source tree under test; public API only, so any
    branch's engine layout works."""
    import torch

    torch.set_num_threads(1)
    import unmask
    from unmask.models.loading import load_model

    src = Path(os.environ["PYTHONPATH"]).resolve()
    if src not in Path(unmask.__file__).resolve().parents:  # an installed copy would shadow the tree under test
        raise SystemExit(f"unmask imported from {unmask.__file__}, not from {src}")

    model = load_model(ckpt, dtype="float32")

    def run(req):
        kw = dict(max_new_tokens=req["gen_length"], block_size=req["block"], use_cache=req["cache"],
                  stop_at_eos=False, temperature=0.0, seed=0, compat="fast_dllm")
        if req["threshold"] is not None:
            out = unmask.generate(model, req["prompts"], "threshold", threshold=req["threshold"], **kw)
        else:
            out = unmask.generate(model, req["prompts"], "confidence", steps=req["steps"], **kw)
        return [list(g) for g in out.generated], out.nfe

    _serve(model, run)


# ----------------------------------------------------------------------------- driver


class Worker:
    """One side's long-lived subprocess for one row."""

    def __init__(self, cmd: list[str], env: dict[str, str], log: Path, timeout: float) -> None:
        self.log = log
        self.timeout = timeout
        self.err = open(log, "w")
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, text=True, bufsize=1)

    def ask(self, req: dict) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.close()
            tail = self.log.read_text()[-2000:]
            why = "no answer in time (the reference can loop forever)" if not ready else "the worker died"
            raise RuntimeError(f"{why}; its log ({self.log}) ends with:\n{tail}")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()


def _label(src: Path) -> str:
    """branch@commit of an unmask source tree (marked '+dirty' with uncommitted changes there)."""
    try:
        git = ["git", "-C", str(src)]
        branch = subprocess.check_output(git + ["rev-parse", "--abbrev-ref", "HEAD"], text=True,
                                         stderr=subprocess.DEVNULL).strip()
        sha = subprocess.check_output(git + ["rev-parse", "--short", "HEAD"], text=True).strip()
        dirty = subprocess.run(git + ["diff", "--quiet", "HEAD", "--", "."], capture_output=True).returncode
        return f"{branch}@{sha}" + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):  # not a git checkout, e.g. an exported snapshot
        return f"{src.parent.name}/{src.name}"


def write_checkpoint(model: str, folder: Path) -> None:
    """The row's random-weight LLaDA, in the official layout both sides load (weights fixed by seed 0)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import random_llada

    from unmask.models.loading import save_model

    layers, d, heads, mlp, vocab = MODELS[model]
    save_model(random_llada(n_layers=layers, d_model=d, n_heads=heads, mlp_hidden=mlp, vocab=vocab, seed=0),
               folder, dtype="float32")


def prompts_for(batch: int, length: int, vocab: int, seed: int = 1) -> list[list[int]]:
    """Random ordinary token ids (the top two ids, EOS/PAD and mask, are avoided); a small LCG, so
    the prompts depend on nothing but the arguments."""
    state, out = seed, []
    for _ in range(batch):
        row = []
        for _ in range(length):
            state = (1103515245 * state + 12345) % (2**31)
            row.append(state % (vocab - 2))
        out.append(row)
    return out


def run_row(name: str, args, sides: list[tuple[str, list[str], dict[str, str]]], ckpt: Path, logs: Path) -> dict:
    label, model, cache, threshold, batch = ROWS[name]
    vocab = MODELS[model][4]
    req = {"prompts": prompts_for(batch, args.prompt, vocab), "gen_length": args.new_tokens, "block": args.block,
           "steps": args.new_tokens, "cache": cache, "threshold": threshold}
    warm = dict(req, gen_length=args.block, steps=args.block, prompts=req["prompts"][:1])
    workers = {}
    try:
        for side, cmd, env in sides:
            workers[side] = Worker(cmd + ["--ckpt", str(ckpt)], env, logs / f"{name}-{side.replace('/', '_')}.log",
                                   args.timeout)
        for w in workers.values():
            w.ask(warm)
        runs: dict[str, list[dict]] = {side: [] for side in workers}
        for _ in range(args.repeats):
            for side, w in workers.items():  # interleaved: A B A B ...
                runs[side].append(w.ask(req))
    finally:
        for w in workers.values():
            w.close()
    med = statistics.median
    ref_tokens = runs[REF][-1]["tokens"]
    result = {"row": name, "label": label, "sides": {}}
    for side, rs in runs.items():
        result["sides"][side] = {
            "cpu_s": med(r["cpu"] for r in rs), "wall_s": med(r["wall"] for r in rs),
            "loop_cpu_s": med(r["cpu"] - r["model_cpu"] for r in rs), "forwards": rs[-1]["forwards"],
            "cpu_runs": [r["cpu"] for r in rs], "wall_runs": [r["wall"] for r in rs], "nfe": rs[-1]["nfe"],
            "identical": all(r["tokens"] == ref_tokens for r in rs), "tokens": rs[-1]["tokens"],
        }
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fast_dllm", default=os.environ.get("FAST_DLLM"),
                    help="checkout of NVlabs/Fast-dLLM (holds llada/generate.py); default $FAST_DLLM")
    ap.add_argument("--ref_python", default=os.environ.get("FAST_DLLM_PYTHON"),
                    help="the reference environment's Python (transformers 4.46.3); default $FAST_DLLM_PYTHON")
    ap.add_argument("--unmask_src", action="append", type=Path,
                    help="unmask source tree to time (the folder holding unmask/); repeatable; default this "
                         "checkout's src")
    ap.add_argument("--rows", nargs="+", choices=sorted(ROWS), help="default: all of the issue's rows")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prompt", type=int, default=32, help="prompt length")
    ap.add_argument("--new_tokens", type=int, default=128)
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds one generation may take")
    ap.add_argument("--json", type=Path, help="write the results (with the tokens) here")
    ap.add_argument("--worker", choices=[REF, "unmask"], help=argparse.SUPPRESS)
    ap.add_argument("--ckpt", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def check_args(args: argparse.Namespace) -> str | None:
    """The first problem with the arguments, as one line, or None."""
    if args.repeats < 1:
        return f"--repeats must be at least 1 (got {args.repeats})"
    if args.prompt < 1 or args.block < 1 or args.new_tokens < 1:
        return "--prompt, --new_tokens and --block must be positive"
    if args.new_tokens % args.block:
        return f"--new_tokens ({args.new_tokens}) must be a multiple of --block ({args.block}), as the reference asserts"
    if not args.fast_dllm or not (Path(args.fast_dllm) / "llada" / "generate.py").is_file():
        return f"--fast_dllm must name a Fast-dLLM checkout holding llada/generate.py (got {args.fast_dllm!r})"
    if not args.ref_python or not os.access(args.ref_python, os.X_OK):
        return f"--ref_python must name the reference environment's python executable (got {args.ref_python!r})"
    for src in args.unmask_src or []:
        if not (src / "unmask" / "__init__.py").is_file():
            return f"--unmask_src {src} holds no unmask/__init__.py"
    return None


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker == REF:
        return worker_reference(args.ckpt, args.fast_dllm)
    if args.worker == "unmask":
        return worker_unmask(args.ckpt)
    problem = check_args(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    here = Path(__file__).resolve()
    srcs = [s.resolve() for s in (args.unmask_src or [here.parents[1] / "src"])]
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    base.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    sides = [(REF, [args.ref_python, str(here), "--worker", REF, "--fast_dllm", str(args.fast_dllm)], dict(base))]
    labels = {REF: "Fast-dLLM"}
    for src in srcs:
        side = f"unmask:{_label(src)}"
        if side in labels:
            side = f"unmask:{src}"
        labels[side] = side.split(":", 1)[1]
        sides.append((side, [sys.executable, str(here), "--worker", "unmask"], dict(base, PYTHONPATH=str(src))))
    tmp = Path(tempfile.mkdtemp(prefix="bench-fast-dllm-"))
    rows = args.rows or list(ROWS)
    print(f"# {args.prompt}-token prompts, {args.new_tokens} new tokens, block {args.block}, temperature 0, "
          f"one torch thread per side, medians of {args.repeats} interleaved repeats; logs in {tmp}", flush=True)
    unm = [s for s, _, _ in sides if s != REF]
    head = "| setting | Fast-dLLM CPU s (wall s) | loop | " + " | ".join(
        f"unmask {labels[s]} CPU s (wall s) | loop | / reference: total, loop | identical?" for s in unm)
    print(head + " | NFE ref / unmask |")
    print("|" + "---|" * (4 + 4 * len(unm)))
    results = []
    for name in rows:
        _, model, *_ = ROWS[name]
        ckpt = tmp / model
        if not ckpt.exists():
            write_checkpoint(model, ckpt)
        try:
            r = run_row(name, args, sides, ckpt, tmp)
        except RuntimeError as e:
            print(f"| {ROWS[name][0]} | failed: {str(e).splitlines()[0]} |", flush=True)
            results.append({"row": name, "error": str(e)})
            continue
        results.append(r)
        ref = r["sides"][REF]
        cells = [f"{ref['cpu_s']:.2f} ({ref['wall_s']:.2f})", f"{ref['loop_cpu_s']:.2f}"]
        for s in unm:
            u = r["sides"][s]
            cells += [f"{u['cpu_s']:.2f} ({u['wall_s']:.2f})", f"{u['loop_cpu_s']:.2f}",
                      f"{u['cpu_s'] / ref['cpu_s']:.2f}x, {u['loop_cpu_s'] / ref['loop_cpu_s']:.2f}x",
                      "yes" if u["identical"] else "NO"]
        nfe = " / ".join(str(r["sides"][s]["nfe"]) for s in [REF] + unm)
        print(f"| {r['label']} | " + " | ".join(cells) + f" | {nfe} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": results},
                                        indent=1))


if __name__ == "__main__":
    main()
