"""Gen-Verse/MMaDA's own outputs on tiny random weights, replayed (fixtures recorded by
benchmarks/record_mmada_fixtures.py; the weights are rebuilt from tests/tiny_mmada.py's recipe)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_mmada import tiny_magvit, write_tiny_mmada

import unmask
from unmask.models.loading import load_model
from unmask.multimodal.prompting import t2i_layout
from unmask.multimodal.t2i import t2i

FIX = Path(__file__).parent / "fixtures" / "mmada"
REC = json.loads((FIX / "reference.json").read_text())
TENSORS = load_file(str(FIX / "reference_tensors.safetensors"))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = write_tiny_mmada(tmp_path_factory.mktemp("mmada-ref"), seed=REC["recipe"]["seed"], with_vq=False)
    return load_model(folder / "model")


def test_recipe_and_reference_are_named():
    assert REC["reference"]["repository"] == "Gen-Verse/MMaDA" and len(REC["reference"]["commit"]) == 40
    assert REC["image_offset"] == 126464 and REC["codebook_size"] == 64


@pytest.mark.parametrize("name", REC["logits"])
def test_logits_match_reference(model, name):
    ids = TENSORS[f"ids/{name}"]
    mask = TENSORS.get(f"mask/{name}")
    ref = TENSORS[f"logits/{name}"]
    pos = torch.arange(ids.shape[1])[None]
    with torch.no_grad():
        ours = model(ids, mask, positions=pos).logits[0][:, REC["logit_columns"]]
    real = torch.ones(ids.shape[1], dtype=torch.bool) if mask is None else mask[0].bool()
    diff = (ours[real] - ref[real]).abs().max().item()
    assert diff <= 1e-5, f"{name}: max |diff| {diff:.3g}"


def test_t2i_prompt_layout_is_the_references():
    """Our layout rebuilds the reference's recorded rows and masks (left padding, truncation)."""
    n = REC["num_vq_tokens"]
    masked = torch.full((1, n), 126336)
    ours = t2i_layout([[3001, 77, 4120]], n, 126080, 126081, 126336, REC["max_text_len"])
    assert torch.equal(ours.ids, TENSORS["ids/t2i-masked"]) and torch.equal(ours.mask, TENSORS["mask/t2i-masked"])
    part = TENSORS["ids/t2i-partial-truncated"][:, -(n + 1):-1]
    ours = t2i_layout([[9] * 40], n, 126080, 126081, 126336, REC["max_text_len"], image_ids=part)
    assert torch.equal(ours.ids, TENSORS["ids/t2i-partial-truncated"])
    assert torch.equal(ours.mask, TENSORS["mask/t2i-partial-truncated"])
    assert not bool((masked != 126336).any())


def test_magvit_codes_identical_and_decode_close():
    vq = tiny_magvit(REC["recipe"]["seed"])
    codes = vq.encode(TENSORS["vq_pixels"])
    assert torch.equal(codes, TENSORS["vq_codes"])
    decoded = vq.decode(TENSORS["vq_codes"])
    diff = (decoded - TENSORS["vq_decoded"]).abs().max().item()
    assert diff <= 1e-5, diff


@pytest.mark.parametrize("case", REC["t2i"], ids=[c["name"] for c in REC["t2i"]])
def test_t2i_generate_tokens_identical(model, case):
    out = t2i(model, None, case["texts"], "maskgit", guidance_scale=case["guidance_scale"], steps=case["steps"],
              seed=case["seed"], max_text_len=REC["max_text_len"], decode=False,
              sampler_options={"position_temperature": case["temperature"]},
              compat="shared_stream" if case.get("shared_stream") else None)
    assert out.codes.tolist() == case["codes"]


@pytest.mark.parametrize("case", REC["mmu"], ids=[c["name"] for c in REC["mmu"]])
def test_mmu_generate_tokens_identical(model, case):
    out = unmask.generate(model, [case["prompt"]], "confidence", max_new_tokens=case["max_new_tokens"],
                          steps=case["steps"], block_size=case["block_length"], compat="llada", stop_at_eos=False)
    assert out.sequences[0][len(case["prompt"]):] == case["generated"]


def test_lfq_training_losses_match_reference():
    """The quantizer losses a MAGVIT-v2 trains on (commitment, entropy) are the reference's."""
    vq = tiny_magvit(REC["recipe"]["seed"])
    with torch.no_grad():
        q = vq.quantize(vq.encoder(TENSORS["vq_pixels"]))
    assert float(q.commit_loss) == pytest.approx(REC["vq"]["lfq_quantizer_loss"], rel=1e-5, abs=1e-7)
    assert float(q.entropy_loss) == pytest.approx(REC["vq"]["lfq_entropy_loss"], rel=1e-5, abs=1e-7)
