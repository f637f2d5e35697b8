"""Block diffusion (SDAR layout, exact block cache) vs LLaDA with the dual cache: tokens/s and
forward tokens.

Models: random weights, fp32, 6 layers, d_model 512, 8 heads of 64 (no GQA), SwiGLU hidden 1376,
vocabulary 32000, untied head: the LLaDA of benchmarks/bench_cache.py and an SDAR-layout model of
the same shapes (plus the per-head q/k norms). One prompt of 128 random tokens, 256 new tokens,
one token per step, EOS suppressed so every run decodes all 256.

Rows: LLaDA, dual cache, block 32; SDAR with the exact block cache at block 4 (the reference
default) and 16 (the paper's Info-Gain setting); ``--uncached`` adds SDAR block 16 without a cache
(full block-causal forward every step). Samplers: ``confidence`` and ``info_gain`` (8 candidates, H_next
over the active block for both models: SDAR cannot look past it, and LLaDA's default ``all``
would run every later position for each candidate, which is not what is compared here).

Forward tokens = the sum over model forwards of rows x query length (the prefill and the
block appends included), counted with a forward pre-hook. Repeats are interleaved (every row
once, then again) and tokens/s is the median, by wall clock and by process CPU time (the CPU
figure is the one to compare on a shared, loaded machine).

    PYTHONPATH=src OMP_NUM_THREADS=1 python3 benchmarks/bench_sdar.py --repeats 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import random_llada, random_prompts  # noqa: E402

from unmask.decoding.engine import generate  # noqa: E402
from unmask.models.loading import build_model  # noqa: E402
from unmask.models.sdar import SDARConfig  # noqa: E402

VOCAB = 32000


def random_sdar(seed: int = 0):
    cfg = SDARConfig(
        vocab_size=VOCAB, hidden_size=512, intermediate_size=1376, num_hidden_layers=6, num_attention_heads=8,
        num_key_value_heads=8, head_dim=64, max_position_embeddings=4096, rope_theta=10000.0,
        mask_token_id=VOCAB - 1, eos_token_id=VOCAB - 2, pad_token_id=VOCAB - 2, bos_token_id=VOCAB - 2,
    )
    return build_model(cfg, seed=seed)


def count_forward_tokens(model) -> tuple[list[int], object]:
    counter = [0]

    def hook(mod, args, kwargs):
        ids = args[0] if args else kwargs["input_ids"]
        counter[0] += int(ids.shape[0] * ids.shape[1])

    return counter, model.register_forward_pre_hook(hook, with_kwargs=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--new_tokens", type=int, default=256)
    ap.add_argument("--prompt_len", type=int, default=128)
    ap.add_argument("--uncached", action="store_true", help="add SDAR rows without a cache (slow)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    llada = random_llada(6, 512, 8, 1376, VOCAB)
    sdar = random_sdar()
    prompt = random_prompts(1, [a.prompt_len], VOCAB, seed=0)
    n = a.new_tokens
    rows = []
    for sampler in ("confidence", "info_gain"):
        # Info-Gain's H_next over the active block for both models (SDAR cannot look past it; the
        # LLaDA default "all" would also run every later position for each candidate)
        scope = {"hnext_scope": "block"} if sampler == "info_gain" else {}
        rows += [
            ("LLaDA", "dual", 32, sampler, llada, dict(use_cache="dual", block_size=32, steps=n, **scope)),
            ("SDAR", "exact", 4, sampler, sdar, dict(use_cache="dual", block_size=4)),
            ("SDAR", "exact", 16, sampler, sdar, dict(use_cache="dual", block_size=16)),
        ]
        if a.uncached:
            rows.append(("SDAR", "none", 16, sampler, sdar, dict(use_cache="none", block_size=16)))
    speed: dict[int, list[float]] = {i: [] for i in range(len(rows))}
    cpu_speed: dict[int, list[float]] = {i: [] for i in range(len(rows))}
    info: dict[int, tuple[int, int, int]] = {}
    for _ in range(a.repeats):
        for i, (_, _, _, sampler, model, kw) in enumerate(rows):
            counter, handle = count_forward_tokens(model)
            try:
                t0, c0 = time.perf_counter(), time.process_time()
                out = generate(model, prompt, sampler, max_new_tokens=n, stop_at_eos=False,
                               suppress_token_ids=(VOCAB - 2,), **kw)
                dt, dc = time.perf_counter() - t0, time.process_time() - c0
            finally:
                handle.remove()
            gen = len(out.sequences[0]) - a.prompt_len
            speed[i].append(gen / dt)
            cpu_speed[i].append(gen / dc)
            info[i] = (out.nfe, counter[0], gen)
            print(f"# {rows[i][:4]}: {gen / dt:.2f} tok/s wall, {gen / dc:.2f} tok/CPU-s, nfe {out.nfe}, "
                  f"forward tokens {counter[0]}", file=sys.stderr, flush=True)
    cbase = statistics.median(cpu_speed[0])
    print(f"prompt {a.prompt_len} tokens, {n} new tokens, one token per step, batch 1, fp32, 1 CPU thread, "
          f"median of {a.repeats} interleaved repeats (shared, loaded machine)\n")
    print("| model | cache | block | sampler | tokens/s (wall) | tokens/CPU-s | CPU vs LLaDA dual confidence "
          "| NFE | forward tokens |")
    print("|---|---|---|---|---|---|---|---|---|")
    for i, (name, cache, block, sampler, _, _) in enumerate(rows):
        tps, ctps = statistics.median(speed[i]), statistics.median(cpu_speed[i])
        nfe, ftok, gen = info[i]
        print(f"| {name} | {cache} | {block} | {sampler} | {tps:.1f} | {ctps:.1f} | {ctps / cbase:.2f}x | {nfe} "
              f"| {ftok:,} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
