"""Per-sample result records (JSONL) that survive ``kill -9``, and the run summary.

Crash safety rests on three rules:

* one record = one line, written with a single ``write`` and then flushed and fsynced, so a
  finished sample is on disk before the next one starts;
* a reader skips any line that does not parse (a torn last line after a kill), and a writer first
  cuts its own file back to the end of its last complete line, so a torn line can never glue onto
  the next record;
* records are keyed by ``(run key, sample id)`` and deduplicated on read (first one wins), so a
  sample finished twice (two processes, or a kill between write and bookkeeping) counts once.

Each process of a multi-process run appends to its own file (``samples.rank{r}.jsonl``); a
single process writes ``samples.jsonl``; readers merge every ``samples*.jsonl`` of the run
folder, so a run can be resumed with a different number of processes.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

SAMPLES_GLOB = "samples*.jsonl"


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write JSON through a temporary file and ``os.replace`` so readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_records(path: str | Path) -> tuple[list[dict[str, Any]], int]:
    """Records of one JSONL file and the number of lines skipped as unreadable (torn)."""
    out: list[dict[str, Any]] = []
    bad = 0
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return out, 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            bad += 1
            continue
        if isinstance(rec, dict):
            out.append(rec)
        else:
            bad += 1
    return out, bad


def repair_tail(path: str | Path) -> int:
    """Cut a file back to the end of its last complete line; returns the bytes removed."""
    path = Path(path)
    if not path.exists():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return 0
        # scan back for the last newline
        pos = size
        chunk = 1 << 16
        keep = 0
        while pos > 0:
            start = max(0, pos - chunk)
            f.seek(start)
            buf = f.read(pos - start)
            i = buf.rfind(b"\n")
            if i >= 0:
                keep = start + i + 1
                break
            pos = start
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
        return size - keep


class RecordStore:
    """The sample records of one run folder."""

    def __init__(self, run_dir: str | Path, rank: int = 0, world_size: int = 1) -> None:
        self.run_dir = Path(run_dir)
        self.rank = rank
        self.world_size = world_size
        name = "samples.jsonl" if world_size == 1 else f"samples.rank{rank}.jsonl"
        self.path = self.run_dir / name
        self._fh = None
        self.skipped_lines = 0

    def files(self) -> list[Path]:
        return sorted(self.run_dir.glob(SAMPLES_GLOB))

    def load(self, run_key: str) -> dict[str, dict[str, Any]]:
        """Finished records of ``run_key`` by sample id (deduplicated, torn lines skipped)."""
        out: dict[str, dict[str, Any]] = {}
        skipped = 0
        for f in self.files():
            recs, bad = read_records(f)
            skipped += bad
            for r in recs:
                if r.get("run") != run_key or "id" not in r:
                    continue
                out.setdefault(str(r["id"]), r)
        self.skipped_lines = skipped
        return out

    def open(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        repair_tail(self.path)
        self._fh = open(self.path, "ab")

    def append(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            self.open()
        assert self._fh is not None
        line = (json.dumps(record, default=str, ensure_ascii=False) + "\n").encode()
        self._fh.write(line)
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def stderr_of_mean(xs: Sequence[float]) -> float:
    """Standard error of the mean with the sample standard deviation (n - 1), as lm-eval reports."""
    n = len(xs)
    if n < 2:
        return 0.0
    m = mean(xs)
    var = sum((x - m) ** 2 for x in xs) / (n - 1)
    return math.sqrt(var / n)


def summarize(records: Iterable[dict[str, Any]], expected: int) -> dict[str, Any]:
    """Aggregate figures of a run's records (see ``docs/evaluation.md`` for each field)."""
    recs = sorted(records, key=lambda r: r.get("index", 0))
    # records of a task with no reference answer carry score None: their run has no accuracy
    scores = [float(r.get("score", 0.0)) for r in recs if r.get("score", 0.0) is not None]
    scored = bool(scores) or not recs
    gen_tokens = sum(int(r.get("generated_tokens", 0)) for r in recs)
    gen_seconds = sum(float(r.get("seconds", 0.0)) for r in recs)
    score_seconds = sum(float(r.get("score_seconds", 0.0)) for r in recs)
    metric_names: list[str] = []
    for r in recs:
        for k in r.get("metrics", {}):
            if k not in metric_names:
                metric_names.append(k)
    metrics = {k: mean([float(r.get("metrics", {}).get(k, 0.0)) for r in recs]) for k in metric_names}
    return {
        "n": len(recs),
        "n_expected": expected,
        "complete": len(recs) >= expected,
        "accuracy": mean(scores) if scored else None,
        "accuracy_stderr": stderr_of_mean(scores) if scored else None,
        "metrics": metrics,
        "mean_nfe": mean([float(r.get("nfe", 0)) for r in recs]),
        "mean_forward_rows": mean([float(r.get("forward_rows", 0)) for r in recs]),
        "mean_forward_tokens": mean([float(r.get("forward_tokens", 0)) for r in recs]),
        "mean_cumulative_entropy": mean([float(r.get("cumulative_entropy", 0.0)) for r in recs]),
        "generated_tokens": gen_tokens,
        "mean_generated_tokens": gen_tokens / len(recs) if recs else 0.0,
        "tokens_per_second": gen_tokens / gen_seconds if gen_seconds > 0 else 0.0,
        "generation_seconds": gen_seconds,
        "scoring_seconds": score_seconds,
        "wall_seconds": gen_seconds + score_seconds,
        "n_empty": sum(1 for r in recs if not str(r.get("output", "")).strip()),
        "n_unparsable": sum(1 for r in recs if r.get("answer") is None),
        **_lockstep_summary(recs),
    }


def _lockstep_summary(recs: list[dict[str, Any]]) -> dict[str, Any]:
    """Means of the lockstep figures (records of ``eval --lockstep`` carry a ``lockstep`` dict)."""
    ls = [r["lockstep"] for r in recs if isinstance(r.get("lockstep"), dict)]
    if not ls:
        return {}
    firsts = [m["a_first_step"] for m in ls if m.get("a_first_step") is not None]
    fills = [m["r_fill_at_a_first"] for m in ls if m.get("r_fill_at_a_first") is not None]
    return {"lockstep": {
        "mean_steps": mean([float(m["steps"]) for m in ls]),
        "nfe_per_step": sum(m["nfe"] for m in ls) / max(1, sum(m["steps"] for m in ls)),
        "mean_a_first_step": mean(firsts) if firsts else None,
        "mean_r_fill_at_a_first": mean(fills) if fills else None,
        "premature_rate": mean([float(bool(m["premature_answer"])) for m in ls]),
        "mean_fill_r": mean([float(m["fill_r"]) for m in ls]),
        "mean_fill_a": mean([float(m["fill_a"]) for m in ls]),
    }}
