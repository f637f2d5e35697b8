"""`unmask sweep` at the option layer: presets under a grid, failed points, the summary files,
stdout/stderr and a closed pipe (issue 32 items 1 and 8)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from unmask.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _sweep(tmp_path, out: Path, **extra) -> Path:
    cfg = {"output_dir": str(out), "limit": 2, "batch_size": 2, "device": "cpu", "models": ["tiny-multiply"],
           "tasks": ["auto"], "samplers": ["confidence"], "settings": {"tokens_per_step": [1, 2]},
           "common": {"temperature": 1.0}, **extra}
    path = tmp_path / f"sweep{len(list(tmp_path.glob('sweep*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_grid_value_replaces_the_presets_conflicting_setting(tmp_path, capsys):
    """docs/evaluation.md's `--preset fast_dllm generation.max_new_tokens=null` on a
    tokens_per_step grid: the preset's steps give way to the grid, every point runs."""
    path = _sweep(tmp_path, tmp_path / "out")
    rc = main(["sweep", str(path), "--json", "--preset", "fast_dllm", "generation.max_new_tokens=null",
               "generation.block_size=null", "generation.use_cache=none"])
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["status"] for r in rows] == ["ran", "ran"]
    gens = [r["config"]["generation"] for r in rows]
    assert [g.get("tokens_per_step") for g in gens] == [1, 2] and all("steps" not in g for g in gens)
    assert all(g["compat"] == "fast_dllm" for g in gens)  # the rest of the preset still applies


def test_a_conflict_inside_the_sweep_is_an_error_before_any_run(tmp_path, capsys):
    out = tmp_path / "out"
    path = _sweep(tmp_path, out, common={"steps": 4})  # common < grid: the grid's tokens_per_step wins
    assert main(["sweep", str(path), "--dry_run"]) == 0
    capsys.readouterr()
    path = _sweep(tmp_path, out, settings={"tokens_per_step": [1], "steps": [4]})  # one point, both
    rc = main(["sweep", str(path)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith("error: sweep grid point [") and "either steps or tokens_per_step" in err
    assert not out.exists()  # nothing ran, nothing written


def test_failed_points_exit_non_zero_and_never_replace_a_better_summary(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["sweep", str(_sweep(tmp_path, out)), "--json"]) == 0
    capsys.readouterr()
    before = (out / "sweep_summary.json").read_text()
    # the same folder, every point failing (a task this model was not trained for)
    rc = main(["sweep", str(_sweep(tmp_path, out, tasks=["nae_sat"])), "--json"])
    cap = capsys.readouterr()
    assert rc == 2 and "error: 2 of 2 sweep grid points failed" in cap.err
    assert (out / "sweep_summary.json").read_text() == before
    partial = json.loads((out / "sweep_summary.partial.json").read_text())
    assert [r["status"][:6] for r in partial] == ["error:", "error:"]
    assert "note: the existing sweep_summary" in cap.err


def test_lockstep_keys_in_a_sweep(tmp_path, capsys):
    """`decode.*` (and the flag names) in a sweep file, as in a preset."""
    path = _sweep(tmp_path, tmp_path / "out", models=["tiny-judge"], settings={"decode.tau_r": [0.8, 0.95]},
                  common={"decode.mode": "gauss_seidel", "temperature": 0.0})
    assert main(["sweep", str(path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["config"]["decode"] for r in rows] == [{"lockstep": "gauss_seidel", "tau_r": 0.8},
                                                     {"lockstep": "gauss_seidel", "tau_r": 0.95}]
    recs = [json.loads(line) for r in rows for line in
            next(Path(r["run_dir"]).glob("*.jsonl")).read_text().splitlines()]
    assert all("lockstep" in rec for rec in recs)


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_dry_run_goes_to_stdout_and_a_closed_pipe_ends_quietly(tmp_path):
    many = _sweep(tmp_path, tmp_path / "out", settings={"tokens_per_step": list(range(1, 4000))})
    proc = subprocess.Popen([sys.executable, "-m", "unmask", "sweep", str(many), "--dry_run"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_env())
    first = proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert first.startswith(b"tiny-multiply  auto  confidence  tokens_per_step=1")
    assert err == "" and proc.returncode == 141


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["--dry_run", None])
def test_results_on_stdout_diagnostics_on_stderr(tmp_path, flag):
    path = _sweep(tmp_path, tmp_path / "out")
    out = subprocess.run([sys.executable, "-m", "unmask", "sweep", str(path), *([flag] if flag else [])],
                         capture_output=True, text=True, env={**_env(), "OMP_NUM_THREADS": "1"}, timeout=300)
    assert out.returncode == 0, out.stderr
    if flag:
        assert out.stdout.count("tiny-multiply  auto  confidence") == 2 and out.stderr == ""
    else:
        assert "| model | task | sampler |" in out.stdout and "| model |" not in out.stderr
        assert "markdown: " in out.stderr and "markdown: " not in out.stdout
