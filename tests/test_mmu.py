"""Image understanding: the reference prompt layout, ``unmask sample --image``, the prefix cache."""

from __future__ import annotations

import json

import pytest
import torch
from tiny import make_tokenizer
from tiny_mmada import write_tiny_mmada

import unmask
from unmask.cli import main
from unmask.models.loading import load_model
from unmask.models.magvitv2 import load_magvitv2
from unmask.multimodal.images import load_image
from unmask.multimodal.mmu import image_codes, mmu
from unmask.multimodal.prompting import EOI, MMU, SOI


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_tiny_mmada(tmp_path_factory.mktemp("mmu"))


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    pixels = (torch.rand(40, 56, 3, generator=g) * 255).to(torch.uint8).numpy()
    path = tmp_path_factory.mktemp("img") / "photo.png"
    Image.fromarray(pixels).save(path)
    return path


def test_image_is_resized_and_center_cropped(photo):
    x = load_image(photo, 32)
    assert x.shape == (1, 3, 32, 32) and -1 <= float(x.min()) and float(x.max()) <= 1


def test_prompt_layout_and_generation(folder, photo):
    model, vq, tok = load_model(folder / "model"), load_magvitv2(folder / "vq"), make_tokenizer()
    codes = image_codes(model, vq, photo)
    assert codes.shape == (64,) and torch.equal(codes, vq.encode(load_image(photo, 32))[0])
    out = mmu(model, vq, tok, [photo], ["what is it?"], "confidence", max_new_tokens=8, steps=4, stop_at_eos=False)
    seq = out.sequences[0]
    assert seq[:2] == [MMU, SOI] and seq[66] == EOI
    assert seq[2:66] == (codes + model.config.image_offset).tolist()
    assert len(out.generated[0]) == 8


def test_prefix_cache_runs_fewer_tokens_through_the_model(folder, photo):
    model, vq, tok = load_model(folder / "model"), load_magvitv2(folder / "vq"), make_tokenizer()
    kw = dict(max_new_tokens=16, steps=8, block_size=8, stop_at_eos=False)
    plain = mmu(model, vq, tok, [photo], ["what?"], "confidence", **kw)
    cached = mmu(model, vq, tok, [photo], ["what?"], "confidence", use_cache="prefix", **kw)
    assert cached.traces[0].forward_tokens < plain.traces[0].forward_tokens / 2  # 254 vs 728 here


def test_sample_image_cli(folder, photo, capsys):
    args = ["sample", "--model_name_or_path", str(folder / "model"), "--vq_model_path", str(folder / "vq"),
            "--image", str(photo), "--prompt", "what?", "--max_new_tokens", "8", "--steps", "4", "--json",
            "--device", "cpu"]
    assert main(args) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["nfe"] == 4


@pytest.mark.parametrize("case,message", [
    ("not_image", "is not a readable image"),
    ("no_vq", "--image needs --vq_model_path"),
    ("text_only", "text-only model"),
    ("missing", "does not exist"),
])
def test_sample_image_bad_input(folder, photo, tmp_path, tiny_llada_dir, capsys, case, message):
    bad = tmp_path / "fake.png"
    bad.write_text("not a picture")
    model = str(tiny_llada_dir if case == "text_only" else folder / "model")
    image = {"not_image": bad, "missing": tmp_path / "nope.png"}.get(case, photo)
    args = ["sample", "--model_name_or_path", model, "--image", str(image), "--prompt", "q", "--device", "cpu"]
    if case != "no_vq":
        args += ["--vq_model_path", str(folder / "vq")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1


def test_text_sampling_is_unchanged_without_image(tiny_llada_dir, capsys):
    assert main(["sample", "--model_name_or_path", str(tiny_llada_dir), "--prompt", "ab", "--max_new_tokens", "4",
                 "--steps", "2", "--json", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["nfe"] == 2
    assert unmask.generate  # the public API is untouched


def test_chat_image_command(folder, photo, tmp_path, monkeypatch, capsys):
    import io
    import sys

    lines = f"/image {photo}\nwhat is it?\n/image {tmp_path / 'nope.png'}\n/reset\nwhat is it?\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    args = ["chat", "--model_name_or_path", str(folder / "model"), "--vq_model_path", str(folder / "vq"),
            "--max_new_tokens", "8", "--steps", "4", "--json", "--device", "cpu"]
    assert main(args) == 2  # the missing picture is one failure
    out = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert out[0] == {"command": "image", "image": str(photo), "tokens": 64}
    with_image, after_reset = out[1], out[3]
    assert with_image["prompt_tokens"] == after_reset["prompt_tokens"] + 67  # <|mmu|> <|soi|> 64 codes <|eoi|>
