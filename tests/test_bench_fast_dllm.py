"""benchmarks/bench_fast_dllm.py without the reference environment: its argument checks and the
unmask worker's request protocol (nothing here is timed)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import write_tiny

import unmask
from unmask.models.loading import load_model

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_fast_dllm.py"


def _module():
    spec = importlib.util.spec_from_file_location("bench_fast_dllm", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fake_reference(tmp_path: Path) -> Path:
    (tmp_path / "Fast-dLLM" / "llada").mkdir(parents=True)
    (tmp_path / "Fast-dLLM" / "llada" / "generate.py").write_text("")
    return tmp_path / "Fast-dLLM"


@pytest.mark.parametrize("extra, needle", [
    ([], "--fast_dllm"),
    (["--fast_dllm", "FAKE"], "--ref_python"),
    (["--fast_dllm", "FAKE", "--ref_python", sys.executable, "--new_tokens", "48", "--block", "32"], "multiple"),
    (["--fast_dllm", "FAKE", "--ref_python", sys.executable, "--repeats", "0"], "--repeats"),
    (["--fast_dllm", "FAKE", "--ref_python", sys.executable, "--unmask_src", "NOWHERE"], "no unmask/__init__.py"),
])
def test_bad_arguments_give_one_error_line_and_status_2(tmp_path, extra, needle):
    ref = _fake_reference(tmp_path)
    argv = [str(ref) if a == "FAKE" else str(tmp_path / a) if a == "NOWHERE" else a for a in extra]
    env = {k: v for k, v in os.environ.items() if k not in ("FAST_DLLM", "FAST_DLLM_PYTHON")}
    r = subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr


def test_prompts_are_fixed_and_avoid_the_special_ids():
    mod = _module()
    a = mod.prompts_for(4, 32, 126_464)
    assert a == mod.prompts_for(4, 32, 126_464)
    assert len(a) == 4 and all(len(p) == 32 for p in a) and len({tuple(p) for p in a}) == 4
    small = mod.prompts_for(8, 64, 10)
    assert max(max(p) for p in small) == 7  # the top two ids (EOS/PAD, mask) never appear


def test_unmask_worker_answers_with_the_tokens_of_generate(tmp_path):
    """The worker protocol the benchmark times: one JSON request in, the tokens, NFE and times out."""
    ckpt = write_tiny(tmp_path / "ckpt", vocab=64)
    mod = _module()
    env = dict(os.environ, PYTHONPATH=str(Path(unmask.__file__).resolve().parents[1]), OMP_NUM_THREADS="1")
    w = mod.Worker([sys.executable, str(SCRIPT), "--worker", "unmask", "--ckpt", str(ckpt)], env,
                   tmp_path / "worker.log", timeout=120)
    prompts = [[5, 6, 7, 8], [9, 10, 11, 12]]
    req = {"prompts": prompts, "gen_length": 16, "block": 8, "steps": 16, "cache": "dual", "threshold": None}
    try:
        one = w.ask(req)
        thr = w.ask(dict(req, threshold=0.5))
    finally:
        w.close()
    model = load_model(ckpt)
    kw = dict(max_new_tokens=16, block_size=8, use_cache="dual", stop_at_eos=False, temperature=0.0, seed=0,
              compat="fast_dllm")
    want = unmask.generate(model, prompts, "confidence", steps=16, **kw)
    assert one["tokens"] == [list(g) for g in want.generated] and one["nfe"] == want.nfe
    want = unmask.generate(model, prompts, "threshold", threshold=0.5, **kw)
    assert thr["tokens"] == [list(g) for g in want.generated]
    assert one["cpu"] > 0 and one["wall"] > 0
    assert one["forwards"] > 0 and 0 < one["model_cpu"] <= one["cpu"]  # the forward's share is counted
