"""KV-cache benchmark (issue 4): tokens/s, NFE and peak memory for ``use_cache`` none / prefix / dual.

Model: a LLaDA-architecture transformer with random weights, 6 layers, d_model 512, 8 heads
(head dim 64), SwiGLU MLP hidden size 1376, vocabulary 32000, fp32 (~51.7M parameters, 16.4M of
them in the untied LM head). One prompt of 128 random tokens (batch 1, like the Fast-dLLM
throughput numbers), ``max_new_tokens`` in {256, 512, 1024}, ``block_size`` 32, one token per step
(``steps = max_new_tokens``). EOS is suppressed so every run generates exactly ``max_new_tokens``
tokens. Rows: the ``confidence`` sampler with each cache mode, and the ``threshold`` sampler
(0.9) with the dual cache. On a random model no position ever reaches 0.9, so that row commits one
token per step, like the others; the trained tiny-sudoku model row shows the parallel effect.

Every measurement runs in a fresh subprocess (``--worker``), so the peak-RSS figure of one
configuration is not hidden by an earlier, larger one. Repeats are interleaved (all
configurations once, then again ...) and the tables give medians.

Long runs are estimated where a full run is not feasible on a small CPU (``--full-max``):
the engine runs normally for ``--sample-steps`` steps of *every* block, a ``tokens_hook`` then
fills the rest of the block and decoding moves on. Per block, the estimate is the first step
(which contains the refresh forward in the cached modes) plus (block steps - 1) times the median of
the block's other sampled steps. NFE is exact for these runs (one forward per step). Estimated
rows are marked ``est``; the "extrapolation check" table compares the estimate with a full run.

``--profile`` adds an in-process breakdown per step: model forwards by kind (full canvas, refresh,
cached window), the share of the LM head in them, and the engine's own work (logit processing, the
per-row view with softmax/entropy/proposal over the whole vocabulary, the sampler, commit and trace).

    python benchmarks/bench_cache.py --quick
    python benchmarks/bench_cache.py --profile --json bench_cache.json
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

from _common import (  # noqa: E402
    PeakMemory,
    machine_line,
    md_table,
    median,
    random_llada,
    random_prompts,
    run_worker,
    setup_torch,
    spread,
    sync,
)

from unmask.decoding import engine as engine_mod  # noqa: E402
from unmask.decoding import rowstep  # noqa: E402
from unmask.decoding.engine import Engine, GenerationConfig  # noqa: E402
from unmask.decoding.runner import Runner  # noqa: E402
from unmask.decoding.state import Run  # noqa: E402
from unmask.samplers.base import make_sampler  # noqa: E402

MODEL = {"n_layers": 6, "d_model": 512, "n_heads": 8, "mlp_hidden": 1376, "vocab": 32000}
PROMPT_LEN = 128
BLOCK = 32
CONFIGS = [  # (label, sampler, sampler options, use_cache)
    ("confidence", "confidence", {}, "none"),
    ("confidence", "confidence", {}, "prefix"),
    ("confidence", "confidence", {}, "dual"),
    ("threshold 0.9", "threshold", {"threshold": 0.9}, "dual"),
]


# ----------------------------------------------------------------------------- step sampling
class StepClock:
    """``tokens_hook`` that timestamps every step and, when ``per_block`` > 0, fills the rest of
    a block with an ordinary token after ``per_block`` steps so decoding moves on."""

    def __init__(self, blocks: list[tuple[int, int]], per_block: int, mask_id: int, fill_id: int,
                 device: torch.device) -> None:
        self.blocks, self.per_block = blocks, per_block
        self.mask_id, self.fill_id, self.device = mask_id, fill_id, device
        self.block, self.in_block = 0, 0
        self.last = self.last_cpu = 0.0
        self.records: list[tuple[int, int, float, float]] = []  # (block, step in block, wall s, CPU s)
        self.overhead = self.overhead_cpu = 0.0

    def __call__(self, step, x, logits):
        sync(self.device)
        now, cpu = time.perf_counter(), time.process_time()
        if step is None:  # called once before the decoding loop
            self.last, self.last_cpu = now, cpu
            return x
        self.records.append((self.block, self.in_block, now - self.last, cpu - self.last_cpu))
        self.in_block += 1
        s, e = self.blocks[self.block]
        win = x[:, s:e]
        if self.per_block and self.in_block >= self.per_block:
            win[win == self.mask_id] = self.fill_id
        if not bool((win == self.mask_id).any()):
            self.block += 1
            self.in_block = 0
        self.last, self.last_cpu = time.perf_counter(), time.process_time()
        self.overhead += self.last - now
        self.overhead_cpu += self.last_cpu - cpu
        return x

    def estimate(self, block_steps: list[int], cpu: bool = False) -> float:
        """Full-run seconds (wall, or process CPU with ``cpu``): per block, step 0 + (steps - 1) x
        the median of the block's other sampled steps."""
        total = 0.0
        col = 3 if cpu else 2
        for b, n in enumerate(block_steps):
            ts = [r[col] for r in self.records if r[0] == b]
            if not ts:
                raise RuntimeError(f"block {b} was not sampled")
            rest = ts[1:]
            total += ts[0] + (n - 1) * (median(rest) if rest else ts[0])
        return total


