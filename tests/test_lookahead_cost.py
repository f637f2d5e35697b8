"""What a lookahead costs: forward-token accounting and the cache-aware Info-Gain lookahead window.

Forward tokens = sum over forwards of rows x query length. The counts below are worked out by hand
from the canvas layout, not read back from the engine.
"""

import math

import pytest
import torch

from unmask.decoding.engine import generate, resolve_hnext_scope
from unmask.samplers import entropy_from_logits, make_sampler
from unmask.samplers.base import Action, LookaheadResult, StepView

PROMPT = [3, 9, 10, 11]  # 4 tokens; + 8 new = canvas T = 12, blocks [4, 8) and [8, 12)


@pytest.mark.parametrize("cache,expected", [
    ("none", 8 * 12),  # 8 steps, the whole canvas each time
    # per block: the refresh runs the canvas (12), the other 3 steps the window [s, T): 8 then 4
    ("prefix", (12 + 3 * 8) + (12 + 3 * 4)),
    ("dual", (12 + 3 * 4) + (12 + 3 * 4)),  # the other 3 steps run only the 4-token block
])
def test_forward_tokens_hand_count_confidence(tiny_llada, cache, expected):
    out = generate(tiny_llada, [PROMPT], "confidence", max_new_tokens=8, block_size=4, steps=8, use_cache=cache,
                   stop_at_eos=False)
    assert out.nfe == 8 and out.forward_rows == 8
    assert out.forward_tokens == expected
    assert out.traces[0].forward_tokens == expected
    assert out.traces[0].to_dict()["forward_tokens"] == expected


def test_forward_tokens_dream_window_has_one_extra_position(tiny_dream):
    # Dream predicts token i at position i - 1: a cached window [s, e) runs s - 1 .. e - 1
    out = generate(tiny_dream, [PROMPT], "confidence", max_new_tokens=8, block_size=4, steps=8, use_cache="dual",
                   stop_at_eos=False)
    assert out.forward_tokens == (12 + 3 * 5) + (12 + 3 * 5)


def test_forward_tokens_batch_sums_rows(tiny_llada):
    prompts = [PROMPT, [3, 20]]  # left-padded to 4: both rows run the same query lengths
    out = generate(tiny_llada, prompts, "confidence", max_new_tokens=8, block_size=4, steps=8, use_cache="dual",
                   stop_at_eos=False)
    assert out.forward_tokens == 2 * 48
    assert [t.forward_tokens for t in out.traces] == [48, 48]


def _info_gain_expected(trace, total, blocks, cache):
    """Forward tokens of an Info-Gain run, from its trace: a fresh forward at each block start (the
    refresh with a cache: the whole canvas) and after every step without a lookahead (a window),
    plus one row per candidate on every lookahead step."""
    window = {"none": lambda s, e: total, "prefix": lambda s, e: total - s, "dual": lambda s, e: e - s}[cache]
    tokens, fresh, block = 0, True, None
    for st in trace.steps:
        s, e = blocks[st.block]
        if st.block != block:  # block start: the refresh forward
            block, fresh = st.block, False
            tokens += total
        elif fresh:
            tokens += window(s, e)
        if st.kind == "lookahead":
            tokens += len(st.info["J"]) * window(s, e)
        fresh = st.kind != "lookahead"
    return tokens


@pytest.mark.parametrize("cache", ["none", "prefix", "dual"])
def test_forward_tokens_info_gain(tiny_llada, cache):
    out = generate(tiny_llada, [PROMPT], "info_gain", max_new_tokens=8, block_size=4, steps=8, use_cache=cache,
                   stop_at_eos=False)
    tr = out.traces[0]
    assert any(st.kind == "lookahead" for st in tr.steps)
    assert out.forward_tokens == _info_gain_expected(tr, 12, [(4, 8), (8, 12)], cache)


# ----------------------------------------------------------------------------- the lookahead window

