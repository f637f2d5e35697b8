"""GPU benchmark without a download (issue 26): real model shapes, random weights, on the device.

Builds a random-weight model with LLaDA-8B's shape (32 layers, d_model 4096, 32 heads, MLP 12288,
vocabulary 126,464) and one with Dream-7B's (28 layers, hidden 3584, 28 query / 4 key-value heads,
MLP 18944, vocabulary 152,064) directly on the device in bf16, so real timings need no
checkpoint. For each model it times ``confidence``, ``threshold`` (0.9) and ``info_gain`` under
the dual cache at batch 1, 8 and 32, and prints per row: tokens/s, ms per step, the engine's share
of the wall time (1 - time inside the model's forward, measured with CUDA events, which add no
synchronisation) and peak device memory.

Random weights give near-uniform predictions, so ``threshold`` 0.9 commits one token per step here
(like ``confidence``); the figures are the loop's cost at real shapes, not a quality result.

    python benchmarks/bench_gpu.py                   # one H100: well under 10 minutes
    python benchmarks/bench_gpu.py --small           # tiny shapes on the CPU (smoke test)
    python benchmarks/bench_gpu.py --models llada --batches 1 8 --json gpu.json
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

from _common import machine_line, md_table  # noqa: E402

from unmask.decoding.engine import Engine, GenerationConfig  # noqa: E402
from unmask.models.dream import DreamConfig  # noqa: E402
from unmask.models.llada import LLaDAConfig  # noqa: E402
from unmask.models.loading import build_model  # noqa: E402
from unmask.samplers.base import make_sampler  # noqa: E402

SHAPES: dict[str, dict[str, Any]] = {
    "llada": dict(d_model=4096, n_layers=32, n_heads=32, mlp_hidden_size=12288, vocab_size=126464,
                  embedding_size=126464, mask_token_id=126336, eos_token_id=126081, pad_token_id=126081),
    "dream": dict(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                  intermediate_size=18944, vocab_size=152064, mask_token_id=151666, eos_token_id=151643,
                  pad_token_id=151643),
}
SMALL: dict[str, dict[str, Any]] = {
    "llada": dict(d_model=64, n_layers=2, n_heads=4, mlp_hidden_size=128, vocab_size=4096, embedding_size=4096,
                  mask_token_id=4095, eos_token_id=4094, pad_token_id=4094),
    "dream": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=128, vocab_size=4096, mask_token_id=4095, eos_token_id=4094, pad_token_id=4094),
}
SAMPLERS: dict[str, dict[str, Any]] = {"confidence": {}, "threshold": {"threshold": 0.9}, "info_gain": {}}


def build(name: str, small: bool, device: torch.device, dtype: torch.dtype):
    """The model, initialised directly on ``device`` in ``dtype`` (no fp32 copy on the host)."""
    shape = (SMALL if small else SHAPES)[name]
    cfg = LLaDAConfig(**shape) if name == "llada" else DreamConfig(**shape)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = build_model(cfg, seed=0)
    finally:
        torch.set_default_dtype(old)
    return model.to(device=device, dtype=dtype).eval()


class ForwardClock:
    """Time inside ``model.forward``: CUDA events on a GPU (no synchronisation), CPU time otherwise."""

    def __init__(self, model, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.events: list[tuple[Any, Any]] = []
        self.cpu = 0.0
        orig = model.forward

        def timed(*a, **k):
            if self.cuda:
                s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                s.record()
                out = orig(*a, **k)
                e.record()
                self.events.append((s, e))
                return out
            t0 = time.perf_counter()
            try:
                return orig(*a, **k)
            finally:
                self.cpu += time.perf_counter() - t0

        model.forward = timed

    def reset(self) -> None:
        self.events, self.cpu = [], 0.0

    def seconds(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
            return sum(s.elapsed_time(e) for s, e in self.events) / 1000
        return self.cpu


def run(model, clock: ForwardClock, sampler: str, batch: int, args, device: torch.device) -> dict[str, Any]:
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(batch)
    prompts = torch.randint(0, vocab - 200, (batch, args.prompt), generator=g).tolist()
    cfg = GenerationConfig(max_new_tokens=args.new_tokens, block_size=args.block, use_cache="dual",
                           stop_at_eos=False, seed=0, compile=args.compile)
    eng = Engine(model, make_sampler(sampler, **SAMPLERS[sampler]))
    eng.generate(prompts, GenerationConfig(**{**cfg.__dict__, "max_new_tokens": args.block}))  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    clock.reset()
    t0 = time.perf_counter()
    out = eng.generate(prompts, cfg)
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    model_s = clock.seconds()
    steps = max(len(t.steps) for t in out.traces)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return {"sampler": sampler, "batch": batch, "steps": steps, "nfe": out.nfe,
            "tokens_per_s": batch * args.new_tokens / wall, "ms_per_step": 1000 * wall / steps,
            "model_ms_per_step": 1000 * model_s / steps, "engine_share": max(0.0, 1 - model_s / wall),
            "peak_gib": peak, "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", action="store_true", help="tiny shapes (runs on a CPU; a smoke test)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", nargs="+", default=["llada", "dream"], choices=sorted(SHAPES))
    ap.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=list(SAMPLERS))
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32])
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new_tokens", type=int, default=128)
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--compile", action="store_true", help="GenerationConfig.compile (torch.compile the forward)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but no GPU is visible (use --small on a CPU)")
    dtype = torch.bfloat16
    print(machine_line(torch.get_num_threads(), device), flush=True)
    results = []
    for name in args.models:
        model = build(name, args.small, device, dtype)
        clock = ForwardClock(model, device)
        for sampler in args.samplers:
            for b in args.batches:
                r = run(model, clock, sampler, b, args, device)
                r["model"] = name + (" (small)" if args.small else "")
                results.append(r)
                print(json.dumps(r), flush=True)
        del model, clock
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(md_table(["model", "sampler", "batch", "tokens/s", "ms/step", "model ms/step", "engine share",
                    "peak GiB"],
                   [[r["model"], r["sampler"], r["batch"], r["tokens_per_s"], r["ms_per_step"],
                     r["model_ms_per_step"], f"{100 * r['engine_share']:.0f}%", r["peak_gib"]] for r in results]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