# ----------------------------------------------------------------------------- one measurement
def load_tiny(name: str, device: torch.device, n_items: int):
    """The trained tiny model and its task's prompts, or raise (the caller prints n/a)."""
    from unmask.models import from_pretrained, resolve_model_path
    from unmask.tasks import task_from_json

    folder = resolve_model_path(name)
    model, _ = from_pretrained(str(folder), dtype=torch.float32, device=str(device))
    task = task_from_json(json.loads((folder / "task.json").read_text()))
    items = task.make_dataset(n_items, seed=0)
    return model.eval(), task, items, [task.prompt_ids(it) for it in items]


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """One configuration in this process (called through ``--worker``)."""
    device = setup_torch(spec["threads"], spec["device"])
    opts = dict(spec["opts"])
    cfg_kwargs: dict[str, Any] = {"use_cache": spec["use_cache"], "seed": 0}
    task = items = None
    if spec.get("tiny"):
        model, task, items, prompts = load_tiny(spec["tiny"], device, spec["n_items"])
        cfg_kwargs.update(max_new_tokens=0)
    else:
        m = spec["model"]
        model = random_llada(m["n_layers"], m["d_model"], m["n_heads"], m["mlp_hidden"], m["vocab"], seed=0)
        model = model.to(device)
        prompts = random_prompts(1, [spec["prompt_len"]], m["vocab"], seed=1)
        n_new = spec["max_new_tokens"]
        cfg_kwargs.update(max_new_tokens=n_new, block_size=spec["block"], steps=n_new,
                          suppress_token_ids=(model.config.eos_token_id,))
    # warm up kernels on a tiny input so first-call costs are not timed
    for _ in range(2):
        model.predict(torch.tensor([prompts[0][:8]], device=device))
    sync(device)

    engine = Engine(model, make_sampler(spec["sampler"], **opts))
    per_block = spec.get("sample_steps", 0)
    clock = None
    if per_block:
        if spec["sampler"] != "confidence":
            raise SystemExit("step sampling assumes one token per step (the confidence sampler)")
        p = spec["prompt_len"]
        total = p + spec["max_new_tokens"]
        blocks = [(s, min(s + spec["block"], total)) for s in range(p, total, spec["block"])]
        clock = StepClock(blocks, per_block, model.config.mask_token_id, fill_id=5, device=device)
        cfg_kwargs["tokens_hook"] = clock
    cfg = GenerationConfig(**cfg_kwargs)
    with PeakMemory(device) as mem:
        cpu0 = time.process_time()
        out = engine.generate(prompts, cfg)
        cpu_seconds = time.process_time() - cpu0
    res: dict[str, Any] = {
        "nfe": out.nfe, "forward_rows": out.forward_rows, "measured_seconds": out.seconds,
        "nfe_per_prompt": sum(t.nfe for t in out.traces) / len(out.traces),
        "measured_cpu_seconds": cpu_seconds, "cpu_seconds": cpu_seconds,
        "peak_delta_mb": mem.delta_mb, "peak_mb": mem.peak_mb, "estimated": bool(per_block),
    }
    if clock is not None:
        block_steps = [e - s for s, e in clock.blocks]  # one token per step
        seconds = clock.estimate(block_steps)
        res.update(seconds=seconds, cpu_seconds=clock.estimate(block_steps, cpu=True),
                   nfe=sum(block_steps), tokens=spec["max_new_tokens"],
                   sampled_steps=len(clock.records), hook_seconds=clock.overhead)
    elif task is not None:
        filled = sum(p.count(model.config.mask_token_id) for p in prompts)
        solved = [task.score(it, seq)["correct"] for it, seq in zip(items, out.sequences)]
        res.update(seconds=out.seconds, tokens=filled, solved=sum(solved) / len(solved))
    else:
        res.update(seconds=out.seconds, tokens=out.generated_tokens)
    res["tokens_per_second"] = res["tokens"] / res["seconds"]
    res["tokens_per_cpu_second"] = res["tokens"] / res["cpu_seconds"]
    return res