def _spy_windows(model):
    calls = []
    orig = model.predict

    def spy(x, *args, **kwargs):
        if kwargs.get("cache") is not None:
            calls.append((x.shape[0], kwargs["start"], kwargs["end"], kwargs.get("logits_end")))
        return orig(x, *args, **kwargs)

    model.predict = spy
    return calls


@pytest.mark.parametrize("scope,cache,window", [
    ("auto", "dual", "block"), ("block", "dual", "block"), ("padded", "dual", "block"),
    ("all", "dual", "suffix"),  # the explicit override widens the dual lookahead to [s, T)
    ("auto", "prefix", "suffix"), ("block", "prefix", "suffix"),  # prefix always runs [s, T)
])
def test_lookahead_window_per_cache_mode(tiny_llada, scope, cache, window):
    model = tiny_llada
    calls = _spy_windows(model)
    try:
        out = generate(model, [PROMPT, [3, 20]], "info_gain", hnext_scope=scope, max_new_tokens=12, block_size=4,
                       use_cache=cache, stop_at_eos=False)
    finally:
        del model.predict
    total = 4 + 12
    lookaheads = [c for c in calls if c[0] > 2]  # more rows than prompts: candidate batches
    assert lookaheads and sum(1 for t in out.traces for s in t.steps if s.kind == "lookahead") > 0
    for _, start, end, _ in lookaheads:
        assert (start - 4) % 4 == 0
        assert end == (start + 4 if window == "block" else total)


def test_resolve_hnext_scope():
    assert resolve_hnext_scope("auto", "dual") == "block"
    assert resolve_hnext_scope("auto", "prefix") == "all"
    assert resolve_hnext_scope("auto", "none") == "all"
    assert resolve_hnext_scope("all", "dual") == "all"
    assert resolve_hnext_scope("padded", "none") == "padded"


# ----------------------------------------------------------------------------- the seeds' semantics

def test_padded_objective_by_hand():
    """The seeds' dual cache zero-pads logits outside the block, so every mask there counts ln V:
    H_next = (block entropies + n_out ln V) / (block masks + n_out)."""
    probs = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25], [0.5, 0.5, 0.0, 0.0]])
    logits = torch.log(probs)
    view = StepView(logits=logits, probs=probs, positions=torch.arange(3) + 5, tokens=probs.argmax(-1),
                    confidence=probs.max(-1).values, entropy=entropy_from_logits(logits), k=1,
                    generator=torch.Generator().manual_seed(0))
    cands = [Action(torch.tensor([0])), Action(torch.tensor([1]))]
    res = LookaheadResult(entropy=torch.tensor([[0.0, 1.0, 3.0], [2.0, 0.0, 2.0]]),
                          masked=torch.tensor([[False, True, True], [True, False, True]]),
                          raw_block_logits=torch.zeros(2, 3, 4), outside_masks=torch.tensor([6, 6]),
                          outside_entropy=math.log(4))
    c = view.entropy.double()
    lnv = math.log(4)
    j = make_sampler("info_gain", hnext_scope="padded").objective(view, cands, res)
    assert torch.allclose(j, torch.tensor([-c[0] - (4 + 6 * lnv) / 8, -c[1] - (4 + 6 * lnv) / 8]))
    # block scope: the same block sums, undiluted by the constant outside part
    res.outside_masks = None
    j_block = make_sampler("info_gain", hnext_scope="block").objective(view, cands, res)
    assert torch.allclose(j_block, torch.tensor([-c[0] - 2.0, -c[1] - 2.0], dtype=torch.float64))


def _record_choices(sampler):
    """Record every row's (view, candidates, action) as the engine asks (all rows of a step at once)."""
    seen = []
    orig = sampler.choose_many

    def choose_many(views, cands, results):
        actions = orig(views, cands, results)
        seen.extend(zip(views, cands, actions))
        return actions

    sampler.choose_many = choose_many
    return seen


