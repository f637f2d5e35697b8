"""Engine-overhead probe (issue 26): what the decoding loop costs *besides* the model.

Model: a random LLaDA with one layer (d_model 64, 4 heads, MLP 128) and LLaDA-8B's vocabulary
(126,464), so the forward is cheap and the engine's own cost is exposed. Prompt 32 tokens, 64 new
tokens, block 32, dual cache, ``stop_at_eos=False``, one torch thread.

Per row of the table:

* engine ms/step: process CPU time of ``generate()`` minus the CPU time spent inside the model's
  ``forward`` (transformer + LM head, ending at the logits), divided by the steps; the same
  figure from wall-clock time is given as well;
* model ms/step: CPU (and wall) time inside the forward, per step;
* host syncs/step: calls of ``item``, ``tolist``, ``cpu``, ``numpy``, ``__bool__``, ``__float__``,
  ``__int__``, ``__index__`` and ``nonzero`` on tensors (each one blocks on a GPU), counted with a
  ``torch.overrides.TorchFunctionMode`` over the whole step, model included, in a separate
  untimed run (the mode itself costs time);
* KV bytes/step: bytes of cached keys and values the cache layer copies (scratch set-up,
  the window written in place, row gathers, concatenations), from a separate untimed run.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_engine.py            # the issue's rows
    PYTHONPATH=src python benchmarks/bench_engine.py --rows confidence:1:0 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import random_llada, random_prompts  # noqa: E402

from unmask.decoding.engine import Engine, GenerationConfig  # noqa: E402
from unmask.decoding.host_syncs import HostSyncCounter  # noqa: E402
from unmask.samplers.base import make_sampler  # noqa: E402

VOCAB = 126_464
#: (sampler, batch, temperature, sampler options): the issue's table
ROWS: list[tuple[str, int, float, dict[str, Any]]] = [
    ("confidence", 1, 0.0, {}),
    ("confidence", 8, 0.0, {}),
    ("confidence", 1, 0.7, {}),
    ("confidence", 4, 0.7, {}),
    ("info_gain", 1, 0.0, {"candidate_number": 4}),
]

class ForwardTimer:
    """Wraps ``model.forward`` to add up the CPU and wall time spent inside it."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.cpu = 0.0
        self.wall = 0.0
        self._orig = model.forward

        def timed(*a, **k):
            c0, w0 = time.process_time(), time.perf_counter()
            try:
                return self._orig(*a, **k)
            finally:
                self.cpu += time.process_time() - c0
                self.wall += time.perf_counter() - w0

        model.forward = timed

    def reset(self) -> None:
        self.cpu = self.wall = 0.0


def kv_bytes_probe():
    """Bytes of cached keys/values the cache layer copies (``unmask.models.cache.COPY_STATS``: the
    scratch set-up once per refresh, restores, the window written in place, row gathers and
    concatenations), counted from now until the returned ``restore`` is called."""
    from unmask.models import cache as cache_mod

    counter = {"bytes": 0}
    start = cache_mod.COPY_STATS["bytes"]

    def restore() -> None:
        counter["bytes"] = cache_mod.COPY_STATS["bytes"] - start

    return counter, restore


def run_row(model, sampler_name: str, batch: int, temperature: float, opts: dict[str, Any], args) -> dict[str, Any]:
    prompts = random_prompts(batch, [args.prompt], VOCAB - 2, seed=1)
    cfg = GenerationConfig(max_new_tokens=args.new_tokens, block_size=args.block, use_cache="dual",
                           stop_at_eos=False, temperature=temperature, seed=0)
    sampler = make_sampler(sampler_name, **opts)
    eng = Engine(model, sampler)
    timer = model._bench_timer
    eng.generate(prompts, cfg)  # warm-up
    cpu, wall, mcpu, mwall, steps_ = [], [], [], [], 0
    out = None
    for _ in range(args.repeats):
        timer.reset()
        c0, w0 = time.process_time(), time.perf_counter()
        out = eng.generate(prompts, cfg)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
        mcpu.append(timer.cpu)
        mwall.append(timer.wall)
    steps_ = max(len(t.steps) for t in out.traces)
    with HostSyncCounter() as sc:
        eng.generate(prompts, cfg)
    counter, restore = kv_bytes_probe()
    try:
        eng.generate(prompts, cfg)
    finally:
        restore()
    med = statistics.median
    return {
        "sampler": sampler_name + (f" (N={opts['candidate_number']})" if "candidate_number" in opts else ""),
        "batch": batch, "temperature": temperature, "steps": steps_, "nfe": out.nfe,
        "engine_ms_step": 1000 * (med(cpu) - med(mcpu)) / steps_,
        "model_ms_step": 1000 * med(mcpu) / steps_,
        "engine_wall_ms_step": 1000 * (med(wall) - med(mwall)) / steps_,
        "model_wall_ms_step": 1000 * med(mwall) / steps_,
        "syncs_step": sc.count / steps_,
        "syncs_by_name": sc.by_name,
        "kv_bytes_step": counter["bytes"] / steps_,
        "total_cpu_s": med(cpu),
        "tokens": [list(g) for g in out.generated],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", nargs="*", help="sampler:batch:temperature (default: the issue's table)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--new_tokens", type=int, default=64)
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--json", type=Path, help="write the rows (with the generated tokens) here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = ROWS
    if args.rows:
        rows = []
        for spec in args.rows:
            name, b, t = spec.split(":")
            rows.append((name, int(b), float(t), {"candidate_number": 4} if name == "info_gain" else {}))
    model = random_llada(n_layers=1, d_model=64, n_heads=4, mlp_hidden=128, vocab=VOCAB, seed=0)
    model._bench_timer = ForwardTimer(model)
    results = []
    print("| sampler | batch | T | engine ms/step (CPU) | model ms/step (CPU) | engine ms/step (wall) | "
          "model ms/step (wall) | host syncs/step | KV bytes copied/step |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, b, t, opts in rows:
        r = run_row(model, name, b, t, opts, args)
        results.append(r)
        print(f"| {r['sampler']} | {b} | {t:g} | {r['engine_ms_step']:.1f} | {r['model_ms_step']:.1f} | "
              f"{r['engine_wall_ms_step']:.1f} | {r['model_wall_ms_step']:.1f} | {r['syncs_step']:.1f} | "
              f"{r['kv_bytes_step'] / 1e6:.2f} MB |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