# ----------------------------------------------------------------------------- profile
def flops_per_forward(q: int, keys: int, window_head: int) -> float:
    """Dense matmul FLOPs of one forward: q query rows through the layers, attention over ``keys``
    keys, and the LM head over ``window_head`` rows."""
    d, h, n, v = MODEL["d_model"], MODEL["mlp_hidden"], MODEL["n_layers"], MODEL["vocab"]
    layer_params = n * (4 * d * d + 3 * d * h)
    return 2 * q * layer_params + 4 * n * q * keys * d + 2 * window_head * d * v


def compute_model(n_new: int, mode: str, head_only_block: bool = True) -> float:
    """Total dense GFLOPs of a confidence run (one token per step). ``head_only_block``: the LM head
    runs only on the block's positions (what the engine reads; the rule since commit 0fe8119),
    otherwise on every computed position (full canvas, or the whole prefix-mode window)."""
    total_len = PROMPT_LEN + n_new
    gf = 0.0
    for s in range(PROMPT_LEN, total_len, BLOCK):
        e = min(s + BLOCK, total_len)
        steps = e - s
        full_head = (e - s) if head_only_block else total_len
        if mode == "none":
            gf += steps * flops_per_forward(total_len, total_len, full_head)
            continue
        gf += flops_per_forward(total_len, total_len, full_head)  # refresh
        w = (total_len - s) if mode == "prefix" else (e - s)
        gf += (steps - 1) * flops_per_forward(w, total_len, (e - s) if head_only_block else w)
    return gf / 1e9


