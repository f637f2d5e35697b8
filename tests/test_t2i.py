"""Text-to-image decoding on a tiny random-weight MMaDA + MAGVIT-v2: every sampler through the
same loop, batching, guidance in one forward, loading, bad inputs."""

from __future__ import annotations

import pytest
import torch
from tiny import build_model, tiny_config
from tiny_mmada import tiny_magvit, write_tiny_mmada

from unmask.errors import UnmaskError
from unmask.models.loading import load_model
from unmask.multimodal.t2i import GuidedImageLogits, cosine_mask_len, t2i

SAMPLERS = ["maskgit", "confidence", "margin", "entropy", "random", "threshold", "info_gain", "lookum"]
KW = dict(steps=5, max_text_len=8)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = write_tiny_mmada(tmp_path_factory.mktemp("t2i"))
    from unmask.models.magvitv2 import load_magvitv2

    return load_model(folder / "model"), load_magvitv2(folder / "vq")


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_fills_the_image(pair, sampler):
    model, vq = pair
    out = t2i(model, vq, [[5, 6, 7], [9]], sampler, seed=3, **KW)
    assert out.images.shape == (2, 32, 32, 3) and out.images.dtype == torch.uint8
    assert out.codes.shape == (2, 64) and 0 <= int(out.codes.min()) and int(out.codes.max()) < 64
    for trace in out.traces:  # every position committed exactly once, never more steps than asked
        pos = [p for rec in trace for p in rec["positions"]]
        assert sorted(pos) == list(range(64)) and len(trace) <= KW["steps"]
    again = t2i(model, vq, [[5, 6, 7], [9]], sampler, seed=3, **KW)
    assert torch.equal(out.codes, again.codes)


@pytest.mark.parametrize("sampler", ["maskgit", "info_gain"])
def test_batched_equals_one_by_one(pair, sampler):
    model, _ = pair
    both = t2i(model, None, [[5, 6, 7], [9, 10]], sampler, seed=[11, 12], decode=False, **KW)
    one = t2i(model, None, [[9, 10]], sampler, seed=12, decode=False, **KW)
    assert torch.equal(both.codes[1], one.codes[0])


def test_samplers_choose_differently(pair):
    model, _ = pair
    codes = {s: t2i(model, None, [[5, 6]], s, seed=0, decode=False, **KW).codes for s in ("maskgit", "confidence",
                                                                                          "random")}
    assert not torch.equal(codes["maskgit"], codes["confidence"])
    assert not torch.equal(codes["confidence"], codes["random"])


def test_guidance_batches_cond_and_uncond_in_one_forward(pair):
    model, _ = pair
    out = t2i(model, None, [[5], [6], [7]], "confidence", seed=0, decode=False, guidance_scale=3.5, **KW)
    assert out.forwards == KW["steps"] and out.model_rows == 2 * 3 * KW["steps"]
    out = t2i(model, None, [[5], [6], [7]], "confidence", seed=0, decode=False, guidance_scale=0.0, **KW)
    assert out.forwards == KW["steps"] and out.model_rows == 3 * KW["steps"]


def test_guidance_changes_the_image(pair):
    model, _ = pair
    a = t2i(model, None, [[5, 6]], "confidence", seed=0, decode=False, guidance_scale=0.0, **KW)
    b = t2i(model, None, [[5, 6]], "confidence", seed=0, decode=False, guidance_scale=5.0, **KW)
    assert not torch.equal(a.codes, b.codes)


def test_lookahead_rows_are_bounded_and_batched(pair):
    model, _ = pair
    sizes = []
    handle = model.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
    try:
        out = t2i(model, None, [[5], [6]], "info_gain", seed=0, decode=False, max_lookahead_rows=3,
                  sampler_options={"candidate_number": 4}, **KW)
    finally:
        handle.remove()
    assert max(sizes) <= 2 * 3  # cond + uncond row per candidate
    assert any(rec.get("kind") == "lookahead" for tr in out.traces for rec in tr)


def test_processor_is_guidance_over_the_code_slice():
    proc = GuidedImageLogits(2.0, offset=10, codebook_size=4)
    assert proc.columns == (10, 14)
    cond, uncond = torch.randn(1, 3, 4), torch.randn(1, 3, 4)
    assert torch.allclose(proc(torch.cat([cond, uncond])), 3 * cond - 2 * uncond)
    assert torch.equal(GuidedImageLogits(0.0, 10, 4)(cond), cond)


def test_cosine_schedule_as_reference():
    # 64 tokens in 5 steps: floor(64 cos(pi/2 r)) for r = .2 .4 .6 .8, at least 1 left masked
    left, unknown = [], 64
    for s in range(4):
        m = cosine_mask_len(s, 5, 64, unknown)
        left.append(m)
        unknown = m
    assert left == [60, 51, 37, 19]


def test_codes_are_decoded_as_the_reference_saves_them(pair):
    model, vq = pair
    out = t2i(model, vq, [[5]], "confidence", seed=0, **KW)
    x = vq.decode(out.codes)
    ref = (torch.clamp((x + 1) / 2, 0, 1) * 255).permute(0, 2, 3, 1).to(torch.uint8)
    assert torch.equal(out.images, ref)


def test_bad_pairs_are_errors(pair):
    model, _ = pair
    with pytest.raises(UnmaskError, match="codebook_size is 64"):
        t2i(model, tiny_magvit(0, codebook_bits=5), [[5]], **KW)
    text_only = build_model(tiny_config("llada", 64))
    with pytest.raises(UnmaskError, match="text-only"):
        t2i(text_only, None, [[5]], **KW)
    with pytest.raises(UnmaskError, match="not a square"):
        t2i(model, None, [[5]], num_image_tokens=60, decode=False, **KW)
    with pytest.raises(UnmaskError, match="not a square"):
        t2i(model, None, [[5]], num_image_tokens=-4, decode=False, **KW)
    with pytest.raises(UnmaskError, match="max_text_len"):
        t2i(model, None, [[5]], steps=2, max_text_len=0)
    with pytest.raises(UnmaskError, match="steps"):
        t2i(model, None, [[5]], steps=0, max_text_len=8)
    with pytest.raises(UnmaskError, match="guidance_scale"):
        t2i(model, None, [[5]], guidance_scale=float("nan"), **KW)


@pytest.mark.parametrize("dtype,shard", [("bfloat16", None), ("float32", 2_000_000)])
def test_official_folder_variants_load(tmp_path, dtype, shard):
    folder = write_tiny_mmada(tmp_path, dtype=dtype, shard=shard, with_vq=False)
    if shard:
        assert (folder / "model" / "model.safetensors.index.json").exists()
    m = load_model(folder / "model")
    assert type(m).__name__ == "MMaDA" and m.config.image_offset == 126464 and m.config.codebook_size == 64
    out = t2i(m, None, [[5]], "confidence", seed=0, decode=False, **KW)
    assert out.codes.shape == (1, 64)


def test_finished_rows_stop_costing_forwards(pair):
    """a tiny threshold commits every position at once: one forward, no work for the other steps."""
    model, _ = pair
    out = t2i(model, None, [[5], [6]], "threshold", seed=0, decode=False, sampler_options={"threshold": 1e-9}, **KW)
    assert out.forwards == 1 and all(len(tr) == 1 for tr in out.traces)
