"""``unmask t2i`` on a tiny MMaDA + MAGVIT-v2 folder: images, grids, traces, bad input."""

from __future__ import annotations

import json

import pytest
from tiny_mmada import tiny_magvit, write_tiny_mmada

from unmask.cli import main
from unmask.models.magvitv2 import save_magvitv2


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_tiny_mmada(tmp_path_factory.mktemp("t2i-cli"))


def base(folder, out, *extra):
    return ["t2i", "--model_name_or_path", str(folder / "model"), "--vq_model_path", str(folder / "vq"),
            "--prompt", "a red cat", "--out", str(out), "--steps", "4", "--max_text_len", "16", "--device", "cpu",
            *extra]


def test_one_image_and_a_grid_with_trace(folder, tmp_path, capsys):
    from PIL import Image

    assert main(base(folder, tmp_path / "one.png")) == 0
    assert Image.open(tmp_path / "one.png").size == (32, 32)
    trace = tmp_path / "t.json"
    assert main(base(folder, tmp_path / "grid.png", "--n", "3", "--sampler", "info_gain", "--json",
                     "--save_trace", str(trace))) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["images"] == 3 and summary["image_tokens"] == 64
    assert Image.open(tmp_path / "grid.png").size == (64, 64)  # 2 x 2 tiles, one empty
    rec = json.loads(trace.read_text())
    assert rec["grid"] == [8, 8] and len(rec["codes"]) == 3 and len(rec["steps"]) == 3
    assert sorted(p for step in rec["steps"][0] for p in step["positions"]) == list(range(64))


def test_size_flag_sets_the_image_length(folder, tmp_path, capsys):
    from PIL import Image

    assert main(base(folder, tmp_path / "s.png", "--size", "16x16", "--json")) == 0
    assert Image.open(tmp_path / "s.png").size == (16, 16)
    assert json.loads(capsys.readouterr().out.strip())["image_tokens"] == 16


@pytest.mark.parametrize("extra,message", [
    (["--size", "30"], "multiple of the tokenizer's downsampling 4"),
    (["--size", "big"], "is not N or NxN"),
    (["--size", "32x16"], "only square"),
    (["--n", "0"], "--n must be >= 1"),
    (["--sampler", "nope"], "unknown sampler"),
])
def test_bad_flags_are_one_error_line(folder, tmp_path, capsys, extra, message):
    assert main(base(folder, tmp_path / "x.png", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1


def test_wrong_out_suffix_codebook_mismatch_and_text_only_model(folder, tmp_path, tiny_llada_dir, capsys):
    assert main(base(folder, tmp_path / "x.txt")) == 2
    assert "use an image file name" in capsys.readouterr().err
    other = save_magvitv2(tiny_magvit(0, codebook_bits=5), tmp_path / "vq5")
    args = base(folder, tmp_path / "x.png")
    args[args.index("--vq_model_path") + 1] = str(other)
    assert main(args) == 2
    assert "codebook_size is 64" in capsys.readouterr().err
    args = base(folder, tmp_path / "x.png")
    args[args.index("--model_name_or_path") + 1] = str(tiny_llada_dir)
    assert main(args) == 2
    assert "text-only" in capsys.readouterr().err


def test_gif_shows_the_canvas_filling(folder, tmp_path):
    from PIL import Image

    gif = tmp_path / "fill.gif"
    assert main(base(folder, tmp_path / "g.png", "--gif", str(gif))) == 0
    im = Image.open(gif)
    assert im.n_frames == 4  # one frame per step
    first = im.convert("RGB")
    im.seek(im.n_frames - 1)
    last = im.convert("RGB")
    import numpy as np

    def grey(pic):
        return int((np.asarray(pic) == 128).all(-1).sum())

    assert grey(first) > 0.5 * first.width * first.height  # most of the canvas still masked after step 1
    assert grey(last) < grey(first)
    assert main(base(folder, tmp_path / "g.png", "--gif", str(tmp_path / "x.png"))) == 2


def test_viz_draws_a_t2i_trace(folder, tmp_path, capsys):
    from PIL import Image

    trace = tmp_path / "t.json"
    assert main(base(folder, tmp_path / "a.png", "--save_trace", str(trace))) == 0
    vq = ["--vq_model_path", str(folder / "vq")]
    assert main(["viz", str(trace), *vq, "--out", str(tmp_path / "fill.gif")]) == 0
    assert Image.open(tmp_path / "fill.gif").n_frames == 4
    assert main(["viz", str(trace), *vq, "--out", str(tmp_path / "steps.png")]) == 0
    assert Image.open(tmp_path / "steps.png").size == (4 * 32, 32)
    capsys.readouterr()
    assert main(["viz", str(trace), "--out", str(tmp_path / "x.gif")]) == 2
    assert "pass --vq_model_path" in capsys.readouterr().err