class Timers:
    """Accumulated time per wrapped call: process CPU time on CPU (robust to other processes on a
    shared machine when torch runs one thread), wall time with a device sync on CUDA."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.acc: dict[str, list[float]] = {}
        self.kind = "?"
        self.clock = time.perf_counter if device.type == "cuda" else time.process_time

    def add(self, key: str, dt: float) -> None:
        a = self.acc.setdefault(key, [0.0, 0])
        a[0] += dt
        a[1] += 1

    def wrap(self, obj: Any, name: str, key: str | None = None, kind_of=None) -> None:
        fn = getattr(obj, name)
        timers = self

        def wrapped(*args, **kwargs):
            prev = timers.kind
            if kind_of is not None:
                timers.kind = kind_of(*args, **kwargs)
            sync(timers.device)
            t = timers.clock()
            try:
                return fn(*args, **kwargs)
            finally:
                sync(timers.device)
                k = key or name
                timers.add(f"{k}:{timers.kind}" if kind_of is not None or key == "head" else k,
                           timers.clock() - t)
                timers.kind = prev

        setattr(obj, name, wrapped)

    def total(self, prefix: str) -> float:
        return sum(v[0] for k, v in self.acc.items() if k.startswith(prefix))

    def mean_ms(self, key: str) -> float | None:
        a = self.acc.get(key)
        return 1e3 * a[0] / a[1] if a and a[1] else None


def predict_kind(*args, **kwargs) -> str:
    """Which kind of forward a ``model.predict`` call is (its signature may grow: read kwargs)."""
    if kwargs.get("return_cache"):
        return "refresh"
    cache = kwargs.get("cache", args[2] if len(args) > 2 else None)
    return "window" if cache is not None else "full"


def profile(args, device: torch.device, n_new: int, per_block: int) -> dict[str, Any]:
    """Per-step cost breakdown of sampled runs, in this process."""
    m = MODEL
    rows, raw = [], {}
    model = random_llada(m["n_layers"], m["d_model"], m["n_heads"], m["mlp_hidden"], m["vocab"], seed=0).to(device)
    prompts = random_prompts(1, [PROMPT_LEN], m["vocab"], seed=1)
    for _ in range(2):
        model.predict(torch.tensor([prompts[0][:8]], device=device))
    total_len = PROMPT_LEN + n_new
    blocks = [(s, min(s + BLOCK, total_len)) for s in range(PROMPT_LEN, total_len, BLOCK)]
    n_blocks = len(blocks)
    for mode in ("none", "prefix", "dual"):
        timers = Timers(device)
        timers.wrap(model, "predict", kind_of=predict_kind)
        timers.wrap(model, "head", key="head")
        engine = Engine(model, make_sampler("confidence"))
        # the loop's parts by module since the split (issue 26); put back after the run
        parts = [(Runner, "process", "_process"), (rowstep, "view", "_view"), (Run, "commit", "_commit"),
                 (engine_mod, "handle_stops", "_handle_stops")]
        saved = [(obj, name, getattr(obj, name)) for obj, name, _ in parts]
        for obj, name, key in parts:
            timers.wrap(obj, name, key=key)
        timers.wrap(engine.sampler, "select")
        clock = StepClock(blocks, per_block, model.config.mask_token_id, fill_id=5, device=device)
        cfg = GenerationConfig(max_new_tokens=n_new, block_size=BLOCK, steps=n_new, use_cache=mode, seed=0,
                               suppress_token_ids=(model.config.eos_token_id,), tokens_hook=clock)
        engine.generate(prompts, cfg)
        del model.predict, model.head  # back to the class methods
        for obj, name, fn in saved:
            setattr(obj, name, fn)
        steps = len(clock.records)
        on_cpu = device.type == "cpu"
        step_s = sum(r[3 if on_cpu else 2] for r in clock.records)
        hook_s = clock.overhead_cpu if on_cpu else clock.overhead
        fwd = timers.total("predict:")
        eng = {k: timers.total(k) / steps * 1e3 for k in ("_process", "_view", "select", "_commit", "_handle_stops")}
        other = (step_s - fwd - hook_s) / steps * 1e3 - sum(eng.values())
        eng_ms = sum(eng.values()) + other
        # a full run: none = n_new full forwards; cached = n_blocks refreshes + the rest windows
        if mode == "none":
            fwd_full = n_new * (timers.mean_ms("predict:full") or 0.0)
        else:
            fwd_full = n_blocks * (timers.mean_ms("predict:refresh") or 0.0) + \
                (n_new - n_blocks) * (timers.mean_ms("predict:window") or 0.0)
        eng_full = n_new * eng_ms
        head_kinds = {k.split(":")[1]: timers.mean_ms(k) for k in timers.acc if k.startswith("head:")}
        raw[mode] = {"steps_sampled": steps, "engine_ms_per_step": eng, "engine_other_ms": other,
                     "predict_ms": {k: timers.mean_ms(f"predict:{k}") for k in ("full", "refresh", "window")},
                     "head_ms": head_kinds, "est_full_run_forward_s": fwd_full / 1e3,
                     "est_full_run_engine_s": eng_full / 1e3,
                     "gflops_full_run": compute_model(n_new, mode),
                     "gflops_full_run_head_everywhere": compute_model(n_new, mode, head_only_block=False)}
        pk = timers.mean_ms("predict:full") if mode == "none" else timers.mean_ms("predict:window")
        hk = head_kinds.get("full") if mode == "none" else head_kinds.get("window")
        rows.append([
            mode, timers.mean_ms("predict:refresh"), pk, hk,
            eng["_process"], eng["_view"], eng["select"], eng["_commit"] + eng["_handle_stops"], other, eng_ms,
            f"{100 * eng_full / (eng_full + fwd_full):.1f}%",
            f"{raw[mode]['gflops_full_run']:.0f}",
            f"{raw['none']['gflops_full_run'] / raw[mode]['gflops_full_run']:.2f}x",
        ])
    table = md_table(
        ["use_cache", "refresh fwd ms", "per-step fwd ms", "of which LM head ms", "engine: _process ms",
         "_view ms", "sampler ms", "commit+stops ms", "other ms", "engine total ms/step",
         "engine share of full run", "GFLOP full run (analytic)", "compute-bound speed-up vs none"], rows)
    out = {"table": table, "raw": raw}
    if args.torch_profile:
        out["torch_profile"] = torch_profile(model, prompts, device, n_new, blocks)
    return out


def torch_profile(model, prompts, device, n_new, blocks) -> str:
    """torch.profiler op table over the first sampled steps of a dual-cache run."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    clock = StepClock(blocks[:4], 4, model.config.mask_token_id, fill_id=5, device=device)
    cfg = GenerationConfig(max_new_tokens=min(n_new, 4 * BLOCK), block_size=BLOCK, steps=min(n_new, 4 * BLOCK),
                           use_cache="dual", seed=0, suppress_token_ids=(model.config.eos_token_id,),
                           tokens_hook=clock)
    with tprofile(activities=acts) as prof:
        Engine(model, make_sampler("confidence")).generate(prompts, cfg)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)


