import math

import pytest
import torch

from unmask.decoding.engine import generate
from unmask.errors import UnmaskError
from unmask.samplers import StepView, entropy_from_logits, make_sampler
from unmask.samplers.base import Action, LookaheadResult

MASK = 1
PROMPTS = [[3, 9, 10, 11], [3, 12, 13, 14, 15, 16, 17, 18, 19], [3, 20]]


def hand_view(k=1, probs=None, seed=0):
    probs = probs if probs is not None else torch.tensor(
        [[0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25], [0.5, 0.5, 0.0, 0.0]])
    logits = torch.log(probs)
    tokens = probs.argmax(-1)
    return StepView(logits=logits, probs=probs, positions=torch.arange(probs.shape[0]) + 5, tokens=tokens,
                    confidence=probs.gather(-1, tokens[:, None]).squeeze(-1),
                    entropy=entropy_from_logits(logits), k=k, generator=torch.Generator().manual_seed(seed))


def test_cost_sum_mean_and_hnext_denominator():
    v = hand_view(k=2)
    cands = [Action(torch.tensor([0, 1])), Action(torch.tensor([1, 2]))]
    # candidate 0 leaves 3 masks (entropies 1, 2, 3 -> mean 2); candidate 1 leaves 2 (4, 4 -> 4)
    res = LookaheadResult(
        entropy=torch.tensor([[1.0, 2.0, 3.0, 9.0], [4.0, 4.0, 9.0, 9.0]]),
        masked=torch.tensor([[True, True, True, False], [True, True, False, False]]),
        raw_block_logits=torch.zeros(2, 3, 4),
    )
    h = v.entropy.double()
    ig = make_sampler("info_gain", cost_reduction="sum").objective(v, cands, res)
    assert torch.allclose(ig, torch.tensor([-(h[0] + h[1]) - 2.0, -(h[1] + h[2]) - 4.0], dtype=torch.float64))
    ig_mean = make_sampler("info_gain", cost_reduction="mean").objective(v, cands, res)
    assert torch.allclose(ig_mean, torch.tensor([-(h[0] + h[1]) / 2 - 2.0, -(h[1] + h[2]) / 2 - 4.0], dtype=torch.float64))
    lookum = make_sampler("lookum").objective(v, cands, res)
    assert torch.allclose(lookum, torch.tensor([-2.0, -4.0], dtype=torch.float64))
    assert math.isclose(float(h[1]), math.log(4), rel_tol=1e-6)


def test_candidate_zero_wins_ties():
    v = hand_view(k=1)
    cands = [Action(torch.tensor([0])), Action(torch.tensor([0]))]
    res = LookaheadResult(entropy=torch.ones(2, 3), masked=torch.ones(2, 3, dtype=torch.bool),
                          raw_block_logits=torch.zeros(2, 3, 4))
    assert make_sampler("lookum").choose(v, cands, res).info["winner"] == 0


def test_duplicates_dropped_and_single_commit():
    # one position far more confident than the others: at tau_pos=0.01 every Gumbel draw picks it
    probs = torch.tensor([[0.97, 0.01, 0.01, 0.01], [0.3, 0.3, 0.2, 0.2], [0.3, 0.3, 0.2, 0.2]])
    out = make_sampler("info_gain", position_temperature=0.01).propose(hand_view(k=1, probs=probs))
    assert isinstance(out, Action) and out.info["kind"] == "single" and out.index.tolist() == [0]
    cands = make_sampler("info_gain", position_temperature=5.0).propose(hand_view(k=1, seed=3))
    keys = [tuple(sorted(c.index.tolist())) for c in cands]
    assert len(keys) == len(set(keys)) and keys[0] == (0,)


def test_fast_path_and_bypass():
    s = make_sampler("info_gain", threshold=0.6)
    assert s.propose(hand_view(k=3)).info["kind"] == "fast_path"
    a = s.propose(hand_view(k=2))
    assert a.info["kind"] == "bypass" and a.index.tolist() == [0]  # only one position >= 0.6
    b = make_sampler("info_gain", threshold=0.6, bypass="all").propose(hand_view(k=2))
    assert b.info["kind"] != "bypass"  # not every position is >= 0.6
    c = make_sampler("info_gain", threshold=0.2, bypass="all").propose(hand_view(k=2))
    assert c.info["kind"] == "bypass" and c.index.tolist() == [0, 1, 2]  # whole block at once
    with pytest.raises(UnmaskError, match="bypass must be"):
        make_sampler("info_gain", bypass="some")


@pytest.mark.parametrize("cache", ["none", "prefix", "dual"])
def test_reduces_to_confidence(tiny_model, cache):
    kw = dict(max_new_tokens=12, block_size=4, steps=8, use_cache=cache, stop_at_eos=False)
    ref = generate(tiny_model, PROMPTS, "confidence", **kw)
    for opts in (dict(candidate_number=1), dict(position_temperature=0.0)):
        ig = generate(tiny_model, PROMPTS, "info_gain", **opts, **kw)
        assert ig.sequences == ref.sequences
        assert [t.order for t in ig.traces] == [t.order for t in ref.traces]
        assert ig.nfe == ref.nfe


