"""tiny-shapes: scenes and captions per GenEval category, the held-out split, determinism, and the
GenEval-rule scorer (detector and checks)."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from unmask.tasks import shapes as S
from unmask.tasks.shapes_scorer import Detection, by_class, check, detect, score_image, summarize


def test_palette_is_well_separated_from_itself_and_the_background() -> None:
    rgb = [np.array(c, float) for c in (*S.COLOURS.values(), S.BACKGROUND)]
    assert min(np.linalg.norm(a - b) for a, b in itertools.combinations(rgb, 2)) >= 100


@pytest.mark.parametrize("shape", S.SHAPES)
@pytest.mark.parametrize("side", [8, 9, 13])
def test_shape_masks_touch_all_four_sides_of_their_box(shape: str, side: int) -> None:
    m = S.shape_mask(shape, side, side)
    assert m[0].any() and m[-1].any() and m[:, 0].any() and m[:, -1].any()


def test_relative_position_follows_genevals_margin() -> None:
    a, b = (0, 10, 10, 20), (20, 10, 30, 20)
    assert S.relative_position(a, b) == {"left of"}
    assert S.relative_position(b, a) == {"right of"}
    assert S.relative_position((10, 0, 20, 10), (10, 20, 20, 30)) == {"above"}
    # centres 2 px apart, boxes 10 px wide: the 0.1 * (10 + 10) margin swallows the offset
    assert S.relative_position((0, 0, 10, 10), (2, 0, 12, 10)) == set()
    # a diagonal offset holds both relations; a mostly vertical one only the vertical
    assert S.relative_position((0, 0, 4, 4), (20, 20, 24, 24)) == {"left of", "above"}
    assert S.relative_position((0, 0, 4, 4), (3, 20, 7, 24)) == {"above"}


def test_categories_and_split_counts() -> None:
    for tag in S.CATEGORIES:
        assert S.records("train", tag) and S.records("test", tag), tag
    # single-object captions contain no composition: they serve both splits
    assert S.records("train", "single_object") == S.records("test", "single_object")
    for split in ("train", "test"):
        prompts = [m["prompt"] for m in S.records(split)]
        assert len(prompts) == len(set(prompts))


def test_held_out_compositions_never_occur_in_training_captions() -> None:
    held = {(k, v) for k, vs in S.HELD_OUT.items() for v in vs}
    assert sum(len(v) for v in S.HELD_OUT.values()) == 6 + 8 + 3 + 1
    seen = set()
    for m in S.records("train"):
        comps = set(S.compositions(m))
        assert not comps & held, m["prompt"]
        seen |= comps
    for m in S.records("test"):
        if m["tag"] != "single_object":
            assert set(S.compositions(m)) & held, m["prompt"]
    # every colour and every shape still occurs in training with some partner
    train_pairs = {v for k, v in seen if k == "colour_shape"}
    assert {p.split()[0] for p in train_pairs} == set(S.COLOURS)
    assert {p.split()[1] for p in train_pairs} == set(S.SHAPES)


def test_captions_follow_geneval_templates() -> None:
    by_prompt = {m["prompt"]: m for m in itertools.chain(S.records("train"), S.records("test"))}
    m = by_prompt["an orange circle left of a blue square"]
    assert m["tag"] == "position"
    assert m["include"] == [{"class": "square", "count": 1, "color": "blue"},
                            {"class": "circle", "count": 1, "color": "orange", "position": ["left of", 0]}]
    m = by_prompt["three triangles"]
    assert m["include"] == [{"class": "triangle", "count": 3}] and m["exclude"] == [{"class": "triangle", "count": 4}]


@pytest.mark.parametrize("tag", S.CATEGORIES)
def test_scenes_satisfy_their_caption(tag: str) -> None:
    rng = random.Random(7)
    for meta in S.records("train", tag)[:40]:
        objs = S.sample_scene(meta, rng)
        assert 1 <= len(objs) <= 4
        for req in meta["include"]:
            mine = [o for o in objs if o.shape == req["class"]]
            assert len(mine) == req["count"]
            if "color" in req:
                assert all(o.colour == req["color"] for o in mine)
        for a, b in itertools.combinations(objs, 2):
            assert S._apart(a, b)
        if tag == "position":
            rel = meta["include"][1]["position"][0]
            (a,) = [o for o in objs if o.shape == meta["include"][1]["class"]]
            (b,) = [o for o in objs if o.shape == meta["include"][0]["class"]]
            assert rel in S.relative_position(a.box, b.box)


def test_render_draws_the_palette_on_the_background() -> None:
    img = S.render([S.Obj("square", "red", 2, 3, 8, 8)])
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    assert tuple(img[3, 2]) == S.COLOURS["red"] and tuple(img[11, 2]) == S.BACKGROUND
    assert (np.all(img == S.COLOURS["red"], axis=-1)).sum() == 64


def test_streams_and_suites_are_deterministic_under_a_seed() -> None:
    a = list(itertools.islice(S.training_stream(3), 20))
    b = list(itertools.islice(S.training_stream(3), 20))
    c = list(itertools.islice(S.training_stream(4), 20))
    assert all(ma == mb and np.array_equal(ia, ib) for (ma, ia), (mb, ib) in zip(a, b))
    assert any(not np.array_equal(ia, ic) for (_, ia), (_, ic) in zip(a, c))
    assert all(S.split_of(m) == "train" for m, _ in a)
    s1, s2 = S.eval_suite(10), S.eval_suite(10)
    assert s1 == s2 and len(s1) == 60
    assert np.array_equal(S.ground_truth(s1[5]), S.ground_truth(s2[5]))
    # distinct captions come before repeats: counting has 3 held-out captions, all used in 10 items
    counting = [i["prompt"] for i in s1 if i["tag"] == "counting"]
    assert len(set(counting[:3])) == 3 and set(counting) == {m["prompt"] for m in S.records("test", "counting")}


# ------------------------------------------------------------------------------------- scorer


def det(shape: str, colour: str = "red", box=(0, 0, 8, 8), score: float = 1.0) -> Detection:
    return Detection(shape, colour, tuple(box), score, 64)


@pytest.mark.parametrize("shape", S.SHAPES)
@pytest.mark.parametrize("side", [8, 11, 16])
def test_detector_reads_every_shape_and_colour(shape: str, side: int) -> None:
    for colour in S.COLOURS:
        (d,) = detect(S.render([S.Obj(shape, colour, 5, 7, side, side)]))
        assert (d.shape, d.colour, d.box) == (shape, colour, (5, 7, 5 + side, 7 + side))
        assert d.score > 0.9


def test_detector_tolerates_noise_and_splits_touching_objects_by_colour() -> None:
    objs = [S.Obj("circle", "blue", 2, 2, 12, 12), S.Obj("triangle", "yellow", 18, 16, 10, 10)]
    noisy = S.render(objs).astype(int) + np.random.default_rng(0).integers(-25, 26, (32, 32, 3))
    got = sorted((d.shape, d.colour) for d in detect(np.clip(noisy, 0, 255).astype(np.uint8)))
    assert got == [("circle", "blue"), ("triangle", "yellow")]
    touching = S.render([S.Obj("square", "red", 2, 2, 10, 10), S.Obj("square", "green", 12, 2, 10, 10)])
    assert sorted((d.shape, d.colour) for d in detect(touching)) == [("square", "green"), ("square", "red")]
    speck = S.render([S.Obj("square", "red", 2, 2, 3, 3)])  # 9 px: below MIN_AREA, not an object
    assert detect(speck) == []


def test_check_counting_is_exact_and_uses_the_counting_threshold() -> None:
    meta = {"tag": "counting", "include": [{"class": "circle", "count": 2}], "exclude": [{"class": "circle", "count": 3}]}
    two = [det("circle"), det("circle", box=(20, 0, 28, 8))]
    assert check(meta, by_class(two, "counting"))[0]
    three = [*two, det("circle", box=(0, 20, 8, 28))]
    ok, reason = check(meta, by_class(three, "counting"))
    assert not ok and "circle<3, found 3" in reason
    # a third, unsure detection (0.5) is dropped at the counting threshold, kept at the normal one
    unsure = [*two, det("circle", box=(0, 20, 8, 28), score=0.5)]
    assert check(meta, by_class(unsure, "counting"))[0]
    assert len(by_class(unsure, "single_object")["circle"]) == 3
    assert len(by_class(unsure, "counting", threshold=0.3)["circle"]) == 3  # the diagnostic override
    assert len(by_class(unsure, "single_object", threshold=0.9)["circle"]) == 2


def test_check_colour_looks_only_at_the_most_confident_objects() -> None:
    meta = {"tag": "colors", "include": [{"class": "square", "count": 1, "color": "red"}]}
    assert check(meta, by_class([det("square", "red", score=0.9), det("square", "blue", score=0.8)], "colors"))[0]
    ok, reason = check(meta, by_class([det("square", "red", score=0.8), det("square", "blue", score=0.9)], "colors"))
    assert not ok and "expected red square>=1, found 0 red" in reason


def test_check_position_needs_the_relation_beyond_the_margin_and_a_matched_target() -> None:
    meta = next(m for m in S.records("train", "position") if m["prompt"].startswith("a red circle left of a blue"))
    target = meta["include"][0]["class"]
    far = [det(target, "blue", (20, 10, 28, 18)), det("circle", "red", (2, 10, 10, 18))]
    assert check(meta, by_class(far, "position"))[0]
    near = [det(target, "blue", (20, 10, 28, 18)), det("circle", "red", (18, 0, 26, 8))]  # mostly above
    ok, reason = check(meta, by_class(near, "position"))
    assert not ok and "expected circle left of target" in reason
    wrong_target = [det(target, "green", (20, 10, 28, 18)), det("circle", "red", (2, 10, 10, 18))]
    ok, reason = check(meta, by_class(wrong_target, "position"))
    assert not ok and "no target for circle to be left of" in reason


@pytest.mark.parametrize("tag", S.CATEGORIES)
def test_scorer_accepts_ground_truth_and_rejects_other_captions(tag: str) -> None:
    items = [it for it in S.eval_suite(12, seed=5) if it["tag"] == tag]
    rows = [score_image(S.ground_truth(it), it) for it in items]
    assert all(r["correct"] for r in rows), [r["reason"] for r in rows if not r["correct"]]
    other = {"single_object": "a square", "two_object": "a triangle and a diamond", "counting": "two diamonds",
             "colors": "a purple circle", "position": "a red square below a blue triangle",
             "color_attr": "a black circle and a yellow triangle"}[tag]
    meta = next(m for m in S.records("train", tag) if m["prompt"] == other)
    wrong = [score_image(S.ground_truth(it), meta)["correct"] for it in items if it["prompt"] != other]
    assert sum(wrong) <= len(wrong) // 4


def test_summarize_is_the_mean_over_categories() -> None:
    rows = [{"tag": "a", "correct": True}, {"tag": "a", "correct": False}, {"tag": "b", "correct": True}]
    s = summarize(rows)
    assert s["categories"]["a"]["accuracy"] == 0.5 and s["overall"] == 0.75 and s["images"] == 3


# ---------------------------------------------------------------------------------- tokenizer
def test_tokenizer_training_resumes_to_the_same_weights(tmp_path, capsys) -> None:
    import torch

    from unmask.models.magvitv2 import load_magvitv2
    from unmask.tasks import shapes_tokenizer as T

    assert np.array_equal(T.batch(0, 5, 3), T.batch(0, 5, 3)) and not np.array_equal(T.batch(0, 5, 3), T.batch(0, 6, 3))
    common = ["--batch_size", "2", "--warmup", "1", "--eval_n", "1", "--save_every", "1"]
    assert T.main(["--out", str(tmp_path / "a"), "--steps", "3", *common]) == 0
    assert T.main(["--out", str(tmp_path / "b"), "--steps", "2", *common]) == 0
    assert T.main(["--out", str(tmp_path / "b"), "--steps", "3", *common]) == 0
    assert "resumed from" in capsys.readouterr().out
    a = load_magvitv2(tmp_path / "a" / "tokenizer").state_dict()
    b = load_magvitv2(tmp_path / "b" / "tokenizer").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    rep = T.reconstruction_report(load_magvitv2(tmp_path / "a" / "tokenizer"), n_per_category=1)
    assert rep["n"] == 6 and 0 <= rep["scorer_same"] <= 1 and rep["mse"] > 0
    codes = load_magvitv2(tmp_path / "a" / "tokenizer").encode(T.to_pixels(T.batch(0, 0, 2)))
    assert codes.shape == (2, 64) and int(codes.max()) < 1024
    assert T.main(["--out", str(tmp_path / "c"), "--steps", "0"]) == 2


def test_decoder_only_fine_tuning_keeps_every_code(tmp_path, capsys) -> None:
    """``--decoder_only``: the decoder moves, the encoder and quantizer do not, so every image keeps
    its codes and an MDM trained on them still fits; ``--decoder_only`` without ``--init`` is one
    clear error."""
    import torch

    from unmask.models.magvitv2 import load_magvitv2
    from unmask.tasks import shapes_tokenizer as T

    common = ["--batch_size", "2", "--warmup", "1", "--eval_n", "1", "--save_every", "1"]
    assert T.main(["--out", str(tmp_path / "a"), "--steps", "2", *common]) == 0
    assert T.main(["--out", str(tmp_path / "d"), "--steps", "2", "--init", str(tmp_path / "a" / "tokenizer"),
                   "--decoder_only", "--palette_weight", "0.1", "--seed", "1", *common]) == 0
    before, after = load_magvitv2(tmp_path / "a" / "tokenizer"), load_magvitv2(tmp_path / "d" / "tokenizer")
    sa, sd = before.state_dict(), after.state_dict()
    assert all(torch.equal(sa[k], sd[k]) for k in sa if not k.startswith("decoder."))
    assert any(not torch.equal(sa[k], sd[k]) for k in sa if k.startswith("decoder."))
    x = T.to_pixels(T.batch(3, 0, 4))
    assert torch.equal(before.encode(x), after.encode(x))
    from unmask.tasks.shapes_mdm import encoder_sha256, vq_sha256

    assert encoder_sha256(tmp_path / "a" / "tokenizer") == encoder_sha256(tmp_path / "d" / "tokenizer")
    assert vq_sha256(tmp_path / "a" / "tokenizer") != vq_sha256(tmp_path / "d" / "tokenizer")
    assert T.main(["--out", str(tmp_path / "e"), "--steps", "1", "--decoder_only"]) == 2
    assert "--decoder_only needs --init" in capsys.readouterr().err


def test_palette_cross_entropy_reads_pixels_as_the_scorer_does() -> None:
    """The loss is low when every pixel is nearest its true palette colour and high when a pixel
    crosses to another colour, however small the squared error of the crossing is."""
    from unmask.tasks import shapes_tokenizer as T

    x = T.to_pixels(S.render([S.Obj("circle", "red", 4, 4, 12, 12)])[None])
    assert T.palette_ce(x, x).item() < 1e-6
    red, orange = T._PALETTE[1], T._PALETTE[2]
    near = x.clone()
    near[0, :, 10, 10] = red + 0.45 * (orange - red)  # still nearer red
    far = x.clone()
    far[0, :, 10, 10] = red + 0.55 * (orange - red)  # just across, to orange
    assert T.palette_ce(far, x) > 2 * T.palette_ce(near, x)


def test_case_study_failure_kinds_read_the_scorers_reasons() -> None:
    """The case study's "why images fail" table names the first failed GenEval check of each image;
    fed the scorer's own reasons, every kind comes out where it should."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "shapes_case_study.py"
    spec = importlib.util.spec_from_file_location("shapes_case_study", path)
    C = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(C)

    def kind(meta, dets):
        objects = by_class(dets, meta["tag"])
        ok, reason = check(meta, objects)
        assert not ok
        return C.failure_kind({"tag": meta["tag"], "reason": reason,
                               "details": {k: [list(d.box) for d in v] for k, v in objects.items()}})

    two = {"tag": "two_object", "include": [{"class": "circle", "count": 1}, {"class": "square", "count": 1}]}
    assert kind(two, [det("circle"), det("triangle", box=(20, 0, 28, 8))]) == "wrong shape"
    assert kind(two, [det("circle")]) == "object missing"
    count = {"tag": "counting", "include": [{"class": "circle", "count": 3}], "exclude": [{"class": "circle", "count": 4}]}
    assert kind(count, [det("circle"), det("circle", box=(20, 0, 28, 8))]) == "too few"
    four = [det("circle", box=(x, y, x + 8, y + 8)) for x in (0, 20) for y in (0, 20)]
    assert kind(count, four) == "too many"
    colour = {"tag": "colors", "include": [{"class": "square", "count": 1, "color": "red"}]}
    assert kind(colour, [det("square", "blue")]) == "wrong colour"
    pos = next(m for m in S.records("train", "position") if m["prompt"].startswith("a red circle left of a blue"))
    target = pos["include"][0]["class"]
    wrong_side = [det(target, "blue", box=(0, 10, 8, 18)), det("circle", "red", box=(20, 10, 28, 18))]
    assert kind(pos, wrong_side) == "wrong relation"
