"""The compatibility switches and Dream's ``origin`` sampler (the fixtures in
test_reference_fixtures.py check them against the reference code itself; these tests pin the
properties that hold on any checkpoint)."""

from __future__ import annotations

import pytest
import torch

from unmask.decoding.compat import OFF, dream_step, parse_compat, resolve
from unmask.decoding.engine import generate
from unmask.errors import UnmaskError


def test_modes_expand_per_model_family(tiny_llada, tiny_dream):
    assert resolve(None, tiny_llada) == OFF
    assert resolve("llada", tiny_llada).names() == ["mask_softmax"]
    assert resolve("fast_dllm", tiny_llada).names() == ["mask_softmax", "float64_confidence"]
    dream = resolve("fast_dllm", tiny_dream)
    assert dream.block_entry_commit and dream.dream_schedule and not dream.float64_confidence
    assert resolve("dream", tiny_dream).capped_threshold
    assert resolve("mask_softmax,capped_threshold", tiny_llada).names() == ["mask_softmax", "capped_threshold"]


@pytest.mark.parametrize("spec", ["fastdllm", "llada,nope", "mask-softmaxx"])
def test_bad_compat_item_is_one_clear_error(spec, tiny_llada):
    with pytest.raises(UnmaskError, match="unknown compat item"):
        generate(tiny_llada, [[5, 6, 7]], "confidence", max_new_tokens=4, compat=spec)


def test_parse_normalises_spelling():
    assert parse_compat("Fast-dLLM".replace("dLLM", "dllm")) == ["fast_dllm"]
    assert parse_compat("none") == []


def test_dream_step_skips_zero_steps_and_finishes():
    # 4 masks over 16 steps: early steps would commit int(4 * small) = 0, so they are skipped
    i, k = dream_step(4, 0, 16)
    assert k >= 1 and i > 0
    assert dream_step(3, 15, 16) == (15, 3)  # the last step takes everything left


def test_origin_commits_a_variable_count_and_leaves_no_masks(tiny_dream):
    out = generate(tiny_dream, [[5, 6, 7, 8]], "origin", max_new_tokens=16, steps=8, seed=3, stop_at_eos=False)
    steps = [s.committed for s in out.traces[0].steps]
    assert sum(steps) == 16 and len(steps) == 8  # one step per scheduled timestep
    assert len(set(steps)) > 1  # Bernoulli(1 - s/t) per mask: counts vary, unlike `random`
    assert 0 in steps[:-1] or max(steps) > 2
    assert tiny_dream.config.mask_token_id not in out.sequences[0]


def test_origin_depends_on_the_seed_and_is_reproducible(tiny_dream):
    runs = [generate(tiny_dream, [[5, 6, 7, 8]], "origin", max_new_tokens=16, steps=8, seed=s, stop_at_eos=False)
            for s in (0, 0, 1)]
    orders = [[(r.step, r.position) for r in o.traces[0].tokens] for o in runs]
    assert orders[0] == orders[1] and orders[0] != orders[2]


def test_origin_is_not_random_any_more():
    from unmask.samplers.base import make_sampler

    assert make_sampler("origin").name == "origin"
    assert make_sampler("vanilla").name == "random"


def test_mask_softmax_may_leave_masks_like_the_reference(tiny_llada):
    """With the mask token in the softmax the reference can 'commit' the mask token (a no-op) and
    then run out of steps: compat reproduces that; the default never leaves a mask."""
    prompts = [[3 + (7 * i + j) % 40 for j in range(6)] for i in range(6)]
    default = generate(tiny_llada, prompts, "confidence", max_new_tokens=16, steps=16, stop_at_eos=False)
    assert all(tiny_llada.config.mask_token_id not in s for s in default.sequences)
    compat = generate(tiny_llada, prompts, "confidence", max_new_tokens=16, steps=16, stop_at_eos=False,
                      compat="llada")
    assert all(len(t.steps) <= 16 for t in compat.traces)  # never more steps than the reference