# ----------------------------------------------------------------------------- driver
def _x(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}x"


def _verdict(v: float | None, goal: float) -> str:
    return "met" if (v or 0) >= goal else "MISSED"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="256/512 only, everything estimated, 1 repeat")
    ap.add_argument("--lengths", type=int, nargs="+", default=None, help="max_new_tokens values")
    ap.add_argument("--repeats", type=int, default=None, help="runs per configuration (default 3, quick 1)")
    ap.add_argument("--full-max", type=int, default=None,
                    help="longest max_new_tokens run in full; longer ones are estimated (default 512, quick 0)")
    ap.add_argument("--sample-steps", type=int, default=None, help="timed steps per block when estimating (4; quick 3)")
    ap.add_argument("--no-check", action="store_true", help="skip the extrapolation check")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on a shared 2-core box more threads thrash)")
    ap.add_argument("--tiny-model", default="tiny-sudoku", help="trained tiny model for the parallel row ('' = skip)")
    ap.add_argument("--tiny-items", type=int, default=8, help="puzzles decoded in one batch for the tiny rows")
    ap.add_argument("--profile", action="store_true", help="add the per-step cost breakdown")
    ap.add_argument("--profile-only", action="store_true", help="only the profile (implies --profile)")
    ap.add_argument("--tiny-only", action="store_true", help="only the trained tiny model rows")
    ap.add_argument("--profile-length", type=int, default=512)
    ap.add_argument("--torch-profile", action="store_true", help="with --profile: torch.profiler op table (dual)")
    ap.add_argument("--json", metavar="PATH", help="also write every number to this JSON file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        print(json.dumps(measure(json.loads(args.worker))), flush=True)
        return

    args.profile = args.profile or args.profile_only
    lengths = args.lengths or ([256, 512] if args.quick else [256, 512, 1024])
    if args.profile_only:
        lengths, args.tiny_model = [], ""
    if args.tiny_only:
        lengths, args.profile = [], False
    repeats = args.repeats or (1 if args.quick else 3)
    full_max = args.full_max if args.full_max is not None else (0 if args.quick else 512)
    per_block = args.sample_steps or (3 if args.quick else 4)
    device = setup_torch(args.threads, args.device)
    script = str(Path(__file__).resolve())
    base = {"threads": args.threads, "device": args.device, "model": MODEL, "prompt_len": PROMPT_LEN, "block": BLOCK}
    started = time.time()
    header = [
        "## bench_cache",
        "",
        f"Machine: {machine_line(args.threads, device)}.",
        f"Model: random LLaDA, {MODEL['n_layers']} layers, d_model {MODEL['d_model']}, {MODEL['n_heads']} heads, "
        f"MLP hidden {MODEL['mlp_hidden']}, vocab {MODEL['vocab']}, fp32. Prompt {PROMPT_LEN} tokens, batch 1, "
        f"block {BLOCK}, steps = max_new_tokens. Medians of {repeats} interleaved run(s), each in a fresh process. "
        "tokens/s wall = GenerationOutput.tokens_per_second; tokens per CPU-s divides by the process CPU "
        "time of generate() instead (with one torch thread this is what an idle core would give; it is much "
        "less sensitive to other jobs on the machine).",
        "",
    ]
    print("\n".join(header), flush=True)

    # --- main grid
    plan = []
    for length in lengths:
        for label, sampler, opts, mode in CONFIGS:
            sampled = length > full_max and sampler == "confidence"
            plan.append((length, label, sampler, tuple(sorted(opts.items())), mode, per_block if sampled else 0))
    results: dict[tuple, list[dict]] = {}
    for rep in range(repeats):
        for key in plan:
            length, label, sampler, opts, mode, steps = key
            spec = {**base, "max_new_tokens": length, "sampler": sampler, "opts": dict(opts), "use_cache": mode,
                    "sample_steps": steps}
            r = run_worker(script, spec)
            results.setdefault(key, []).append(r)
            print(f"  [{time.time() - started:6.0f}s] rep {rep + 1}/{repeats} new={length} {label}/{mode}"
                  f"{' (est)' if steps else ''}: {r['tokens_per_second']:.2f} tok/s "
                  f"({r['tokens_per_cpu_second']:.2f} per CPU-s), nfe {r['nfe']}, "
                  f"peak +{r['peak_delta_mb']:.0f} MB", file=sys.stderr, flush=True)

    mem_col = "peak RSS delta MB" if device.type == "cpu" else "peak CUDA MB"
    rows, summary = [], []
    for length in lengths:
        ref = None
        for key in plan:
            if key[0] != length:
                continue
            _, label, sampler, opts, mode, steps = key
            rs = results[key]
            tps = median(r["tokens_per_second"] for r in rs)
            cps = median(r["tokens_per_cpu_second"] for r in rs)
            if label == "confidence" and mode == "none":
                ref = (tps, cps)
            speed = (tps / ref[0], cps / ref[1]) if ref else (None, None)
            how = f"est ({steps} steps/block)" if steps else f"full x{len(rs)}"
            rows.append([length, label, mode, median(r["nfe"] for r in rs), tps,
                         spread([r["tokens_per_second"] for r in rs]), _x(speed[0]), cps, _x(speed[1]),
                         median(r["peak_delta_mb"] for r in rs), how])
            summary.append({"max_new_tokens": length, "sampler": label, "use_cache": mode, "how": how,
                            "tokens_per_second": tps, "tokens_per_cpu_second": cps,
                            "speedup_vs_none": speed[0], "speedup_vs_none_cpu": speed[1], "runs": rs})
    if rows:
        print(md_table(["max_new_tokens", "sampler", "use_cache", "NFE", "tokens/s wall (median)", "wall range",
                        "speed-up (wall)", "tokens per CPU-s", "speed-up (CPU)", mem_col, "measured"], rows),
              flush=True)

    # --- targets at 512
    target_lines = []
    for s in summary:
        if s["max_new_tokens"] == 512 and s["sampler"] == "confidence" and s["use_cache"] != "none":
            goal = 4.0 if s["use_cache"] == "dual" else 2.0
            target_lines.append(
                f"- 512 new tokens, {s['use_cache']} (target >= {goal:.0f}x): wall {_x(s['speedup_vs_none'])} "
                f"{_verdict(s['speedup_vs_none'], goal)}, CPU time {_x(s['speedup_vs_none_cpu'])} "
                f"{_verdict(s['speedup_vs_none_cpu'], goal)} ({s['how']})")
    if target_lines:
        print("\nTargets:\n" + "\n".join(target_lines), flush=True)

    # --- extrapolation check: estimate vs full at the lengths that ran in full
    check_rows, checks = [], []
    full_lengths = [n for n in lengths if n <= full_max]
    if full_lengths and not args.no_check and not args.quick:
        n = max(full_lengths)
        for label, sampler, opts, mode in CONFIGS:
            if sampler != "confidence":
                continue
            spec = {**base, "max_new_tokens": n, "sampler": sampler, "opts": opts, "use_cache": mode,
                    "sample_steps": per_block}
            est = run_worker(script, spec)
            rs = results[(n, label, sampler, tuple(sorted(opts.items())), mode, 0)]
            full = median(r["tokens_per_second"] for r in rs)
            full_cpu = median(r["tokens_per_cpu_second"] for r in rs)
            check_rows.append([n, mode, full, est["tokens_per_second"], f"{est['tokens_per_second'] / full:.2f}",
                               full_cpu, est["tokens_per_cpu_second"],
                               f"{est['tokens_per_cpu_second'] / full_cpu:.2f}"])
            checks.append({"max_new_tokens": n, "use_cache": mode, "full": full, "full_cpu": full_cpu,
                           "estimate": est})
        print("\nExtrapolation check (one estimated run vs the median of the full runs):\n")
        print(md_table(["max_new_tokens", "use_cache", "full tok/s wall", "est tok/s wall", "est / full",
                        "full tok/CPU-s", "est tok/CPU-s", "est / full (CPU)"], check_rows), flush=True)

    # --- trained tiny model rows
    tiny_rows, tiny = [], []
    if args.tiny_model:
        try:
            from unmask.models import resolve_model_path

            resolve_model_path(args.tiny_model)
            ok = True
        except Exception as e:  # any failure just means "no row"
            ok = False
            reason = str(e).splitlines()[0]
        for label, sampler, opts, mode in [("confidence", "confidence", {}, "none"),
                                           ("confidence", "confidence", {}, "dual"),
                                           ("threshold 0.9", "threshold", {"threshold": 0.9}, "dual")]:
            if not ok:
                tiny_rows.append([args.tiny_model, label, mode] + [None] * 8)
                continue
            rs = [run_worker(script, {**base, "tiny": args.tiny_model, "n_items": args.tiny_items,
                                      "sampler": sampler, "opts": opts, "use_cache": mode})
                  for _ in range(repeats)]
            tps = median(r["tokens_per_second"] for r in rs)
            cps = median(r["tokens_per_cpu_second"] for r in rs)
            tiny.append({"sampler": label, "use_cache": mode, "tokens_per_second": tps,
                         "tokens_per_cpu_second": cps, "runs": rs})
            ref = tiny[0]
            tiny_rows.append([args.tiny_model, label, mode, median(r["nfe"] for r in rs),
                              median(r["nfe_per_prompt"] for r in rs), tps,
                              _x(tps / ref["tokens_per_second"]), cps, _x(cps / ref["tokens_per_cpu_second"]),
                              median(r["peak_delta_mb"] for r in rs), f"{median(r['solved'] for r in rs):.2f}"])
        print(f"\nTrained tiny model ({args.tiny_items} puzzles in one batch, infilling, one token per step "
              f"for confidence; tokens = masks filled):\n")
        if not ok:
            print(f"(not available: {reason})\n")
        print(md_table(["model", "sampler", "use_cache", "NFE (batch)", "NFE per puzzle", "tokens/s wall",
                        "speed-up (wall)",
                        "tokens per CPU-s", "speed-up (CPU)", mem_col, "solved"], tiny_rows), flush=True)

    prof = None
    if args.profile:
        n = args.profile_length
        print(f"\nPer-step profile (max_new_tokens {n}, confidence, {per_block} timed steps per block, "
              "in-process; ms of process CPU time, means per call or per step):\n", flush=True)
        prof = profile(args, device, n, per_block)
        print(prof["table"], flush=True)
        if "torch_profile" in prof:
            print("\ntorch.profiler, dual cache, first 4 blocks x 4 steps (self CPU time):\n")
            print("```\n" + prof["torch_profile"] + "\n```")

    print(f"\n(total wall time {time.time() - started:.0f} s)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "machine": machine_line(args.threads, device), "model": MODEL, "prompt_len": PROMPT_LEN, "block": BLOCK,
            "repeats": repeats, "results": summary, "targets": target_lines, "extrapolation_check": checks,
            "tiny": tiny, "profile": prof and {k: v for k, v in prof.items() if k != "table"},
        }, indent=2, default=str))


if __name__ == "__main__":
    main()
