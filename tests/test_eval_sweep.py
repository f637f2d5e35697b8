"""``unmask sweep``: grid expansion, runs, table, plots, and skipping finished runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml
from test_eval_fixtures import multiply_model_dir, one_thread  # noqa: F401 - fixture

from unmask.cli import main
from unmask.eval.plots import _parse_metrics, _partial_metric
from unmask.eval.sweep import _metrics_str, expand, load_config

REPO = Path(__file__).resolve().parent.parent


def test_example_config_expands():
    cfg = load_config(REPO / "benchmarks" / "sweep_tiny.yaml")
    runs = expand(cfg)
    assert len(runs) == 4 * 1 * 7 * 3
    label, spec, settings = runs[2 * 7 * 3 - 1]  # the last tiny-nae-sat run
    assert label == "tiny-nae-sat" and spec.task is None and spec.sampler == "info_gain"
    assert settings == {"tokens_per_step": 3}
    assert spec.sampler_options == {"candidate_number": 4, "position_temperature": 0.1}
    assert spec.overrides == {"temperature": 1.0, "tokens_per_step": 3} and spec.limit == 100
    # a model entry's own settings beat the common ones, for that model only
    label, spec, settings = runs[3 * 7 * 3 - 1]
    assert label == "tiny-sudoku" and spec.limit == 50
    assert spec.overrides == {"temperature": 0.0, "tokens_per_step": 3}
    label, spec, settings = runs[-1]
    assert label == "tiny-judge" and spec.limit == 100
    assert spec.overrides == {"temperature": 0.0, "tokens_per_step": 3}


def test_sweep_metrics_cell_lists_task_metrics():
    assert _metrics_str({"obs_accuracy": 0.75, "cell_accuracy": 1}) == "cell_accuracy=1.0000 obs_accuracy=0.7500"
    assert _metrics_str({}) == ""
    # the plots read the cell back, and draw a metric only when every row of the task has it
    assert _parse_metrics("cell_accuracy=1.0000 obs_accuracy=0.7500") == {"cell_accuracy": 1.0, "obs_accuracy": 0.75}
    assert _parse_metrics("") == {} and _parse_metrics(None) == {}
    assert _partial_metric([{"metrics": "obs_accuracy=0.7"}, {"metrics": "obs_accuracy=1.0"}]) == "obs_accuracy"
    assert _partial_metric([{"metrics": "obs_accuracy=0.7"}, {"metrics": ""}]) is None
    assert _partial_metric([{"metrics": "a=1 b=2"}]) is None


def test_sweep_runs_grid_writes_table_and_plots_and_skips_finished(multiply_model_dir, tmp_path, capsys):  # noqa: F811
    cfg = {
        "output_dir": str(tmp_path / "sweep"),
        "limit": 3,
        "batch_size": 3,
        "device": "cpu",
        "models": [{"name": "tiny", "path": str(multiply_model_dir)}],
        "tasks": ["auto", "nae_sat"],  # nae_sat does not fit this model: reported, the sweep goes on
        "samplers": ["confidence", {"name": "info_gain", "options": {"candidate_number": 2}}],
        "settings": {"tokens_per_step": [1, 2]},
        "common": {"temperature": 1.0},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with one_thread():  # the failed grid points make the exit status non-zero
        assert main(["sweep", str(path), "--json"]) == 2
    cap = capsys.readouterr()
    assert cap.err.strip() == "error: 4 of 8 sweep grid points failed (first: error: the model was trained on the " \
        "'multiply' task, not 'nae_sat')"
    result = json.loads(cap.out)
    errors = [r for r in result["rows"] if r["status"].startswith("error")]
    assert len(errors) == 4 and all("trained on" in r["status"] for r in errors)
    rows = [r for r in result["rows"] if not r["status"].startswith("error")]
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ran"}
    assert {(r["sampler"], r["settings"]) for r in rows} == {
        ("confidence", "tokens_per_step=1"), ("confidence", "tokens_per_step=2"),
        ("info_gain", "tokens_per_step=1"), ("info_gain", "tokens_per_step=2")}
    out = tmp_path / "sweep"
    for name in ("sweep_summary.md", "sweep_summary.csv", "accuracy_vs_nfe.png", "entropy_vs_accuracy.png"):
        assert (out / name).exists() and (out / name).stat().st_size > 0, name
    table = [r for r in csv.DictReader(open(out / "sweep_summary.csv")) if r["mean_nfe"]]
    assert all("metrics" in r for r in table)
    assert len(table) == 4 and all(float(r["mean_nfe"]) > 0 for r in table)
    assert all(float(r["mean_forward_tokens"]) >= float(r["mean_forward_rows"]) > 0 for r in table)
    assert "| model | task | sampler |" in (out / "sweep_summary.md").read_text()
    with one_thread():
        assert main(["sweep", str(path), "--json"]) == 2
    again = [r for r in json.loads(capsys.readouterr().out)["rows"] if not r["status"].startswith("error")]
    assert {r["status"] for r in again} == {"skipped (finished)"}
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in rows]
    # without --json and without a terminal (nohup, CI): one plain progress line per run, then the table
    with one_thread():
        assert main(["sweep", str(path)]) == 2
    cap = capsys.readouterr()
    lines = [ln for ln in cap.err.splitlines() if ln.startswith("[sweep] ")]
    assert len(lines) == 8 and lines[-1].startswith("[sweep] 8/8 ") and "eta 0:00:00" in lines[-1]
    # the table is the result: stdout; progress and file names: stderr
    assert any(": error" in ln for ln in lines) and "| model | task | sampler |" in cap.out
    assert "| model |" not in cap.err and "[sweep]" not in cap.out
