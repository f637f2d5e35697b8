"""The writing task and its LLM judge, end to end against a real OpenAI-compatible server process
(``unmask serve`` on a tiny random-weight LLaDA, 127.0.0.1 only): its answers are nonsense,
which is what the strict parser must survive. Parsing and statistics on hand-made answers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from tiny import write_tiny

from unmask.cli import main
from unmask.eval.writing_judge import (
    pairwise_summary,
    parse_pairwise,
    parse_single,
    single_summary,
)
from unmask.eval.writing_metrics import distinct_n, writing_metrics
from unmask.tasks.benchmarks import get_benchmark

SRC = Path(__file__).resolve().parents[1] / "src"
KEY = "sk-test-never-written-0123456789"
ENV = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}


# --------------------------------------------------------------------------- data and task
def test_shipped_prompts():
    task = get_benchmark("writing")
    items = task.load()
    assert len(items) == 200 and len({it["id"] for it in items}) == 200
    assert all("500 word" in it["prompt"] for it in items)
    assert task.prompt(items[0], chat=True, num_fewshot=0) == [{"role": "user", "content": items[0]["prompt"]}]
    assert task.generation_defaults() == {"max_new_tokens": 512, "steps": 512, "block_size": 32}
    m = task.score(items[0], "x", "the cat sat. the cat sat. the cat sat.")
    # 9 words, trigrams: 7, distinct 3 -> repetition 4/7
    assert m == {"words": 9.0, "repetition": pytest.approx(4 / 7)}


def test_judge_free_metrics_by_hand():
    recs = [{"output": "a b a b", "generated_tokens": 8}, {"output": "a c", "generated_tokens": 3}]
    m = writing_metrics(recs, max_new_tokens=8)
    assert m["distinct_1"] == pytest.approx(3 / 6)  # a b c out of 6 words
    assert m["distinct_2"] == pytest.approx(3 / 4)  # (a,b) (b,a) (a,b) (a,c): 3 distinct of 4
    assert m["no_eos"] == 0.5 and m["words"] == 3.0 and m["empty"] == 0
    assert m["repetition"] == pytest.approx((1 - 2 / 2) / 2)  # "a b a b": trigrams (a,b,a) (b,a,b): none repeats
    assert distinct_n([["x"]], 2) == 0.0
    same = writing_metrics([{"output": "the same story here"}] * 3, None)
    assert same["self_bleu"] == pytest.approx(100.0)


def test_self_bleu_equals_sacrebleus_own_loop():
    import random

    from sacrebleu.metrics import BLEU

    from unmask.eval.writing_metrics import self_bleu

    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(30)] + [".", ",", "the"]
    texts = [" ".join(rng.choice(vocab) for _ in range(rng.randint(3, 50))) for _ in range(10)] + ["a b c d"] * 2
    bleu = BLEU(effective_order=True)
    want = sum(bleu.sentence_score(t, texts[:i] + texts[i + 1 :]).score for i, t in enumerate(texts)) / len(texts)
    assert self_bleu(texts) == pytest.approx(want, rel=1e-12)


# --------------------------------------------------------------------------- strict parsing
@pytest.mark.parametrize("answer,want", [
    ("A is livelier.\nVerdict: A", "A"),
    ("reasons\n\n**Verdict: B**\n", "B"),
    ("Verdict: [tie]", "tie"),
    ("verdict: TIE.", "tie"),
    ("Verdict: A\nActually B is better.", None),  # the verdict is not the last line
    ("Verdict: A or B", None),
    ("I prefer A.", None),
    ("", None),
    ("x7 q,,a b\n\nzz", None),  # what the tiny server says
])
def test_parse_pairwise(answer, want):
    assert parse_pairwise(answer) == want


def test_parse_single():
    good = {"creativity": 7, "coherence": 6, "engagement": 5, "writing_quality": 6, "prompt_adherence": 9,
            "overall": 7, "explanation": "fine"}
    assert parse_single(json.dumps(good))["prompt_adherence"] == 9
    assert parse_single("```json\n" + json.dumps(good) + "\n```")["overall"] == 7
    assert parse_single(json.dumps({**good, "overall": 7.0}))["overall"] == 7
    for bad in ({**good, "overall": 11}, {**good, "overall": 0}, {**good, "creativity": "7"},
                {**good, "coherence": 6.5}, {k: v for k, v in good.items() if k != "engagement"},
                {**good, "overall": True}):
        assert parse_single(json.dumps(bad)) is None
    assert parse_single("Scores: " + json.dumps(good)) is None  # text around the object
    assert parse_single(json.dumps(good) + json.dumps(good)) is None
    assert parse_single("garbage") is None


def _j(sid, order, verdict):
    return {"id": sid, "order": order, "verdict": verdict}


def test_pairwise_statistics_by_hand():
    js = [
        _j("1", "AB", "A"), _j("1", "BA", "B"),      # this run wins in both orders: 1.0, consistent
        _j("2", "AB", "A"), _j("2", "BA", "A"),      # slot A wins both times: 0.5, inconsistent
        _j("3", "AB", "tie"), _j("3", "BA", "tie"),  # 0.5, consistent
        _j("4", "AB", "B"), _j("4", "BA", None),     # one order unparsed: excluded
    ]
    s = pairwise_summary(js)
    assert s["pairs"] == 4 and s["pairs_scored"] == 3 and s["pairs_unparsed"] == 1 and s["unparsed"] == 1
    assert s["win_rate"] == pytest.approx((1.0 + 0.5 + 0.5) / 3)
    assert s["position_consistency"] == pytest.approx(2 / 3)
    assert s["slot_a_share"] == pytest.approx(3 / 5)  # decisive: A B A A B
    lo, hi = s["win_rate_ci95"]
    assert 0.5 <= lo <= s["win_rate"] <= hi <= 1.0
    assert (s["wins"], s["ties"], s["losses"]) == (1, 2, 0)
    garbage = pairwise_summary([_j("1", "AB", None), _j("1", "BA", None)])
    assert garbage["win_rate"] is None and garbage["win_rate_ci95"] is None and garbage["unparsed"] == 2


def test_single_statistics():
    s = single_summary([{"scores": {c: 4 for c in ("creativity", "coherence", "engagement", "writing_quality",
                                                     "prompt_adherence", "overall")}},
                        {"scores": None}])
    assert s["scored"] == 1 and s["unparsed"] == 1 and s["criteria"]["overall"]["mean"] == 4.0


# --------------------------------------------------------------------------- end to end
class Server:
    def __init__(self, folder: Path, tmp: Path, name: str) -> None:
        self.log = tmp / "server.log"
        # --max_wait_ms: every request waits 0.3 s for company, so a judge run lasts long enough to kill
        with open(self.log, "w") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "unmask", "serve", "--port", "0", "--model_name_or_path", str(folder),
                 "--served_model_name", name, "--max_new_tokens", "8", "--max_wait_ms", "300"],
                stdout=fh, stderr=subprocess.STDOUT, env=ENV)

    def wait_ready(self) -> Server:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(self.log.read_text())
            m = re.search(r"http://127\.0\.0\.1:(\d+)/v1", self.log.read_text())
            if m:
                self.url = f"http://127.0.0.1:{m.group(1)}/v1"
                try:
                    if httpx.get(self.url[:-3] + "/health", timeout=5).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        raise RuntimeError(f"server did not start: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny LLaDA with a long context (judge prompts hold two stories), two 3-story writing runs
    made with it, and the same model served as the judge."""
    tmp = tmp_path_factory.mktemp("writing")
    folder = write_tiny(tmp / "llada", "llada", max_sequence_length=4096)
    server = Server(folder, tmp, "judge-llm")  # starts while the runs decode
    runs = {}
    for sampler in ("confidence", "random"):
        out = tmp / "results"
        argv = ["eval", "--model_name_or_path", str(folder), "--task", "writing", "--sampler", sampler, "--limit", "3",
                "--max_new_tokens", "24", "--steps", "12", "--block_size", "24", "--output_dir", str(out), "--json"]
        assert main(argv) == 0
        runs[sampler] = next(p for p in out.iterdir() if f"__{sampler}__" in p.name)
    try:
        server.wait_ready()
        yield {"runs": runs, "url": server.url, "tmp": tmp, "folder": folder}
    finally:
        server.stop()


