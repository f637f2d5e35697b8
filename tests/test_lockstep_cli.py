"""Lockstep from the command line: sample, compare, viz, live view."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image
from rich.console import Console
from tiny import write_task_model

from unmask.cli import main
from unmask.session import Session
from unmask.viz.live import LiveView


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    return write_task_model(tmp_path_factory.mktemp("judge"), "judge")


def _json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_sample_markers_json_and_trace(tiny_llada_dir, tmp_path, capsys):
    trace = tmp_path / "t.json"
    d = _json(capsys, ["sample", "--model_name_or_path", str(tiny_llada_dir), "--prompt", "why? [R] so [A].",
                       "--lockstep", "gauss_seidel", "--reasoning-tokens", "10", "--answer_tokens", "3",
                       "--tau-r", "0.5", "--tau_a", "0.6", "--max-fill-frac", "0.5", "--json", "--save_trace",
                       str(trace)])
    m = d["lockstep"]
    assert m["mode"] == "gauss_seidel" and m["fill_r"] == 1.0 and m["fill_a"] == 1.0
    assert m["commits_r"] == 10 and m["commits_a"] == 3 and d["nfe"] == m["nfe"]
    assert " so " in d["text"] and len(d["reasoning"]) >= 1
    saved = json.loads(trace.read_text())
    assert saved["trace"]["regions"]["R"][1] - saved["trace"]["regions"]["R"][0] == 10
    assert saved["label"].startswith("lockstep gauss_seidel")
    # viz: heat map with R and A marked + fill rates; GIF frames label the regions
    png, gif = tmp_path / "t.png", tmp_path / "t.gif"
    assert main(["viz", str(trace), "--out", str(png)]) == 0
    assert Image.open(png).size == (1000, 750)
    assert main(["viz", str(trace), "--out", str(gif)]) == 0
    im = Image.open(gif)
    assert im.n_frames == m["steps"] + 1
    from unmask.viz.regions import REGION_RGB

    im.seek(im.n_frames - 1)
    colours = {c for _, c in im.convert("RGB").getcolors(1 << 16)}
    assert REGION_RGB["R"] in colours and REGION_RGB["A"] in colours  # the regions' bars are drawn


def test_sample_separator_layout(tiny_llada_dir, capsys):
    d = _json(capsys, ["sample", "--model_name_or_path", str(tiny_llada_dir), "--prompt", "2+2", "--lockstep",
                       "jacobi", "--answer_separator", "=", "--reasoning_tokens", "6", "--answer_tokens", "2",
                       "--json"])
    assert d["lockstep"]["mode"] == "jacobi" and d["lockstep"]["nfe_per_step"] == 1.0
    # the fixed separator sits between R and A and is never rewritten
    assert d["text"][6] == "=" and len(d["text"]) >= 9


@pytest.mark.parametrize("args, match", [
    (["--prompt", "plain", "--lockstep", "jacobi"], "markers"),
    (["--prompt", "a [R] b", "--lockstep", "jacobi"], r"\[A\] marker"),
    (["--prompt", "[R] [R] [A]", "--lockstep", "jacobi"], "exactly one"),
    (["--prompt", "[R] [A]", "--lockstep", "sor"], "lockstep mode"),
    (["--prompt", "[R] [A]", "--lockstep", "jacobi", "--tau_r", "0"], "tau_r"),
    (["--prompt", "[R] [A]", "--lockstep", "jacobi", "--tau_a", "1.2"], "tau_a"),
    (["--prompt", "[R] [A]", "--lockstep", "jacobi", "--max_fill_frac", "0"], "max_fill_frac"),
    (["--prompt", "[R] [A]", "--lockstep", "jacobi", "--reasoning_tokens", "0"], "reasoning_tokens"),
    (["--prompt", "[R] [A]", "--tau_r", "0.5"], "only with --lockstep"),
    (["--prompt", "[R] [A]", "--lockstep", "jacobi", "--sampler", "eb"], "picks its own count"),
    (["--prompt", "[R] [A]", "--lockstep", "jacobi", "--answer_separator", "x"], "not both"),
])
def test_sample_bad_input_one_line(tiny_llada_dir, capsys, args, match):
    import re

    assert main(["sample", "--model_name_or_path", str(tiny_llada_dir), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and re.search(match, err)


def _judge_sizes():
    from unmask.tasks.synthetic import get_task

    spans = get_task("judge").regions()
    return spans["R"][1] - spans["R"][0], spans["A"][1] - spans["A"][0]


def test_sample_task_model_lockstep(judge_dir, capsys):
    r, a = _judge_sizes()
    d = _json(capsys, ["sample", "--model_name_or_path", str(judge_dir), "--lockstep", "jacobi", "--json"])
    assert d["lockstep"]["commits_r"] == r and d["lockstep"]["commits_a"] == a
    assert len(d["reasoning"]) == r and len(d["answer_region"]) == a


def test_compare_judge_lockstep(judge_dir, capsys):
    d = _json(capsys, ["compare", "--task", "judge", "--model_name_or_path", str(judge_dir), "--n", "6",
                       "--samplers", "confidence,lockstep_gs,lockstep_jacobi:entropy,lockstep_gs:info_gain",
                       "--answer_after", "0.5", "--batch_size", "4", "--json"])
    rows = {r["sampler"]: r for r in d["rows"]}
    assert set(rows) == {"confidence", "lockstep_gs", "lockstep_jacobi:entropy", "lockstep_gs:info_gain"}
    assert "lockstep" not in rows["confidence"]
    gs, jac = rows["lockstep_gs"]["lockstep"], rows["lockstep_jacobi:entropy"]["lockstep"]
    assert gs["mode"] == "gauss_seidel" and jac["mode"] == "jacobi" and jac["sampler"] == "entropy"
    assert jac["nfe_per_step"] == 1.0 and gs["nfe_per_step"] > 1.0
    # answer_after 0.5: A never committed before half of R is written
    assert gs["mean_r_fill_at_a_first"] >= 0.5 and rows["lockstep_gs"]["premature_rate"] == 0.0
    assert rows["lockstep_gs"]["tokens_per_second"] > 0
    # --lockstep applies to every plain name; the table has the lockstep columns
    assert main(["compare", "--task", "judge", "--model_name_or_path", str(judge_dir), "--n", "2", "--samplers",
                 "margin", "--lockstep", "jacobi"]) == 0
    out = capsys.readouterr().out
    assert "lockstep_jacobi:margin" in out and "A first step" in out


def test_compare_refuses_task_without_regions(tmp_path, capsys):
    folder = write_task_model(tmp_path / "mul", "multiply")
    assert main(["compare", "--task", "multiply", "--model_name_or_path", str(folder), "--n", "2", "--samplers",
                 "lockstep_gs"]) == 2
    assert "no reasoning/answer regions" in capsys.readouterr().err
    assert main(["compare", "--task", "multiply", "--model_name_or_path", str(folder), "--n", "2", "--samplers",
                 "lockstep_sor"]) == 2


def test_live_view_labels_regions(tiny_llada_dir):
    session = Session.load(str(tiny_llada_dir))
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120)
    from unmask.decoding.lockstep import LockstepOptions

    opts = LockstepOptions(mode="gauss_seidel", reasoning_tokens=6, answer_tokens=2, tau_r=0.5, tau_a=0.5)
    with LiveView(session, console=console, max_fps=0) as view:
        res = session.sample("why [R] so [A]", sampler="confidence", overrides=view.overrides, lockstep=opts)
    assert {k: list(v) for k, v in view.regions.items()} == res.trace.regions and view.nfe == res.trace.nfe
    drawn = buf.getvalue()
    assert "⟦R:" in drawn and "⟦A:" in drawn and "R " in drawn


def test_eval_lockstep_task_and_text(judge_dir, tmp_path, capsys):
    from tiny import write_tiny

    d = _json(capsys, ["eval", "--model_name_or_path", str(judge_dir), "--lockstep", "gauss_seidel", "--limit", "3",
                       "--answer_after", "1.0", "--output_dir", str(tmp_path), "--json"])
    m = d["lockstep"]
    assert m["mean_r_fill_at_a_first"] == 1.0 and m["premature_rate"] == 0.0 and m["mean_fill_a"] == 1.0
    recs = [json.loads(line) for line in next(tmp_path.glob("judge__*/samples.jsonl")).read_text().splitlines()]
    assert len(recs) == 3 and all(r["lockstep"]["commits_r"] == _judge_sizes()[0] for r in recs)
    # a plain run of the same settings has another run key (lockstep is part of the key) and no lockstep figures
    plain = _json(capsys, ["eval", "--model_name_or_path", str(judge_dir), "--limit", "3", "--output_dir",
                           str(tmp_path), "--json"])
    assert "lockstep" not in plain and plain["run_key"] != d["run_key"]
    # a text benchmark: prompt, R, the fixed separator, A
    model = write_tiny(tmp_path / "long", "llada", max_sequence_length=1024)
    d = _json(capsys, ["eval", "--model_name_or_path", str(model), "--task", "gsm8k", "--num_fewshot", "0",
                       "--lockstep", "jacobi", "--answer_separator", "=", "--reasoning_tokens", "8",
                       "--answer_tokens", "3", "--limit", "1", "--output_dir", str(tmp_path), "--json"])
    assert d["lockstep"]["nfe_per_step"] == 1.0 and d["generated_tokens"] == 11
    rec = json.loads(next(tmp_path.glob("gsm8k__*/samples.jsonl")).read_text().splitlines()[0])
    assert "=" in rec["output"] and rec["lockstep"]["fill_r"] == 1.0 and rec["lockstep"]["commits_a"] == 3
    assert main(["eval", "--model_name_or_path", str(model), "--task", "gsm8k", "--lockstep", "jacobi", "--limit", "1",
                 "--output_dir", str(tmp_path)]) == 2
    assert "--answer_separator" in capsys.readouterr().err


def test_chat_lockstep(tiny_llada_dir):
    from unmask.chat.repl import Conversation
    from unmask.decoding.lockstep import LockstepOptions
    from unmask.errors import UnmaskError

    session = Session.load(str(tiny_llada_dir))
    opts = LockstepOptions(mode="jacobi", reasoning_tokens=5, answer_tokens=2, answer_separator="=")
    conv = Conversation(session, lockstep=opts)
    t1 = conv.respond("hi")
    assert t1.trace.regions["A"][0] - t1.trace.regions["R"][1] == 1  # the one-token separator
    assert t1.trace.nfe == max(s.step for s in t1.trace.steps) + 1  # Jacobi: one forward per step
    t2 = conv.respond("again")
    assert conv.messages[1]["content"] == t1.reply and len(t2.prompt_ids) > len(t1.prompt_ids)
    with pytest.raises(UnmaskError, match="answer_separator"):
        Conversation(session, lockstep=LockstepOptions(mode="jacobi"))


def test_compare_lockstep_rows_score_reasoning_like_plain_rows(capsys):
    """Lockstep rows carry r_correct / a_consistent from the same scoring as plain rows (they read
    0 before). On the shipped tiny-judge with A held back until R is complete, the walk is right."""
    d = _json(capsys, ["compare", "--task", "judge", "--n", "8", "--temperature", "0", "--samplers",
                       "leftright,lockstep_gs", "--answer_after", "1.0", "--json"])
    rows = {r["sampler"]: r for r in d["rows"]}
    for name in ("leftright", "lockstep_gs"):
        assert rows[name]["r_correct"] >= 0.75, rows[name]
        assert rows[name]["a_consistent"] >= 0.75, rows[name]
    assert rows["lockstep_gs"]["premature_rate"] == 0.0
