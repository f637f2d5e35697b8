"""Real processes: ``kill -9`` in the middle of a run loses and duplicates nothing, and two
processes sharded by RANK/WORLD_SIZE give exactly the one-process results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_eval_fixtures import cli_env, multiply_model_dir, one_thread, records, run_cli  # noqa: F401 - fixture

from unmask.eval.runner import EvalSpec, run_eval

N = 60


def _reference(model: Path, out: Path, limit: int) -> tuple[dict, dict]:
    """The same run in this process (what a clean, uninterrupted run writes)."""
    with one_thread():
        s = run_eval(EvalSpec(model=str(model), task="multiply", limit=limit, output_dir=str(out), progress=False,
                              overrides={"temperature": 1.0}))
    return s, {r["id"]: r for r in records(Path(s["run_dir"]))}


def _args(model: Path, out: Path, limit: int = N) -> list[str]:
    return ["eval", "--model_name_or_path", str(model), "--task", "multiply", "--limit", str(limit),
            "--output_dir", str(out), "--temperature", "1.0", "--threads", "1", "--json"]


def _run_dir(out: Path) -> Path:
    dirs = [d for d in out.iterdir() if d.is_dir()]
    assert len(dirs) == 1
    return dirs[0]


def _lines(out: Path) -> int:
    dirs = [d for d in out.iterdir() if d.is_dir()] if out.exists() else []
    if not dirs:
        return 0
    f = dirs[0] / "samples.jsonl"
    return f.read_bytes().count(b"\n") if f.exists() else 0


@pytest.mark.slow
def test_kill_9_then_rerun_loses_and_duplicates_nothing(multiply_model_dir, tmp_path):  # noqa: F811
    _, ref = _reference(multiply_model_dir, tmp_path / "clean", N)
    reference = {k: (r["output"], r["score"], r["nfe"]) for k, r in ref.items()}
    assert len(reference) == N

    out = tmp_path / "killed"
    for extra in (3, 10):  # two kills at different moments: early, and after a resumed start
        kill_after = _lines(out) + extra
        proc = subprocess.Popen([sys.executable, "-m", "unmask", *_args(multiply_model_dir, out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cli_env())
        deadline = time.time() + 120
        while _lines(out) < kill_after and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
        partial = _lines(out)
        assert kill_after <= partial < N
    # a torn last line, as a kill in the middle of a write would leave
    samples = _run_dir(out) / "samples.jsonl"
    with open(samples, "ab") as f:
        f.write(b'{"run": "' + b"x" * 10)
    again = run_cli(_args(multiply_model_dir, out))
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["n"] == N and summary["complete"]
    lines = samples.read_text().splitlines()
    recs = [json.loads(x) for x in lines]  # the torn line is gone, everything parses
    ids = [r["id"] for r in recs]
    assert len(ids) == len(set(ids)) == N  # nothing lost, nothing duplicated
    assert {r["id"]: (r["output"], r["score"], r["nfe"]) for r in recs} == reference


@pytest.mark.slow
def test_two_processes_match_one_process(multiply_model_dir, tmp_path):  # noqa: F811
    s1, ref = _reference(multiply_model_dir, tmp_path / "one", 12)
    procs = []
    for rank in range(2):
        env = cli_env()
        env.update({"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank)})
        procs.append(subprocess.Popen([sys.executable, "-m", "unmask", *_args(multiply_model_dir, tmp_path / "two", 12)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    s2 = json.loads(outs[0][0])  # rank 0 prints the merged summary; rank 1 prints nothing
    assert outs[1][0].strip() == ""
    run_dir = Path(s2["run_dir"])
    assert sorted(p.name for p in run_dir.glob("samples*.jsonl")) == ["samples.rank0.jsonl", "samples.rank1.jsonl"]
    r1 = {k: (r["output"], r["score"], r["nfe"], r["cumulative_entropy"]) for k, r in ref.items()}
    r2 = {r["id"]: (r["output"], r["score"], r["nfe"], r["cumulative_entropy"]) for r in records(run_dir)}
    assert r1 == r2 and len(r2) == 12
    for k in ("n", "accuracy", "accuracy_stderr", "mean_nfe", "mean_cumulative_entropy", "generated_tokens"):
        assert s1[k] == s2[k], k
    assert {r["rank"] for r in records(run_dir)} == {0, 1}
