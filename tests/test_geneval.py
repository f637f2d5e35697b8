"""GenEval prompt pipeline: the shipped prompt file, the folder layout GenEval's scorer reads,
resuming, the printed scoring command, and the CLI's error when no text-to-image backend exists."""

from __future__ import annotations

import collections
import json
import re

import pytest
from PIL import Image

from unmask.cli import main
from unmask.errors import UnmaskError
from unmask.eval import geneval as G


def fake_generator(calls: list):
    """A stand-in text-to-image model: one flat image per seed, its colour a function of the seed."""

    def generate(prompt: str, seeds):
        calls.append((prompt, list(seeds)))
        return [Image.new("RGB", (16, 16), (s % 256, (s // 256) % 256, len(prompt))) for s in seeds]

    return generate


def test_shipped_prompts_are_genevals_553_in_six_categories() -> None:
    recs = G.load_metadata()
    assert len(recs) == 553
    assert collections.Counter(r["tag"] for r in recs) == {"position": 100, "color_attr": 100, "two_object": 99,
                                                           "colors": 94, "single_object": 80, "counting": 80}
    assert recs[0] == {"tag": "single_object", "include": [{"class": "bench", "count": 1}],
                       "prompt": "a photo of a bench"}


def test_a_changed_prompt_file_fails_its_checksum(tmp_path, monkeypatch) -> None:
    bad = tmp_path / "evaluation_metadata.jsonl"
    bad.write_bytes(G.shipped_metadata_path().read_bytes().replace(b"bench", b"bunch", 1))
    monkeypatch.setattr(G, "shipped_metadata_path", lambda: bad)
    with pytest.raises(UnmaskError, match="SHA-256"):
        G.load_metadata()
    (tmp_path / "own.jsonl").write_text('{"tag": "x", "prompt": "p"}\n')
    with pytest.raises(UnmaskError, match="needs 'tag', 'include' and 'prompt'"):
        G.load_metadata(tmp_path / "own.jsonl")


def test_folder_layout_is_what_genevals_scorer_reads_and_resumes(tmp_path) -> None:
    recs = G.load_metadata()[:3]
    calls: list = []
    assert G.write_folder(tmp_path, recs, fake_generator(calls)) == 12
    # GenEval's evaluate_images.py: numeric subfolders, json.load(metadata.jsonl), samples/\d+.png
    subs = sorted(p.name for p in tmp_path.iterdir())
    assert subs == ["00000", "00001", "00002"]
    for i, name in enumerate(subs):
        with open(tmp_path / name / "metadata.jsonl") as f:
            assert json.load(f) == recs[i]
        pngs = sorted(p.name for p in (tmp_path / name / "samples").iterdir())
        assert pngs == ["00000.png", "00001.png", "00002.png", "00003.png"]
        assert all(re.match(r"\d+\.png", n) for n in pngs)
    first = (tmp_path / "00001" / "samples" / "00002.png").read_bytes()
    (tmp_path / "00001" / "samples" / "00002.png").unlink()
    calls.clear()
    assert G.write_folder(tmp_path, recs, fake_generator(calls)) == 1
    assert calls == [(recs[1]["prompt"], [G.sample_seed(0, 1, 2)])]
    assert (tmp_path / "00001" / "samples" / "00002.png").read_bytes() == first
    cmd = G.scoring_command(tmp_path)
    assert "evaluation/evaluate_images.py" in cmd and str(tmp_path.resolve()) in cmd and "summary_scores.py" in cmd


def test_summarize_reads_genevals_results_file(tmp_path) -> None:
    rows = [{"tag": "counting", "correct": True}, {"tag": "counting", "correct": False},
            {"tag": "colors", "correct": True}]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = G.summarize_results(tmp_path / "results.jsonl")
    assert s["categories"]["counting"]["accuracy"] == 0.5 and s["overall"] == 0.75


def test_cli_needs_a_text_to_image_backend_and_then_writes_and_prints_the_command(tmp_path, capsys, monkeypatch) -> None:
    rc = main(["eval", "--task", "geneval", "--model_name_or_path", "tiny-sudoku", "--output_dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: no text-to-image backend") and err.count("\n") == 1
    calls: list = []
    monkeypatch.setattr(G, "T2I_BACKENDS", [lambda args: None, lambda args: fake_generator(calls)])
    rc = main(["eval", "--task", "geneval", "--model_name_or_path", "some/t2i-model", "--limit", "2",
               "--output_dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0 and "wrote 8 images for 2 GenEval prompts" in out
    assert G.scoring_command(tmp_path / "geneval-t2i-model") in out
    assert len(list((tmp_path / "geneval-t2i-model").iterdir())) == 2


def test_shapes_ground_truth_through_genevals_layout_scores_full_marks(tmp_path) -> None:
    from unmask.tasks import shapes as S
    from unmask.tasks.shapes_scorer import score_folder, summarize

    items = S.eval_suite(2, seed=9)
    by_prompt = {it["prompt"]: it for it in items}

    def render(prompt, seeds):
        return [Image.fromarray(S.ground_truth(dict(by_prompt[prompt], seed=s))) for s in seeds]

    records = [{k: it[k] for k in ("tag", "include", "exclude", "prompt") if k in it} for it in by_prompt.values()]
    G.write_folder(tmp_path, records, render, n_samples=2)
    rows = score_folder(tmp_path)
    assert len(rows) == 2 * len(records) and all(r["correct"] for r in rows)
    assert summarize(rows)["overall"] == 1.0 and len(summarize(rows)["categories"]) == 6
