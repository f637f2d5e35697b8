"""Time and memory per image of text-to-image decoding on CPU, tiny random-weight MMaDA + MAGVIT-v2
(tests/tiny_mmada.py), plus the image-understanding prefix cache.

    PYTHONPATH=src:tests OMP_NUM_THREADS=1 python3 benchmarks/bench_t2i.py

Each configuration runs in its own process so that the peak resident memory (ru_maxrss) is its
own. Printed: wall and CPU seconds per image (medians of 3 runs after a warm-up; the CPU figure is
the robust one on a shared machine), model forwards and rows per
image, peak RSS. The model is d_model 32 with the official 126,528-id vocabulary, so the figures
measure the loop's overhead and the vocabulary-sized tensors, not a real network.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = [
    # name, sampler, image tokens, steps, guidance, sampler options
    ("maskgit-64tok", "maskgit", 64, 15, 3.5, {}),
    ("confidence-64tok", "confidence", 64, 15, 3.5, {}),
    ("info_gain-64tok-N4", "info_gain", 64, 15, 3.5, {"candidate_number": 4}),
    ("maskgit-256tok", "maskgit", 256, 15, 3.5, {}),
    ("maskgit-256tok-nocfg", "maskgit", 256, 15, 0.0, {}),
    ("info_gain-256tok-N4", "info_gain", 256, 15, 3.5, {"candidate_number": 4}),
]


def one(folder: Path, name: str) -> dict:
    import torch

    torch.set_num_threads(1)
    from unmask.models.loading import load_model
    from unmask.models.magvitv2 import load_magvitv2
    from unmask.multimodal.t2i import t2i

    _, sampler, n_img, steps, w, opts = next(c for c in CONFIGS if c[0] == name)
    model, vq = load_model(folder / "model"), load_magvitv2(folder / "vq")
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kw = dict(guidance_scale=w, steps=steps, num_image_tokens=n_img, max_text_len=512, sampler_options=opts)
    t2i(model, vq, [[5, 6, 7]], sampler, seed=0, **kw)  # warm-up
    times, cpu, out = [], [], None
    for s in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        out = t2i(model, vq, [[5, 6, 7]], sampler, seed=s + 1, **kw)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"config": name, "seconds_per_image": round(statistics.median(times), 3),
            "cpu_seconds_per_image": round(statistics.median(cpu), 3), "forwards": out.forwards,
            "model_rows": out.model_rows, "peak_rss_mb": round(peak / 1024, 1),
            "rss_over_loaded_mb": round((peak - base_rss) / 1024, 1), "image_px": int(out.images.shape[1])}


def mmu_cache(folder: Path) -> list[dict]:
    import torch

    torch.set_num_threads(1)
    from tiny import make_tokenizer

    from unmask.models.loading import load_model
    from unmask.models.magvitv2 import load_magvitv2
    from unmask.multimodal.mmu import mmu

    model, vq, tok = load_model(folder / "model"), load_magvitv2(folder / "vq"), make_tokenizer()
    img = torch.rand(3, 64, 64) * 2 - 1  # 16 x 16 = 256 image tokens
    rows = []
    for cache in ("none", "prefix"):
        kw = dict(max_new_tokens=64, steps=64, block_size=16, stop_at_eos=False, use_cache=cache)
        mmu(model, vq, tok, [img], ["describe"], "confidence", resolution=64, **kw)
        t0, c0 = time.perf_counter(), time.process_time()
        out = mmu(model, vq, tok, [img], ["describe"], "confidence", resolution=64, **kw)
        rows.append({"config": f"mmu-256tok-cache-{cache}", "seconds": round(time.perf_counter() - t0, 3),
                     "cpu_seconds": round(time.process_time() - c0, 3),
                     "forward_tokens": out.traces[0].forward_tokens})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--one", default=None)
    ap.add_argument("--folder", default=None)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(Path(args.folder), args.one)) if args.one != "mmu" else
              "\n".join(json.dumps(r) for r in mmu_cache(Path(args.folder))))
        return
    from tiny_mmada import write_tiny_mmada

    folder = write_tiny_mmada(Path(tempfile.mkdtemp()))
    for name in [c[0] for c in CONFIGS] + ["mmu"]:
        res = subprocess.run([sys.executable, __file__, "--one", name, "--folder", str(folder)],
                             capture_output=True, text=True, check=True)
        print(res.stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
