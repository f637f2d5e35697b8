"""Replay the reference fixtures (tests/fixtures/reference/*.json) with unmask.

Each fixture holds the output ids a reference implementation produced for a grid of settings on a
tiny random checkpoint (recorded by benchmarks/record_reference_fixtures.py). ``replay`` runs
unmask with the matching settings, in a compatibility mode or the default mode, and counts the
cases that agree token for token. Used by tests/test_reference_fixtures.py and by
benchmarks/reference_agreement.py (the agreement table in docs/samplers.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tiny import write_tiny

from unmask.decoding.engine import generate
from unmask.models.loading import load_model

FIXTURES = Path(__file__).parent / "fixtures" / "reference"

#: fixture family -> (compat mode, use_cache)
FAMILIES = {
    "llada_generate": ("llada", "none"),
    "fast_dllm_llada_nocache": ("fast_dllm", "none"),
    "fast_dllm_llada_prefix": ("fast_dllm", "prefix"),
    "fast_dllm_llada_dual": ("fast_dllm", "dual"),
    "dream_generate": ("dream", "none"),
    "fast_dllm_dream_prefix": ("fast_dllm", "prefix"),
    "fast_dllm_dream_dual": ("fast_dllm", "dual"),
}

_DREAM_ALGS = {"origin": "origin", "entropy": "entropy", "maskgit_plus": "confidence", "topk_margin": "margin",
               "confidence_threshold": "threshold"}

_models: dict[tuple, object] = {}


def fixture_files() -> list[Path]:
    return sorted(FIXTURES.glob("*.json"))


def family_of(path: Path) -> str:
    return path.stem.split("-", 1)[0]


def model_for(recipe: dict, root: Path):
    """Rebuild (once per recipe) the checkpoint the fixture was recorded on."""
    args = {k: v for k, v in recipe.items() if k not in ("name", "writer")}
    key = tuple(sorted(args.items()))
    if key not in _models:
        folder = root / recipe["name"]
        folder.mkdir(parents=True, exist_ok=True)
        _models[key] = load_model(write_tiny(folder, **args))
    return _models[key]


def unmask_settings(family: str, s: dict, compat: str | None) -> tuple[str, dict]:
    """(sampler, generate kwargs) that correspond to one fixture case's reference settings."""
    use_cache = FAMILIES[family][1]
    kw: dict = dict(max_new_tokens=s["gen_length"], use_cache=use_cache, stop_at_eos=False, temperature=0.0,
                    compat=compat, seed=s.get("seed", 0))
    if family.startswith("dream") or family.startswith("fast_dllm_dream"):
        sampler = _DREAM_ALGS[s["alg"]]
        if family.startswith("fast_dllm_dream") and sampler != "threshold":
            sampler = "entropy"  # the reference's cached loop scores by entropy whatever alg says
        kw.update(steps=s["steps"], schedule="dream", block_size=s.get("block_length"))
        if "top_k" in s:
            kw["top_k"] = s["top_k"]
        if sampler == "threshold":
            kw["threshold"] = s["threshold"]
            kw["schedule"] = "linear"  # Dream's capped rule: masks // steps per step plus carry-over
            if family.startswith("fast_dllm_dream"):
                kw.pop("steps")  # the cached threshold loop runs until the block is full
    else:
        kw.update(block_size=s["block_length"])
        if s.get("threshold") is not None:
            sampler = "threshold"
            kw["threshold"] = s["threshold"]
        else:
            sampler = "confidence"
            kw["steps"] = s["steps"]
    return sampler, kw


@dataclass
class Agreement:
    family: str
    checkpoint: str
    setting: str
    agree: int = 0
    total: int = 0
    reference_failed: int = 0  # cases where the reference crashed or looped (no output to compare)
    mismatches: list = field(default_factory=list)


def replay(path: Path, compat: str | None, root: Path) -> list[Agreement]:
    """Per setting of one fixture file: how many cases unmask reproduces token for token."""
    data = json.loads(path.read_text())
    family = family_of(path)
    model = model_for(data["checkpoint"], root)
    rows: dict[str, Agreement] = {}
    for case in data["cases"]:
        key = json.dumps(case["settings"], sort_keys=True)
        a = rows.setdefault(key, Agreement(family, data["checkpoint"]["name"], key))
        if "error" in case:
            a.reference_failed += 1
            continue
        sampler, kw = unmask_settings(family, case["settings"], compat)
        out = generate(model, [case["prompt"]], sampler, **kw)
        got = out.sequences[0][len(case["prompt"]):]
        a.total += 1
        if got == case["output"]:
            a.agree += 1
        else:
            a.mismatches.append({"prompt": case["prompt"], "expected": case["output"], "got": got})
    return list(rows.values())