def test_block_entry_commits_the_first_token_of_every_block(tiny_dream):
    out = generate(tiny_dream, [[5, 6, 7, 8]], "threshold", threshold=0.9, max_new_tokens=12, block_size=4,
                   use_cache="dual", compat="fast_dllm", stop_at_eos=False)
    entries = [s for s in out.traces[0].steps if s.kind == "entry"]
    assert len(entries) == 3 and all(s.committed == 1 for s in entries)
    firsts = {r.position for r in out.traces[0].tokens if r.step in {s.step for s in entries}}
    assert firsts == {4, 8, 12}


def test_capped_threshold_never_exceeds_schedule_plus_carry(tiny_dream):
    out = generate(tiny_dream, [[5, 6, 7, 8]], "threshold", threshold=0.01, max_new_tokens=16, steps=4,
                   compat="dream", stop_at_eos=False)
    counts = [s.committed for s in out.traces[0].steps]
    assert counts[:3] == [4, 4, 4]  # threshold 0.01 accepts all candidates, but at most 16 // 4 per step
    plain = generate(tiny_dream, [[5, 6, 7, 8]], "threshold", threshold=0.01, max_new_tokens=16, steps=4,
                     stop_at_eos=False)
    assert len(plain.traces[0].steps) == 1  # unmask's default (Fast-dLLM's LLaDA rule) is uncapped


def test_inherited_top_k_changes_dream_confidences(tiny_dream):
    from unmask.decoding.compat import effective_top_k

    opts = resolve("dream", tiny_dream)
    assert effective_top_k(opts, None) == 50 and effective_top_k(opts, 7) == 7
    assert effective_top_k(OFF, None) is None


def test_defaults_unchanged_when_compat_is_off(tiny_llada):
    a = generate(tiny_llada, [[5, 6, 7]], "confidence", max_new_tokens=8, steps=8)
    b = generate(tiny_llada, [[5, 6, 7]], "confidence", max_new_tokens=8, steps=8, compat="none")
    assert a.sequences == b.sequences
    assert torch.equal(torch.tensor(a.sequences), torch.tensor(b.sequences))


def test_cli_compat_flag_reaches_the_engine(tiny_dream_dir, capsys):
    import json

    from unmask.cli import main

    args = ["sample", "--model_name_or_path", str(tiny_dream_dir), "--prompt", "abcd", "--chat_template", "False",
            "--max_new_tokens", "8", "--block_size", "4", "--use_cache", "dual", "--sampler", "threshold", "--json"]
    assert main([*args, "--compat", "fast_dllm"]) == 0
    with_compat = json.loads(capsys.readouterr().out)
    assert with_compat["config"]["generation"]["compat"] == "fast_dllm"
    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)
    # the entry commit costs one extra refresh forward per block whose logits serve no step
    assert with_compat["nfe"] >= plain["nfe"]
    assert main([*args, "--compat", "fast-dllm,bogus"]) == 2
    assert "unknown compat item 'bogus'" in capsys.readouterr().err


@pytest.mark.parametrize("mode,sampler,kw", [
    ("fast_dllm", "entropy", dict(use_cache="dual", block_size=4, steps=8, schedule="dream")),
    ("fast_dllm", "threshold", dict(use_cache="prefix", block_size=4, threshold=0.5)),
    ("dream", "threshold", dict(steps=4, threshold=0.5)),
    ("dream", "origin", dict(steps=6)),
    ("llada", "confidence", dict(steps=8, block_size=4)),
])
def test_compat_batched_equals_one_by_one(mode, sampler, kw, tiny_dream, tiny_llada):
    model = tiny_llada if mode == "llada" else tiny_dream
    prompts = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    batch = generate(model, prompts, sampler, max_new_tokens=12, compat=mode, stop_at_eos=False, seed=4, **kw)
    for p, seq in zip(prompts, batch.sequences):
        one = generate(model, [p], sampler, max_new_tokens=12, compat=mode, stop_at_eos=False, seed=4, **kw)
        assert one.sequences[0] == seq
