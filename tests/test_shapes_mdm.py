"""The tiny-shapes MDM trainer: a few steps on a tiny config (weights change, loss finite), rerun
and resume give bit-identical weights, and the export loads and decodes like MMaDA-8B."""

from __future__ import annotations

import json
import math

import pytest
import torch
from tiny_mmada import tiny_magvit

from unmask.models.loading import build_model, load_model
from unmask.models.magvitv2 import save_magvitv2
from unmask.models.mmada import MMaDA
from unmask.multimodal.t2i import t2i
from unmask.tasks import shapes as S
from unmask.tasks import shapes_mdm as M
from unmask.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def vq(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vq")
    save_magvitv2(tiny_magvit(0), folder)
    return folder


def _run(out, vq, steps, **kw):
    argv = ["--out", str(out), "--vq", str(vq), "--size", "test", "--steps", str(steps), "--batch_size", "3",
            "--warmup", "1", "--save_every", "2", "--log_every", "1", "--lr", "3e-3"]
    for k, v in kw.items():
        argv += [f"--{k}", str(v)]
    return M.train(M.build_parser().parse_args(argv))


def test_alphabet_covers_every_caption():
    chars = set("".join(r["prompt"] for r in S._all_records()))
    assert chars == set(M.ALPHABET)
    longest = max(len(r["prompt"]) for r in S._all_records())
    assert longest + 3 <= M.MAX_TEXT_LEN + 1  # <|t2i|> <bos> text <eos> fits the text part


def test_batches_are_a_function_of_seed_and_step():
    a, b = M.step_batch(0, 5, 4), M.step_batch(0, 5, 4)
    assert a[0] == b[0] and (a[1] == b[1]).all()
    assert M.step_batch(0, 6, 4)[0] != a[0] or not (M.step_batch(0, 6, 4)[1] == a[1]).all()


def test_training_rows_follow_the_t2i_layout(vq):
    from unmask.multimodal.prompting import EOI, IPAD, SOI, T2I

    model = build_model(M.model_config("test", 64, 64), seed=0)
    tok = M.char_tokenizer()
    codes = torch.randint(0, 64, (4, 64), generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    ids, mask, masked, start = M.training_rows(model, tok, ["a red circle"] * 4, codes, g, 0.5, M.MAX_TEXT_LEN)
    assert start == M.MAX_TEXT_LEN + 2 and ids.shape[1] == start + 64 + 1
    assert (ids[:, start - 1] == SOI).all() and (ids[:, -1] == EOI).all()
    assert (ids[:, 0] == IPAD).all() and (ids == T2I).sum(1).eq(1).all()
    img = ids[:, start : start + 64]
    assert (masked.sum(1) >= 1).all()
    assert (img[masked] == model.config.mask_token_id).all()
    assert (img[~masked] == codes[~masked] + model.config.image_offset).all()
    assert (mask[:, start:] == 1).all()


def test_few_steps_train_resume_and_export(tmp_path, vq):
    init = build_model(M.model_config("test", 64, 64, "compact"), seed=0).state_dict()
    full = _run(tmp_path / "a", vq, 4)
    assert math.isfinite(full["loss"])
    sd = full["model"].state_dict()
    assert any(not torch.equal(sd[k], init[k]) for k in sd)  # training moved the weights
    log = [json.loads(x) for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4] and all(math.isfinite(r["loss"]) for r in log)

    _run(tmp_path / "b", vq, 2)  # stop at step 2 (a checkpoint) ...
    resumed = _run(tmp_path / "b", vq, 4)  # ... and resume to 4: bit-identical to the straight run
    for k, v in resumed["model"].state_dict().items():
        assert torch.equal(v, sd[k]), k

    folder = tmp_path / "a" / "model"
    model = load_model(folder)  # the MMaDA-8B loading path
    assert isinstance(model, MMaDA)
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k
    meta = json.loads((folder / "t2i.json").read_text())
    assert meta["max_text_len"] == M.MAX_TEXT_LEN and meta["vq_sha256"] == M.vq_sha256(vq) and meta["step"] == 4
    assert meta["vq_encoder_sha256"] == M.encoder_sha256(vq)
    assert (tmp_path / "a" / "vq" / "model.safetensors").read_bytes() == (vq / "model.safetensors").read_bytes()
    from unmask.models.magvitv2 import load_magvitv2

    out = t2i(model, load_magvitv2(tmp_path / "a" / "vq"), ["two green squares"], "maskgit",
              tokenizer=load_tokenizer(folder), steps=4, max_text_len=meta["max_text_len"], seed=0)
    assert out.images.shape == (1, 32, 32, 3) and out.codes.shape == (1, 64)


def test_compact_layout_is_what_the_compact_export_writes():
    """Training in the compact ids is training the compact export of the MMaDA-8B-id model: the
    same config ids, and the same loss on the same batch from the same (row-mapped) weights."""
    from unmask.multimodal.compact import compact_model

    tok = M.char_tokenizer()
    big = build_model(M.model_config("test", 64, 64, "mmada"), seed=0)
    exported, _ = compact_model(big, len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    cfg = M.model_config("test", 64, 64, "compact")
    for name in ("vocab_size", "llm_vocab_size", "mask_token_id", "special_token_ids", "bos_token_id",
                 "eos_token_id", "pad_token_id", "image_offset", "rows"):
        assert getattr(cfg, name) == getattr(exported.config, name), name
    small = build_model(cfg, seed=0)
    small.load_state_dict(exported.state_dict())
    captions = ["a red circle", "two green squares", "a blue triangle left of a yellow diamond"]
    codes = torch.randint(0, 64, (3, 64), generator=torch.Generator().manual_seed(0))
    losses = []
    for model in (big, small):
        ids, mask, masked, start = M.training_rows(model, tok, captions, codes, torch.Generator().manual_seed(3),
                                                   0.0, M.MAX_TEXT_LEN)
        losses.append(M.loss_of(model.train(), ids, mask, masked, codes, start))
    assert torch.allclose(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    assert small.config.rows * 100 < big.config.rows


def test_learning_rate_schedules():
    args = M.build_parser().parse_args(["--out", "o", "--vq", "v", "--lr", "1e-3", "--warmup", "10", "--steps", "110"])
    assert args.decay == "cosine" and args.layout == "compact"
    lr = [M.learning_rate(args, s) for s in range(110)]
    assert lr[0] == 1e-4 and lr[9] == 1e-3 and lr[10] == 1e-3  # linear warm-up, then the peak
    assert abs(lr[60] - 5e-4) < 1e-12 and lr[109] < 1e-6  # half-way down at mid-decay, ~0 at the end
    assert all(a >= b for a, b in zip(lr[10:], lr[11:]))
    args.decay = "constant"
    assert [M.learning_rate(args, s) for s in (0, 9, 50, 109)] == [1e-4, 1e-3, 1e-3, 1e-3]


def test_bad_arguments_exit_2(tmp_path, capsys):
    assert M.main(["--out", str(tmp_path / "x"), "--vq", str(tmp_path / "nowhere")]) == 2
    assert "error: --vq" in capsys.readouterr().err
    assert M.main(["--out", str(tmp_path / "x"), "--vq", "v", "--cond_dropout", "1.5"]) == 2


def test_init_continues_from_an_exported_model(tmp_path, vq, capsys):
    """``--init``: the weights of a finished run's export, a fresh optimizer and step 0; a folder of
    another size, or paired with another tokenizer, is refused in one line."""
    first = _run(tmp_path / "a", vq, 2)
    start = {k: v.clone() for k, v in first["model"].state_dict().items()}
    cont = _run(tmp_path / "c", vq, 1, init=tmp_path / "a" / "model", lr="1e-12", seed=1)
    log = [json.loads(x) for x in (tmp_path / "c" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1]  # its own schedule, from step 0
    meta = json.loads((tmp_path / "c" / "model" / "t2i.json").read_text())
    assert meta["step"] == 1 and meta["init_step"] == 2  # where it started from is recorded
    for k, v in cont["model"].state_dict().items():  # a negligible rate: still the initial weights
        assert torch.allclose(v, start[k], atol=1e-6), k
    scratch = build_model(M.model_config("test", 64, 64, "compact"), seed=0).state_dict()
    assert any(not torch.allclose(cont["model"].state_dict()[k], scratch[k]) for k in scratch)

    other = tmp_path / "vq2"
    save_magvitv2(tiny_magvit(1), other)
    with pytest.raises(SystemExit, match="another VQ tokenizer"):
        _run(tmp_path / "d", other, 1, init=tmp_path / "a" / "model")
    with pytest.raises(SystemExit, match="does not fit"):
        _run(tmp_path / "e", vq, 1, init=tmp_path / "a" / "model", size="tiny")
    assert M.main(["--out", str(tmp_path / "f"), "--vq", str(vq), "--init", str(tmp_path / "nowhere")]) == 2
    assert "error: --init" in capsys.readouterr().err
