"""SDAR/TraDo: block-causal attention, the exact block cache, loading, samplers, chat, CLI."""

from __future__ import annotations

import json
import os

import pytest
import torch
from tiny import make_chatml_tokenizer, peaked, tiny_config, write_tiny

from unmask.cli import main
from unmask.decoding.block_causal import grid_blocks, grid_new_tokens, transfer_quotas
from unmask.decoding.engine import generate
from unmask.errors import UnmaskError
from unmask.models import SDAR
from unmask.models.loading import build_model, load_model, save_model
from unmask.models.registry import resolve_model_path
from unmask.models.sdar import block_causal_mask
from unmask.samplers.base import sampler_names
from unmask.session import Session

MASK = 3


@pytest.fixture(scope="module")
def sdar_dir(tmp_path_factory):
    return write_tiny(tmp_path_factory.mktemp("sdar"), "sdar")


@pytest.fixture(scope="module")
def sdar(sdar_dir):
    return load_model(sdar_dir)


def test_block_causal_mask_hand_built():
    # one row, one left pad, then 5 real tokens at positions 0..4; block length 2
    am = torch.tensor([[0, 1, 1, 1, 1, 1]])
    pos = (am.cumsum(-1) - 1).clamp(min=0)
    m = block_causal_mask(pos, pos, am, 2)[0, 0].int()
    expected = torch.tensor([
        # keys: pad, p0, p1 | p2, p3 | p4
        [0, 1, 1, 0, 0, 0],  # the pad row (position 0) sees block 0 only
        [0, 1, 1, 0, 0, 0],  # p0: own block, both directions
        [0, 1, 1, 0, 0, 0],  # p1
        [0, 1, 1, 1, 1, 0],  # p2: block 0 and its own block
        [0, 1, 1, 1, 1, 0],  # p3
        [0, 1, 1, 1, 1, 1],  # p4
    ])
    assert torch.equal(m, expected)


def test_block_causal_forward_sees_own_block_not_later_ones(sdar):
    x = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12, 13, 14]])
    base = sdar(x).logits  # block length 4: blocks [0,4) [4,8) [8,10)
    y = x.clone()
    y[0, 9] = 20  # change a token of the last block
    changed = sdar(y).logits
    assert torch.equal(base[0, :8], changed[0, :8])  # earlier blocks cannot see it
    assert not torch.equal(base[0, 8], changed[0, 8])  # its block-mate does (bidirectional)
    z = x.clone()
    z[0, 5] = 20  # a middle-block token changes its block and the later one
    out = sdar(z).logits
    assert torch.equal(base[0, :4], out[0, :4])
    assert not torch.equal(base[0, 4], out[0, 4]) and not torch.equal(base[0, 9], out[0, 9])


def test_exact_cache_matches_full_forward(sdar):
    x = torch.tensor([[5, 6, 7, 8, 9, 10, MASK, MASK, MASK, MASK, MASK, MASK]])
    am = torch.ones_like(x)
    full = sdar(x).logits
    cache = sdar.prefill(x, am, 4)
    block = sdar.predict(x, am, cache=cache, start=4, end=8).logits
    assert torch.allclose(block, full[:, 4:8], atol=1e-5)
    cache = sdar.extend_cache(x, am, cache, 4, 8)
    assert cache.length == 8
    last = sdar.predict(x, am, cache=cache, start=8, end=12).logits
    assert torch.allclose(last, full[:, 8:12], atol=1e-5)


def test_grid_layout_and_reference_quotas():
    assert grid_new_tokens(7, 10, 4) == 13  # 7 + 13 = 20 = 5 blocks
    assert grid_blocks(7, 7, 20, 4) == [(4, 8), (8, 12), (12, 16), (16, 20)]
    assert transfer_quotas(4, 4, None) == [1, 1, 1, 1]
    assert transfer_quotas(8, 8, 3) == [3, 3, 2]  # get_num_transfer_tokens(8, 3)
    assert transfer_quotas(3, 8, 4) == [2, 1]  # a first block with 5 prompt tokens stops early