def judge_cmd(run_dir, url, *extra):
    return [sys.executable, "-m", "unmask", "judge", str(run_dir), "--judge_base_url", url, "--judge_model",
            "judge-llm", "--judge_max_tokens", "8", "--judge_retries", "0", "--json", *extra]


class Result:
    def __init__(self, rc, out, err):
        self.returncode, self.stdout, self.stderr = rc, out, err


@pytest.fixture
def run_judge(capsys, monkeypatch):
    """``unmask judge ...`` in this process (the kill test below runs a real process)."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)

    def run(run_dir, url, *extra, key=True):
        if not key:
            monkeypatch.delenv("OPENAI_API_KEY")
        capsys.readouterr()
        rc = main(judge_cmd(run_dir, url, *extra)[3:])
        out, err = capsys.readouterr()
        return Result(rc, out, err)

    return run


def test_eval_writes_writing_metrics(setup, capsys):
    run = setup["runs"]["confidence"]
    m = json.loads((run / "writing_metrics.json").read_text())
    assert m["n"] == 3 and 0 <= m["distinct_1"] <= 1 and m["self_bleu"] is not None
    assert m["no_eos"] is not None


def test_pairwise_both_orders_nonsense_judge_and_resume_after_kill(setup, run_judge):
    mine, theirs = setup["runs"]["confidence"], setup["runs"]["random"]
    cmd = judge_cmd(mine, setup["url"], "--compare_to", str(theirs), "--judge_concurrency", "1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**ENV, "OPENAI_API_KEY": KEY})
    files = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        files = list((mine / "judge").glob("pairwise__*.jsonl")) if (mine / "judge").exists() else []
        if files and files[0].read_bytes().count(b"\n") >= 1:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait(30)
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "the judge finished before it could be killed"
    before = [json.loads(x) for x in files[0].read_text().splitlines() if x.strip()]
    assert 1 <= len(before) < 6

    r = run_judge(mine, setup["url"], "--compare_to", str(theirs), "--judge_concurrency", "2")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)["judge"]
    assert s["asked"] == 6 - len(before)  # only what the killed run lacked
    lines = [json.loads(x) for x in files[0].read_text().splitlines() if x.strip()]
    assert len(lines) == 6 and len({x["key"] for x in lines}) == 6
    assert lines[: len(before)] == before
    # every pair in both orders, the stories swapped between them
    mine_out = {r["id"]: r["output"] for r in map(json.loads, (mine / "samples.jsonl").read_text().splitlines())}
    theirs_out = {r["id"]: r["output"] for r in map(json.loads, (theirs / "samples.jsonl").read_text().splitlines())}
    for x in lines:
        text = x["messages"][0]["content"]
        a = text.index("Story A:\n") + len("Story A:\n")
        b = text.index("Story B:\n") + len("Story B:\n")
        first, second = (mine_out, theirs_out) if x["order"] == "AB" else (theirs_out, mine_out)
        assert text[a:].startswith(first[x["id"]] + "\n\nStory B:") and text[b:].startswith(second[x["id"]] + "\n\n")
    assert sorted((x["id"], x["order"]) for x in lines) == sorted((i, o) for i in mine_out for o in ("AB", "BA"))
    # the tiny model's answers are nonsense: all unparsed, no win rate (not 50%)
    assert all(x["verdict"] is None and isinstance(x["raw"], str) for x in lines)
    assert s["unparsed"] == 6 and s["win_rate"] is None and s["position_consistency"] is None
    assert s["pairs"] == 3 and s["pairs_scored"] == 0
    # the key is never written
    for p in mine.rglob("*"):
        if p.is_file():
            assert KEY not in p.read_text(errors="replace")

    again = run_judge(mine, setup["url"], "--compare_to", str(theirs))
    assert again.returncode == 0 and json.loads(again.stdout)["judge"]["asked"] == 0


def test_single_mode_counts_unparsed(setup, run_judge):
    r = run_judge(setup["runs"]["random"], setup["url"], "--judge_mode", "single")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)["judge"]
    assert s["mode"] == "single" and s["judgments"] == 3 and s["unparsed"] == 3 and s["scored"] == 0
    assert s["criteria"]["overall"]["mean"] is None


def _one_error(r):
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def test_missing_key_and_unreachable_url(setup, run_judge):
    run = setup["runs"]["confidence"]
    assert "not an eval run folder" in _one_error(run_judge(setup["tmp"], setup["url"]))
    # a closed port on this machine
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    line = _one_error(run_judge(run, f"http://127.0.0.1:{port}/v1"))
    assert "unreachable" in line
    assert "OPENAI_API_KEY" in _one_error(run_judge(run, setup["url"], key=False))


def test_writing_run_has_no_accuracy_rather_than_zero(setup, tmp_path):
    """Writing has no reference answer: its summary says so (None, "n/a") instead of a 0 accuracy
    that reads like a failed run, and a sweep's table and plots skip it the same way."""
    from unmask.eval.commands import _format_summary
    from unmask.eval.results import summarize
    from unmask.eval.sweep import markdown_table

    run = setup["runs"]["confidence"]
    recs = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines() if line.strip()]
    assert len(recs) == 3 and all(r["score"] is None for r in recs)
    s = summarize(recs, 3)
    assert s["accuracy"] is None and s["accuracy_stderr"] is None and s["metrics"]["words"] > 0
    text = _format_summary({**s, "task": "writing", "model": "m", "sampler": "confidence", "run_dir": str(run)})
    assert "accuracy=n/a" in text and "accuracy=0" not in text
    assert "| n/a |" in markdown_table([{"task": "writing", "accuracy": None}])
    # a scored task keeps its accuracy, and an empty run is 0 of 0, not "no reference answer"
    assert summarize([{"score": 1.0}, {"score": 0.0}], 2)["accuracy"] == 0.5
    assert summarize([], 2)["accuracy"] == 0.0
