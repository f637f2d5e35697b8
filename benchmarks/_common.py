"""Helpers shared by the benchmark scripts (not a public module).

Kept deliberately small: building a random LLaDA-shaped model, thread/device setup, peak-memory
probes, medians and Markdown tables, and running one measurement in a fresh subprocess so that
peak RSS and allocator state of one configuration never leak into the next.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from unmask.models import LLaDAConfig, build_model


def random_llada(n_layers: int, d_model: int, n_heads: int, mlp_hidden: int, vocab: int, seed: int = 0,
                 max_len: int = 4096):
    """A freshly initialised LLaDA-architecture model (random weights, fp32, eval mode). The mask
    id is the last vocabulary row and EOS = PAD the one before it."""
    cfg = LLaDAConfig(
        d_model=d_model, n_layers=n_layers, n_heads=n_heads, mlp_hidden_size=mlp_hidden,
        vocab_size=vocab, embedding_size=vocab, max_sequence_length=max_len,
        mask_token_id=vocab - 1, eos_token_id=vocab - 2, pad_token_id=vocab - 2,
    )
    return build_model(cfg, seed=seed)


def random_prompts(n: int, lengths: Sequence[int], vocab: int, seed: int) -> list[list[int]]:
    """``n`` prompts of random ordinary tokens (the two special ids at the top are avoided)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        length = lengths[i % len(lengths)]
        out.append(torch.randint(0, vocab - 2, (length,), generator=g).tolist())
    return out


def setup_torch(threads: int, device: str) -> torch.device:
    if threads > 0:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda given but torch.cuda.is_available() is False")
    return dev


def max_rss_mb() -> float:
    """Process high-water mark of resident memory (Linux reports KiB, macOS bytes)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (2**20 if sys.platform == "darwin" else 1024)


class PeakMemory:
    """Peak memory of a block of work: CUDA max_memory_allocated above the level at entry, or on
    CPU the growth of the process's max RSS (meaningful only in a fresh process where nothing
    larger ran before, which is why every measurement runs in its own subprocess)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.delta_mb = 0.0
        self.peak_mb = 0.0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._base = max_rss_mb()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
            self.delta_mb = (peak - self._base) / 2**20
            self.peak_mb = peak / 2**20
        else:
            self.peak_mb = max_rss_mb()
            self.delta_mb = self.peak_mb - self._base


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median(xs: Iterable[float]) -> float:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def spread(xs: Sequence[float]) -> str:
    """min-max of the repeats, for the tables' noise column."""
    xs = [x for x in xs if x is not None]
    if len(xs) < 2:
        return "-"
    return f"{min(xs):.3g}-{max(xs):.3g}"


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return "n/a"
        if isinstance(v, float):
            if v != v:  # nan
                return "n/a"
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def git_revision() -> str:
    """HEAD of the checkout the benchmark runs from, marked when tracked files are modified."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no", "src"],
                               capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (+ uncommitted changes under src/)" if dirty else "")


def machine_line(threads: int, device: torch.device) -> str:
    cpus = os.cpu_count()
    dev = str(device)
    if device.type == "cuda":
        dev += f" ({torch.cuda.get_device_name(device)})"
    return (f"{platform.machine()} {platform.system()}, {cpus} CPU cores visible, torch {torch.__version__}, "
            f"torch threads {threads if threads > 0 else torch.get_num_threads()}, device {dev}, "
            f"load average at start {os.getloadavg()[0]:.1f}, unmask at {git_revision()}")


def run_worker(script: str, spec: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
    """Run ``script --worker SPEC_JSON`` in a fresh interpreter and return the JSON it prints last."""
    cmd = [sys.executable, script, "--worker", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed ({proc.returncode}) for {spec}:\n{proc.stderr[-3000:]}")
    last = [line for line in proc.stdout.splitlines() if line.startswith("{")][-1]
    return json.loads(last)