@pytest.mark.parametrize("variant", ["info_gain", "lookum"])
def test_dual_ranking_matches_seeds_by_hand(tiny_llada, variant):
    """First lookahead of a dual-cache run, recomputed independently: the refresh cache of the
    initial canvas, each candidate's block run against it, full-vocabulary entropies at the masks
    left in the block, ln V for every mask after the block (the seeds' zero padding). ``padded``
    reproduces those J values; the default block scope ranks the candidates the same way for
    LookUM (an affine map of the same block sum) and for Info-Gain whenever C ties."""
    model = tiny_llada
    s, e = 4, 8
    kw = dict(max_new_tokens=12, block_size=4, use_cache="dual", stop_at_eos=False)
    sampler = make_sampler(variant, hnext_scope="padded", position_temperature=1.0)
    seen = _record_choices(sampler)
    generate(model, [PROMPT], sampler, **kw)
    view, cands, action = seen[0]
    assert view.block_start == s and len(cands) > 1

    x = torch.tensor([PROMPT + [1] * 12])
    cache = model.predict(x, return_cache=True).cache
    j_seed, h_block = [], []
    for c in cands:
        xc = x.clone()
        xc[0, view.positions[c.index]] = view.tokens[c.index]
        lg = model.predict(xc, cache=cache, start=s, end=e).logits[0].float()
        v = lg.shape[-1]
        lg[:, model.config.mask_token_id] = float("-inf")
        masked = xc[0, s:e] == 1
        ent = entropy_from_logits(lg[masked]).double()
        n_out = int((xc[0, e:] == 1).sum())
        h_seed = (ent.sum() + n_out * math.log(v)) / (int(masked.sum()) + n_out)
        cost = 0.0 if variant == "lookum" else float(view.entropy[c.index].double().sum())
        j_seed.append(-cost - float(h_seed))
        h_block.append(float(ent.mean()))
    got = torch.tensor(action.info["J"], dtype=torch.float64)
    assert torch.allclose(got, torch.tensor(j_seed, dtype=torch.float64), atol=1e-5)
    assert action.info["winner"] == int(torch.argmax(torch.tensor(j_seed)))

    # the default (auto = block under dual) on the same run
    default = make_sampler(variant, position_temperature=1.0)
    seen_d = _record_choices(default)
    generate(model, [PROMPT], default, **kw)
    view_d, cands_d, action_d = seen_d[0]
    assert [c.index.tolist() for c in cands_d] == [c.index.tolist() for c in cands]
    costs = [0.0 if variant == "lookum" else float(view.entropy[c.index].double().sum()) for c in cands]
    j_block = torch.tensor([-c - h for c, h in zip(costs, h_block)], dtype=torch.float64)
    assert torch.allclose(torch.tensor(action_d.info["J"], dtype=torch.float64), j_block, atol=1e-5)
    if variant == "lookum":
        assert torch.equal(torch.argsort(j_block, stable=True), torch.argsort(torch.tensor(j_seed), stable=True))


def test_lookahead_margin_skips_clear_steps():
    probs = torch.tensor([[0.9, 0.05, 0.05, 0.0], [0.4, 0.3, 0.3, 0.0], [0.5, 0.5, 0.0, 0.0]])
    logits = torch.log(probs)
    view = StepView(logits=logits, probs=probs, positions=torch.arange(3) + 5, tokens=probs.argmax(-1),
                    confidence=probs.max(-1).values, entropy=entropy_from_logits(logits), k=1,
                    generator=torch.Generator().manual_seed(0))
    # greedy picks position 0 (0.9); the runner-up is 0.5: gap 0.4
    a = make_sampler("info_gain", lookahead_margin=0.39, position_temperature=5.0).propose(view)
    assert isinstance(a, Action) and a.info["kind"] == "margin" and a.index.tolist() == [0]
    b = make_sampler("info_gain", lookahead_margin=0.41, position_temperature=5.0).propose(view)
    assert isinstance(b, list)
    view.k = 2  # positions 0 and 2 (0.9, 0.5) against 0.4: gap 0.1
    assert isinstance(make_sampler("info_gain", lookahead_margin=0.2, position_temperature=5.0).propose(view), list)
    assert make_sampler("info_gain", lookahead_margin=0.09, position_temperature=5.0).propose(view).info["kind"] == "margin"