SAMPLERS = ["confidence", "info_gain", "random", "leftright", "low_confidence_dynamic", "entropy_bounded", "margin"]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_cached_equals_uncached(sdar, sampler):
    prompts = [[5, 6, 7, 8, 9, 10, 11], [12, 13, 14], [15, 16, 17, 18, 19, 20]]
    kw = dict(max_new_tokens=10, stop_at_eos=False, temperature=0.7 if sampler == "info_gain" else 0.0, seed=3)
    a = generate(sdar, prompts, sampler, use_cache="dual", **kw)
    b = generate(sdar, prompts, sampler, use_cache="none", **kw)
    assert a.sequences == b.sequences
    assert [t.cumulative_entropy for t in a.traces] == pytest.approx([t.cumulative_entropy for t in b.traces], abs=1e-4)


def test_cache_runs_block_sized_forwards(sdar):
    """With the cache every forward after the prefill covers one block (or candidates of it)."""
    widths = []
    handle = sdar.register_forward_pre_hook(lambda mod, args: widths.append(args[0].shape[1]))
    try:
        out = generate(sdar, [[5, 6, 7, 8, 9, 10]], "confidence", max_new_tokens=10, use_cache="dual",
                       stop_at_eos=False)
    finally:
        handle.remove()
    assert widths[0] == 4  # the prefill: the one complete prompt block
    assert set(widths[1:]) == {4}
    assert len(out.sequences[0]) == 16
    # 3 blocks: 2 + 4 + 4 masks, one token per step, plus 2 appends of finished blocks
    assert out.nfe == 1 + 10 + 2


def test_folding_the_append_into_the_last_step_is_not_exact(sdar):
    """The last denoising step sees its own positions still masked, so its K/V differ from the
    K/V of the finished block: the extra append forward is needed for an exact cache."""
    x = torch.tensor([[5, 6, 7, 8, 9, 10, 11, MASK]])
    done = x.clone()
    done[0, 7] = 12
    am = torch.ones_like(x)
    cache = sdar.prefill(x, am, 4)
    folded = sdar.extend_cache(x, am, cache, 4, 8)  # K/V as the last step computed them
    exact = sdar.extend_cache(done, am, cache, 4, 8)
    assert not torch.allclose(folded.keys[0][:, :, 4:8], exact.keys[0][:, :, 4:8])


def test_batched_equals_one_by_one_with_left_padding(sdar):
    prompts = [[5, 6, 7, 8, 9, 10, 11], [12, 13, 14], [15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25], [26]]
    for sampler in ("confidence", "info_gain", "random"):
        kw = dict(max_new_tokens=9, stop_at_eos=False, use_cache="dual", seed=[1, 2, 3, 4], temperature=0.5)
        batched = generate(sdar, prompts, sampler, **kw)
        for i, p in enumerate(prompts):
            single = generate(sdar, [p], sampler, **{**kw, "seed": kw["seed"][i]})
            assert batched.sequences[i] == single.sequences[0], (sampler, i)
        # the batch's cost figures are the sums of its prompts' (lengths differ modulo the block)
        assert batched.forward_tokens == sum(t.forward_tokens for t in batched.traces) > 0


@pytest.mark.parametrize("sampler", sampler_names())
@pytest.mark.parametrize("use_cache", ["none", "dual"])
def test_every_sampler_leaves_no_masks(sdar, sampler, use_cache):
    out = generate(sdar, [[5, 6, 7, 8, 9], [10, 11]], sampler, max_new_tokens=7, stop_at_eos=False,
                   use_cache=use_cache, block_size=8, steps=3)
    for seq in out.sequences:
        assert MASK not in seq


