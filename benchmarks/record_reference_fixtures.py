"""Record the reference implementations' output token ids as JSON fixtures (tests/fixtures/).

This script runs *outside* unmask's environment: in a separate virtual environment that holds the
reference code's own dependencies (torch + the transformers version the reference pins), with the
reference repositories checked out somewhere on disk. It imports the reference code from those
paths; nothing of it is copied into this repository. The fixtures hold only settings, prompt ids,
output ids and where they came from (repository + commit), plus the recipe of the tiny random
checkpoint, which ``tests/tiny.py:write_tiny`` rebuilds deterministically in CI.

Steps (see docs/samplers.md, "Reproducing the references"):

1. write the checkpoints with unmask's own Python (``--write-checkpoints DIR``), e.g.
   ``PYTHONPATH=src:tests python3 benchmarks/record_reference_fixtures.py --write-checkpoints /tmp/ckpt``
2. in the reference venv (``torch``, ``transformers==4.49.0``, ``safetensors``, ``accelerate``):
   ``python benchmarks/record_reference_fixtures.py --family llada --ckpt /tmp/ckpt
   --fast-dllm /path/to/Fast-dLLM --llada /path/to/LLaDA --out tests/fixtures``
   and the same with ``--family dream``.

Every run is one prompt (batch size 1), fp32 weights, temperature 0 (the references draw their
noise from the global RNG over the whole canvas, which no per-row generator reproduces; Dream's
``origin`` at temperature 0 only draws its transfer coin flips, which a seeded generator does).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

#: The checkpoints: name -> write_tiny arguments. ``weak`` has near-uniform predictions, where
#: the mask token's share of the softmax changes which position is most confident.
RECIPES = {
    "llada-peaked": dict(arch="llada", seed=0, vocab=64, std=0.6),
    "llada-weak": dict(arch="llada", seed=0, vocab=64, std=0.15),
    "dream-peaked": dict(arch="dream", seed=0, vocab=64, std=0.6),
    "dream-weak": dict(arch="dream", seed=0, vocab=64, std=0.15),
}


def prompts(n: int = 5, vocab: int = 64, seed: int = 1234) -> list[list[int]]:
    """Random prompts over the non-special ids (0 pad, 1 mask, 2 eos are excluded), lengths 5..9.
    A tiny LCG keeps this free of torch so both environments agree."""
    state = seed
    out = []
    for i in range(n):
        row = []
        for _ in range(5 + i % 5):
            state = (1103515245 * state + 12345) % (2**31)
            row.append(3 + state % (vocab - 3))
        out.append(row)
    return out


def write_checkpoints(folder: Path) -> None:
    from tiny import write_tiny

    for name, recipe in RECIPES.items():
        target = folder / name
        target.mkdir(parents=True, exist_ok=True)
        write_tiny(target, **recipe)
        if recipe["arch"] == "dream":  # the official Dream folders ship one; the reference loader requires it
            (target / "generation_config.json").write_text(json.dumps({
                "alg": "origin", "alg_temp": None, "eps": 0.001, "steps": 512, "temperature": 0.0, "top_p": None,
                "top_k": None, "mask_token_id": None, "bos_token_id": 2, "eos_token_id": 2, "pad_token_id": 0,
            }, indent=1))
        print("wrote", target)


class _Timeout(Exception):
    """The reference loop did not finish (it can loop forever once the mask token is its top-1)."""


def _guard(seconds: int = 20):
    import signal

    def on_alarm(signum, frame):
        raise _Timeout(f"no result after {seconds}s (the reference loops forever)")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)


def _unguard():
    import signal

    signal.alarm(0)


def _commit(repo: Path) -> str:
    try:
        return subprocess.check_output(["git", "-C", str(repo), "rev-parse", "HEAD"], text=True).strip()
    except Exception:  # a snapshot without .git: the caller passes --commit
        return "unknown"


# ----------------------------------------------------------------------------- LLaDA


def run_llada(args) -> None:
    import torch

    sys.path.insert(0, str(Path(args.fast_dllm) / "llada"))
    import generate as fast  # Fast-dLLM llada/generate.py
    from model.modeling_llada import LLaDAModelLM  # Fast-dLLM's copy of the HF model (has the cache)

    sys.path.insert(0, str(Path(args.llada)))
    import importlib.util

    spec = importlib.util.spec_from_file_location("llada_generate", Path(args.llada) / "generate.py")
    orig = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(orig)

    def gen_orig(model, p, s):
        return orig.generate(model, p, steps=s["steps"], gen_length=s["gen_length"], block_length=s["block_length"],
                             temperature=0.0, remasking="low_confidence", mask_id=1)

    def gen_fast(fn):
        def run(model, p, s):
            out, _ = fn(model, p, steps=s["steps"], gen_length=s["gen_length"], block_length=s["block_length"],
                        temperature=0.0, remasking="low_confidence", mask_id=1, threshold=s.get("threshold"))
            return out
        return run

    grids = {
        "llada_generate": (gen_orig, args.llada_commit or _commit(Path(args.llada)), "ML-GSAI/LLaDA", "generate.py",
                           [dict(gen_length=16, steps=16, block_length=16), dict(gen_length=16, steps=8, block_length=8),
                            dict(gen_length=24, steps=12, block_length=8)]),
        "fast_dllm_llada_nocache": (gen_fast(fast.generate), None, "NVlabs/Fast-dLLM", "llada/generate.py:generate",
                                    [dict(gen_length=16, steps=16, block_length=8), dict(gen_length=24, steps=3, block_length=8, threshold=0.9)]),
        "fast_dllm_llada_prefix": (gen_fast(fast.generate_with_prefix_cache), None, "NVlabs/Fast-dLLM",
                                   "llada/generate.py:generate_with_prefix_cache",
                                   [dict(gen_length=16, steps=16, block_length=8), dict(gen_length=24, steps=3, block_length=8, threshold=0.9)]),
        "fast_dllm_llada_dual": (gen_fast(fast.generate_with_dual_cache), None, "NVlabs/Fast-dLLM",
                                 "llada/generate.py:generate_with_dual_cache",
                                 [dict(gen_length=16, steps=16, block_length=8), dict(gen_length=24, steps=3, block_length=8, threshold=0.9)]),
    }
    fast_commit = args.fast_dllm_commit or _commit(Path(args.fast_dllm))
    for ck in ("llada-peaked", "llada-weak"):
        model = LLaDAModelLM.from_pretrained(str(Path(args.ckpt) / ck), torch_dtype=torch.float32).eval()
        for name, (fn, commit, repo, path, settings) in grids.items():
            cases = []
            for s in settings:
                for p in prompts():
                    try:
                        _guard()
                        with torch.no_grad():
                            out = fn(model, torch.tensor([p]), s)
                    except Exception as exc:  # the reference crashed (e.g. it committed the mask token)
                        cases.append({"settings": s, "prompt": p, "error": f"{type(exc).__name__}: {exc}"})
                        continue
                    finally:
                        _unguard()
                    cases.append({"settings": s, "prompt": p, "output": out[0, len(p):].tolist()})
            _write(args.out, f"{name}-{ck}.json", {
                "reference": {"repository": repo, "commit": commit or fast_commit, "function": path},
                "checkpoint": {"name": ck, "writer": "tests/tiny.py:write_tiny", **RECIPES[ck]},
                "cases": cases,
            })


# ----------------------------------------------------------------------------- Dream


def run_dream(args) -> None:
    import types

    import torch

    sys.path.insert(0, str(Path(args.fast_dllm) / "dream"))
    from model import generation_utils as gu
    from model import generation_utils_block as gub
    from model.modeling_dream import DreamModel

    seen_top_k = []
    orig_sample = gu.sample_tokens

    def spy(logits, temperature=0.0, top_p=None, top_k=None, **kw):
        seen_top_k.append(top_k)
        return orig_sample(logits, temperature, top_p=top_p, top_k=top_k, **kw)

    gu.sample_tokens = spy
    commit = args.fast_dllm_commit or _commit(Path(args.fast_dllm))

    def plain(model, p, s):
        kw = dict(max_new_tokens=s["gen_length"], steps=s["steps"], alg=s["alg"], temperature=0.0,
                  return_dict_in_generate=False, output_history=False)
        if "top_k" in s:
            kw["top_k"] = s["top_k"]
        if "threshold" in s:
            kw["threshold"] = s["threshold"]
        torch.manual_seed(s.get("seed", 0))
        return model.diffusion_generate(torch.tensor([p]), **kw)

    def block(dual):
        def run(model, p, s):
            m = types.MethodType(gub.DreamGenerationMixin.diffusion_generate, model)
            model._sample = types.MethodType(gub.DreamGenerationMixin._sample, model)
            try:
                return m(torch.tensor([p]), max_new_tokens=s["gen_length"], steps=s["steps"], alg=s["alg"],
                         temperature=0.0, threshold=s.get("threshold", 0.9), block_length=s["block_length"],
                         dual_cache=dual, return_dict_in_generate=False, output_history=False)
            finally:
                del model._sample
        return run

    grids = {
        "dream_generate": (plain, "dream/model/generation_utils.py:diffusion_generate", [
            *(dict(gen_length=16, steps=s, alg="origin", seed=seed) for s in (16, 8) for seed in (0, 1)),
            dict(gen_length=16, steps=16, alg="entropy"),
            dict(gen_length=16, steps=8, alg="maskgit_plus"),
            dict(gen_length=16, steps=8, alg="topk_margin"),
            dict(gen_length=16, steps=8, alg="maskgit_plus", top_k=50),
            dict(gen_length=16, steps=4, alg="confidence_threshold", threshold=0.9),
            dict(gen_length=16, steps=8, alg="confidence_threshold", threshold=0.5),
        ]),
        "fast_dllm_dream_prefix": (block(False), "dream/model/generation_utils_block.py (dual_cache=False)", [
            dict(gen_length=16, steps=16, block_length=8, alg="entropy"),
            dict(gen_length=24, steps=12, block_length=8, alg="entropy"),
            dict(gen_length=16, steps=2, block_length=8, alg="confidence_threshold", threshold=0.9),
            dict(gen_length=24, steps=3, block_length=8, alg="confidence_threshold", threshold=0.5),
        ]),
        "fast_dllm_dream_dual": (block(True), "dream/model/generation_utils_block.py (dual_cache=True)", [
            dict(gen_length=16, steps=16, block_length=8, alg="entropy"),
            dict(gen_length=24, steps=12, block_length=8, alg="entropy"),
            dict(gen_length=16, steps=2, block_length=8, alg="confidence_threshold", threshold=0.9),
            dict(gen_length=24, steps=3, block_length=8, alg="confidence_threshold", threshold=0.5),
        ]),
    }
    for ck in ("dream-peaked", "dream-weak"):
        model = DreamModel.from_pretrained(str(Path(args.ckpt) / ck), torch_dtype=torch.float32).eval()
        for name, (fn, path, settings) in grids.items():
            cases = []
            for s in settings:
                for p in prompts():
                    seen_top_k.clear()
                    try:
                        _guard()
                        with torch.no_grad():
                            out = fn(model, p, s)
                    except Exception as exc:  # the reference crashed (e.g. it committed the mask token)
                        cases.append({"settings": s, "prompt": p, "error": f"{type(exc).__name__}: {exc}"})
                        continue
                    finally:
                        _unguard()
                    case = {"settings": s, "prompt": p, "output": out[0, len(p):].tolist()}
                    if name == "dream_generate":
                        case["top_k_seen"] = seen_top_k[0] if seen_top_k else None
                    cases.append(case)
            _write(args.out, f"{name}-{ck}.json", {
                "reference": {"repository": "NVlabs/Fast-dLLM", "commit": commit, "function": path},
                "checkpoint": {"name": ck, "writer": "tests/tiny.py:write_tiny", **RECIPES[ck]},
                "cases": cases,
            })


def _write(out: str, name: str, data: dict) -> None:
    import torch
    import transformers

    data["environment"] = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__}
    path = Path(out) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    print("wrote", path, len(data["cases"]), "cases")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write-checkpoints", metavar="DIR")
    ap.add_argument("--family", choices=("llada", "dream"))
    ap.add_argument("--ckpt")
    ap.add_argument("--fast-dllm")
    ap.add_argument("--llada")
    ap.add_argument("--fast-dllm-commit")
    ap.add_argument("--llada-commit")
    ap.add_argument("--out", default="tests/fixtures")
    args = ap.parse_args()
    if args.write_checkpoints:
        write_checkpoints(Path(args.write_checkpoints))
        return
    {"llada": run_llada, "dream": run_dream}[args.family](args)


if __name__ == "__main__":
    main()
