"""``unmask eval --task shapes_geneval`` and the MMaDA GenEval backend on a tiny random-weight
model exported by the tiny-shapes trainer: the plumbing (held-out prompts through t2i, the
scorer, per-category summary, images, resume, batch-size independence), not the accuracy."""

from __future__ import annotations

import json

import pytest
from tiny_mmada import tiny_magvit

from unmask.cli import main
from unmask.eval import shapes_geneval as E
from unmask.models.magvitv2 import save_magvitv2
from unmask.tasks import shapes as S
from unmask.tasks import shapes_mdm as M


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    save_magvitv2(tiny_magvit(0), root / "vq0")
    M.main(["--out", str(root / "run"), "--vq", str(root / "vq0"), "--size", "test", "--steps", "1",
            "--batch_size", "2", "--warmup", "1"])
    return root / "run" / "model", root / "run" / "vq"


def _eval(pair, out, *extra):
    model, vq = pair
    return main(["eval", "--task", "shapes_geneval", "--model_name_or_path", str(model), "--vq_model_path", str(vq),
                 "--sampler", "confidence", "--steps", "2", "--guidance_scale", "1.5", "--output_dir", str(out),
                 "--json", *extra])


def test_suite_is_held_out_and_round_robin():
    items = E.suite(3)
    assert [it["tag"] for it in items[:6]] == list(S.CATEGORIES)
    assert [it["index"] for it in items] == list(range(18))
    assert all(S.split_of(it) == "test" or it["tag"] == "single_object" for it in items)


def test_eval_scores_records_images_and_resumes(pair, tmp_path, capsys):
    assert _eval(pair, tmp_path / "a", "--limit", "6", "--batch_size", "4") == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["n"] == 6 and s["complete"] and set(s["categories"]) == set(S.CATEGORIES)
    assert s["overall"] == pytest.approx(sum(c["accuracy"] for c in s["categories"].values()) / 6)
    assert s["mean_nfe"] == 2 and s["steps"] == 2 and s["max_text_len"] == M.MAX_TEXT_LEN
    run = tmp_path / "a" / "shapes_geneval-model-confidence-s2-w1.5"
    first = {p.name: p.read_bytes() for p in (run / "images").iterdir()}
    assert len(first) == 6
    # resume to 8 items: the first six are kept (not redrawn), two are added
    assert _eval(pair, tmp_path / "a", "--limit", "8", "--batch_size", "4") == 0
    rows = [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()]
    assert sorted(r["index"] for r in rows) == list(range(8))
    assert all({"tag", "prompt", "correct", "reason", "details", "nfe"} <= r.keys() for r in rows)
    assert json.loads((run / "summary.json").read_text())["n"] == 8
    # one prompt at a time gives the same images and verdicts as batches of four
    capsys.readouterr()
    assert _eval(pair, tmp_path / "b", "--limit", "8", "--batch_size", "1") == 0
    run_b = tmp_path / "b" / run.name
    for p in (run / "images").iterdir():
        assert (run_b / "images" / p.name).read_bytes() == p.read_bytes()
    rows_b = {r["index"]: r for r in map(json.loads, (run_b / "results.jsonl").read_text().splitlines())}
    assert all(rows_b[r["index"]]["correct"] == r["correct"] for r in rows)


def test_eval_refuses_missing_tokenizer_and_changed_settings(pair, tmp_path, capsys):
    model, _ = pair
    rc = main(["eval", "--task", "shapes_geneval", "--model_name_or_path", str(model), "--output_dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: --task shapes_geneval needs --vq_model_path")
    assert _eval(pair, tmp_path, "--limit", "1") == 0
    run = tmp_path / "shapes_geneval-model-confidence-s2-w1.5"
    (run / "run.json").write_text(json.dumps({**json.loads((run / "run.json").read_text()), "max_text_len": 7}))
    capsys.readouterr()
    assert _eval(pair, tmp_path, "--limit", "1") == 2
    assert "other settings (max_text_len)" in capsys.readouterr().err


def test_geneval_task_draws_through_the_mmada_backend(pair, tmp_path, capsys):
    model, vq = pair
    rc = main(["eval", "--task", "geneval", "--model_name_or_path", str(model), "--vq_model_path", str(vq),
               "--steps", "2", "--limit", "1", "--output_dir", str(tmp_path)])
    assert rc == 0 and "wrote 4 images for 1 GenEval prompts" in capsys.readouterr().out
    imgs = sorted((tmp_path / "geneval-model" / "00000" / "samples").iterdir())
    assert [p.name for p in imgs] == [f"{k:05}.png" for k in range(4)]
