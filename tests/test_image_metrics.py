"""Image metrics wiring: FID/KID/IS/PRDC through torchmetrics and prdc with random-weight feature
networks, CLIP score through a random tiny transformers CLIP folder, and the one-line errors."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import linalg

from unmask.cli import main
from unmask.eval import image_metrics as M
from unmask.tasks import shapes as S


class Features(torch.nn.Module):
    """A random-weight stand-in for Inception: uint8 images -> pooled conv features."""

    def __init__(self, d: int, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, d, 4, stride=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x.float() / 127.5 - 1)).mean((2, 3))


def scenes(n: int, seed: int) -> torch.Tensor:
    items = S.eval_suite(n, seed)[:n]
    return torch.from_numpy(np.stack([S.ground_truth(it) for it in items])).permute(0, 3, 1, 2).contiguous()


def reference_fid(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_fid_matches_the_formula_and_a_statistics_file_gives_the_same_numbers() -> None:
    net = Features(8)
    real, fake = scenes(60, 1), scenes(60, 2)
    fake[:, 0] = 255 - fake[:, 0]  # a different distribution: red channel inverted
    m = M.compute_metrics(real, fake, net, Features(10, seed=1), kid_subset_size=30)
    fr, ff = M.features_of(net, real), M.features_of(net, fake)
    assert m["fid"] == pytest.approx(reference_fid(fr, ff), rel=1e-5)
    same = M.compute_metrics(real, real, net, kid_subset_size=30)
    assert abs(same["fid"]) < 1e-6 and same["precision"] == 1.0 and same["recall"] == 1.0
    assert m["fid"] > 1e-3 and m["kid_mean"] > same["kid_mean"] and 1.0 <= m["isc_mean"] <= 10.0
    for k in ("precision", "recall", "density", "coverage", "kid_std", "isc_std"):
        assert k in m
    stats = M.stats_of(fr)
    del stats["features"]  # mu / sigma / n only, as a pytorch-fid statistics file
    assert M.compute_metrics(stats, fake, net)["fid"] == pytest.approx(m["fid"], rel=1e-9)


def tiny_clip(folder) -> None:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    proc = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                            crop_size={"height": 32, "width": 32}), tokenizer=tok)
    torch.manual_seed(0)
    cfg = CLIPConfig(text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, max_position_embeddings=77, bos_token_id=0,
                                      eos_token_id=1, pad_token_id=1),
                     vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                        image_size=32, patch_size=8), projection_dim=16)
    CLIPModel(cfg).save_pretrained(folder / "clip")
    proc.save_pretrained(folder / "clip")


def test_clip_score_through_a_local_clip_folder(tmp_path) -> None:
    tiny_clip(tmp_path)
    clip = M.load_clip(tmp_path / "clip")
    model, proc = clip
    imgs = scenes(4, 3)
    got = M.clip_score(imgs, ["a red circle"] * 4, clip)
    # the definition by hand: 100 x cosine of the projected embeddings, floored at 0, averaged
    with torch.no_grad():
        px = proc(images=[i for i in imgs], return_tensors="pt")["pixel_values"]
        tx = proc(text=["a red circle"] * 4, return_tensors="pt", padding=True)
        ie = model.get_image_features(px)
        te = model.get_text_features(tx["input_ids"], tx["attention_mask"])
        ie, te = (getattr(e, "pooler_output", e) for e in (ie, te))
    cos = torch.nn.functional.cosine_similarity(ie, te)
    assert got == pytest.approx(float((100 * cos).clamp_min(0).mean()), abs=1e-3)
    with pytest.raises(M.UnmaskError, match="4 images but 3 captions"):
        M.clip_score(imgs, ["a"] * 3, clip)


def run_cli(capsys, *args: str) -> SimpleNamespace:
    rc = main(["image-metrics", *args])
    out, err = capsys.readouterr()
    return SimpleNamespace(returncode=rc, stdout=out, stderr=err)


def test_cli_says_in_one_line_which_weights_are_missing(tmp_path, capsys) -> None:
    d = tmp_path / "imgs"
    d.mkdir()
    for i, img in enumerate(scenes(3, 4).permute(0, 2, 3, 1).numpy()):
        Image.fromarray(img).save(d / f"{i:05}.png")
    r = run_cli(capsys, "--fake", str(d), "--real", str(d))
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0
    assert "--inception_weights" in r.stderr and "weights-inception-2015-12-05-6726825d.pth" in r.stderr
    r = run_cli(capsys, "--fake", str(d), "--clip_only", "--captions", str(d / "none.txt"), "--clip_model", str(tmp_path))
    assert r.returncode == 2 and "none.txt does not exist" in r.stderr
    (tmp_path / "caps.txt").write_text("a circle\na square\na diamond\n")
    r = run_cli(capsys, "--fake", str(d), "--clip_only", "--captions", str(tmp_path / "caps.txt"), "--clip_model", str(tmp_path))
    assert r.returncode == 2 and "not a Hugging Face CLIP folder" in r.stderr
    tiny_clip(tmp_path)
    r = run_cli(capsys, "--fake", str(d), "--clip_only", "--captions", str(tmp_path / "caps.txt"),
                "--clip_model", str(tmp_path / "clip"))
    assert r.returncode == 0, r.stderr
    assert 0.0 <= json.loads(r.stdout)["clip_score"] <= 100.0
    r = run_cli(capsys, "--fake", str(tmp_path / "missing"), "--clip_only")
    assert r.returncode == 2 and "does not exist" in r.stderr