def test_block_size_and_steps_override_the_reference_defaults(sdar):
    out = generate(sdar, [[5, 6, 7, 8]], "confidence", max_new_tokens=16, stop_at_eos=False, use_cache="dual",
                   block_size=8, steps=2)
    assert len(out.sequences[0]) == 24  # 4 + 16 rounded up to whole blocks of 8
    steps = [s.committed for s in out.traces[0].steps]
    # the first block holds the 4 prompt tokens: its quotas [4, 4] stop after one step
    assert steps == [4, 4, 4, 4, 4]


def test_masks_inside_the_prompt_are_decoded_block_by_block(sdar):
    """An infilling canvas: decoding starts at the block of the first mask; known tokens of later
    blocks stay where they are; cached == uncached."""
    canvas = [5, MASK, 7, 8, 9, MASK, MASK, 12, 13, MASK]
    outs = [generate(sdar, [canvas], "confidence", max_new_tokens=0, use_cache=uc, stop_at_eos=False)
            for uc in ("dual", "none")]
    assert outs[0].sequences == outs[1].sequences
    seq = outs[0].sequences[0]
    assert len(seq) == len(canvas) and MASK not in seq
    assert [seq[i] for i in (0, 2, 3, 4, 7, 8)] == [5, 7, 8, 9, 12, 13]
    assert [s.block for s in outs[0].traces[0].steps] == [0, 1, 1, 2]


def test_loading_sharded_bf16_tied_and_wrong_key(tmp_path):
    tok = make_chatml_tokenizer()
    model = peaked(build_model(tiny_config("sdar", len(tok), tie_word_embeddings=True), seed=0))
    save_model(model, tmp_path / "sharded", dtype="bfloat16", max_shard_bytes=20_000)
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    back = load_model(tmp_path / "sharded", dtype="bfloat16")
    assert isinstance(back, SDAR) and back.dtype == torch.bfloat16 and not hasattr(back, "lm_head")
    ref = model.to(torch.bfloat16)
    x = torch.tensor([[5, 6, 7, 8, 9]])
    assert torch.equal(back(x).logits, ref(x).logits)
    # a wrong key name: one clear line
    from safetensors.torch import load_file, save_file

    save_model(build_model(tiny_config("sdar", len(tok)), seed=0), tmp_path / "bad")
    state = load_file(str(tmp_path / "bad" / "model.safetensors"))
    state["model.layers.0.self_attn.q_normx.weight"] = state.pop("model.layers.0.self_attn.q_norm.weight")
    save_file(state, str(tmp_path / "bad" / "model.safetensors"))
    with pytest.raises(UnmaskError) as e:
        load_model(tmp_path / "bad")
    msg = str(e.value)
    assert "\n" not in msg and "missing keys: model.layers.0.self_attn.q_norm.weight" in msg and "q_normx" in msg