def test_nfe_pattern(tiny_llada):
    """One forward per block start or after a step without lookahead; one batched lookahead per
    lookahead step; the winner's lookahead logits serve the next step."""
    out = generate(tiny_llada, [PROMPTS[0]], "info_gain", max_new_tokens=16, block_size=8, stop_at_eos=False)
    tr = out.traces[0]
    kinds = [s.kind for s in tr.steps]
    expected = 0
    fresh_needed = True
    for s in tr.steps:
        if fresh_needed:
            expected += 1
        if s.kind == "lookahead":
            expected += 1
        block_end = s.kind == "fast_path"
        fresh_needed = s.kind != "lookahead" or block_end
    assert kinds.count("lookahead") >= 4
    assert tr.nfe == out.nfe == expected
    # forward rows: lookahead steps count their candidate rows
    n_cands = sum(len(s.info["J"]) for s in tr.steps if s.kind == "lookahead")
    assert tr.forward_rows == expected - kinds.count("lookahead") + n_cands


@pytest.mark.parametrize("mnt,block,steps,tps", [
    (12, 4, 6, None), (12, 4, 5, None), (10, 3, None, 2), (9, 9, 4, None), (16, 16, 3, None), (7, 2, None, None),
])
@pytest.mark.parametrize("threshold", [None, 0.3, 0.9])
@pytest.mark.parametrize("bypass", ["any", "all"])
def test_no_masks_left(tiny_llada, mnt, block, steps, tps, threshold, bypass):
    out = generate(tiny_llada, PROMPTS, "info_gain", max_new_tokens=mnt, block_size=block, steps=steps,
                   tokens_per_step=tps, threshold=threshold, bypass=bypass, stop_at_eos=False)
    for seq in out.sequences:
        assert MASK not in seq


def test_k_tokens_per_action(tiny_llada):
    out = generate(tiny_llada, [PROMPTS[0]], "info_gain", max_new_tokens=12, block_size=12, tokens_per_step=3,
                   stop_at_eos=False)
    assert [s.committed for s in out.traces[0].steps] == [3, 3, 3, 3]


@pytest.mark.parametrize("cache", ["none", "prefix", "dual"])
@pytest.mark.parametrize("variant", ["info_gain", "lookum"])
def test_batched_equals_one_by_one_with_threshold(tiny_model, cache, variant):
    kw = dict(max_new_tokens=10, block_size=5, steps=8, use_cache=cache, threshold=0.5, temperature=0.7,
              seed=5, stop_at_eos=False, variant=variant)
    batched = generate(tiny_model, PROMPTS, "info_gain", **kw)
    alone = [generate(tiny_model, [p], "info_gain", **kw) for p in PROMPTS]
    assert batched.sequences == [a.sequences[0] for a in alone]
    again = generate(tiny_model, PROMPTS, "info_gain", **kw)
    assert again.sequences == batched.sequences


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_lookahead_never_writes_the_cache(tiny_llada, cache):
    model = tiny_llada
    seen = []
    orig = model.predict

    def spy(*args, **kwargs):
        c = kwargs.get("cache")
        before = c.checksum() if c is not None else None
        out = orig(*args, **kwargs)
        if c is not None:
            seen.append(before == c.checksum())
        return out

    model.predict = spy
    try:
        generate(model, PROMPTS, "info_gain", max_new_tokens=12, block_size=6, use_cache=cache, stop_at_eos=False)
    finally:
        del model.predict
    assert seen and all(seen)


@pytest.mark.parametrize("cache", ["none", "dual"])
def test_beam_one_equals_plain(tiny_model, cache):
    kw = dict(max_new_tokens=12, block_size=6, use_cache=cache, stop_at_eos=False, threshold=0.6)
    plain = generate(tiny_model, PROMPTS, "info_gain", **kw)
    beam1 = generate(tiny_model, PROMPTS, "info_gain", beam_size=1, **kw)
    assert plain.sequences == beam1.sequences


@pytest.mark.parametrize("variant", ["info_gain", "lookum"])
def test_beam_search_never_worse_on_fixture(tiny_llada, variant):
    kw = dict(max_new_tokens=12, block_size=12, stop_at_eos=False, variant=variant, position_temperature=0.5)
    greedy = generate(tiny_llada, PROMPTS, "info_gain", **kw)
    beam = generate(tiny_llada, PROMPTS, "info_gain", beam_size=3, **kw)
    alone = [generate(tiny_llada, [p], "info_gain", beam_size=3, **kw) for p in PROMPTS]
    for g, b, a in zip(greedy.traces, beam.traces, alone):
        assert b.cumulative_objective >= g.cumulative_objective - 1e-9
        assert a.traces[0].order == b.order  # beams of one prompt never see the other prompts
    for seq in beam.sequences:
        assert MASK not in seq
    assert beam.forward_rows > greedy.forward_rows


def test_beam_needs_lookahead_sampler(tiny_llada):
    with pytest.raises(UnmaskError, match="beam_size > 1 needs a lookahead sampler"):
        generate(tiny_llada, PROMPTS, "confidence", beam_size=2, max_new_tokens=4)


def test_best_of_picks_lowest_cumulative_entropy(tiny_llada):
    kw = dict(max_new_tokens=10, temperature=1.0, stop_at_eos=False, seed=11)
    runs = [generate(tiny_llada, [PROMPTS[0]], "confidence", **{**kw, "seed": 11 + i}) for i in range(4)]
    best = generate(tiny_llada, [PROMPTS[0]], "confidence", best_of=4, **kw)
    target = min(runs, key=lambda r: r.traces[0].cumulative_entropy)
    assert best.sequences == target.sequences
    assert best.traces[0].forward_rows == 4 * runs[0].traces[0].forward_rows