def test_unsupported_config_refused(tmp_path):
    cfg = tiny_config("sdar", 40).to_dict()
    cfg["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnmaskError, match="rope_scaling type 'yarn'"):
        load_model(tmp_path)


def test_aliases_resolve_from_local_hf_cache_only(tmp_path, monkeypatch, sdar_dir):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    with pytest.raises(UnmaskError, match="Gen-Verse/TraDo-8B-Instruct are not on this machine"):
        resolve_model_path("trado")
    snap = tmp_path / "models--JetLM--SDAR-8B-Chat" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    for f in os.listdir(sdar_dir):
        (snap / f).symlink_to(sdar_dir / f)
    assert resolve_model_path("sdar") == snap


def test_chat_template_round_trip_and_stop_tokens(sdar_dir):
    session = Session.load(str(sdar_dir), device="cpu")
    tok = session.tokenizer
    ids = session.encode_prompt([{"role": "user", "content": "what is 2+2?"}])
    text = tok.decode(ids)
    assert text == "<|im_start|>user\nwhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    vocab = tok.get_vocab()
    assert set(session.stop_token_ids()) == {vocab["<|im_end|>"], vocab["<|endoftext|>"]}
    assert tok.mask_token == "<|MASK|>" and vocab["<|MASK|>"] == session.model.config.mask_token_id


def test_cli_sample_info_gain_json(sdar_dir, capsys):
    rc = main(["sample", "--model_name_or_path", str(sdar_dir), "--prompt", "hi there", "--sampler", "info_gain",
               "--max_new_tokens", "8", "--temperature", "0.7", "--use_cache", "dual", "--json"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert d["nfe"] > 0 and isinstance(d["text"], str)


def test_cli_compare_accepts_an_sdar_task_model(tmp_path, capsys):
    from tiny import write_task_model

    folder = write_task_model(tmp_path / "sdar_multiply", "multiply", arch="sdar")
    rc = main(["compare", "--task", "multiply", "--model_name_or_path", str(folder), "--n", "2",
               "--samplers", "confidence,info_gain,low_confidence_dynamic", "--use_cache", "dual", "--json"])
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["sampler"] for r in rows] == ["confidence", "info_gain", "low_confidence_dynamic"]


def test_cli_eval_and_chat_accept_sdar(sdar_dir, capsys, tmp_path, monkeypatch):
    rc = main(["eval", "--model_name_or_path", str(sdar_dir), "--task", "sudoku4", "--limit", "2",
               "--max_new_tokens", "8", "--block_size", "4", "--num_fewshot", "0", "--output_dir", str(tmp_path),
               "--json"])
    assert rc == 0
    capsys.readouterr()
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("hello\n"))
    rc = main(["chat", "--model_name_or_path", str(sdar_dir), "--max_new_tokens", "6", "--json"])
    assert rc == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "reply" in json.loads(line)


@pytest.mark.parametrize("extra", [dict(beam_size=2), dict(best_of=2)])
def test_beam_and_best_of_cached_equals_uncached(sdar, extra):
    """Beams may swap parents inside a block; the exact cache follows the parent rows."""
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12]]
    kw = dict(max_new_tokens=9, stop_at_eos=False, temperature=0.8, seed=5, **extra)
    a = generate(sdar, prompts, "info_gain", use_cache="dual", **kw)
    b = generate(sdar, prompts, "info_gain", use_cache="none", **kw)
    assert a.sequences == b.sequences
    assert all(MASK not in s for s in a.sequences)


def test_hooks_and_trace_on_block_grid(sdar):
    seen = []

    def logits_hook(step, x, logits):
        seen.append(logits.shape[1])
        return logits

    out = generate(sdar, [[5, 6, 7, 8, 9, 10]], "confidence", max_new_tokens=6, stop_at_eos=False,
                   use_cache="dual", logits_hook=logits_hook)
    assert set(seen) == {4}  # every step sees the active block only
    tr = out.traces[0]
    assert [s.block for s in tr.steps] == [0, 0, 1, 1, 1, 1]
    assert sorted(t.position for t in tr.tokens) == list(range(6, 12))


def test_config_checks_follow_the_qwen3_layout(tmp_path):
    """head_dim is its own field (Qwen3-4B: hidden 2560, 32 heads of 128), EOS may be a list,
    and the default mask id 151669 must fit the vocabulary."""
    tok = make_chatml_tokenizer()
    cfg = tiny_config("sdar", len(tok), hidden_size=40, num_attention_heads=4, num_key_value_heads=2, head_dim=16)
    model = build_model(cfg, seed=0)
    save_model(model, tmp_path / "ok")
    raw = json.loads((tmp_path / "ok" / "config.json").read_text())
    raw["eos_token_id"] = [0, 2]
    (tmp_path / "ok" / "config.json").write_text(json.dumps(raw))
    back = load_model(tmp_path / "ok")
    assert back.config.eos_token_id == 0 and back.config.hidden_size == 40
    raw.pop("mask_token_id")
    (tmp_path / "ok" / "config.json").write_text(json.dumps(raw))
    with pytest.raises(UnmaskError, match="mask_token_id 151669 \\(the default"):
        load_model(tmp_path / "ok")
