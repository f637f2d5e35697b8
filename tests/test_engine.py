import pytest
import torch

from unmask.decoding.engine import GenerationConfig, generate
from unmask.errors import UnmaskError
from unmask.samplers import sampler_names

MASK = 1
PROMPTS = [[3, 9, 10, 11], [3, 12, 13, 14, 15, 16, 17, 18, 19], [3, 20]]
SAMPLERS = sampler_names()  # every registered sampler


@pytest.mark.parametrize("cache", ["none", "prefix", "dual"])
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_batched_equals_one_by_one(tiny_model, sampler, cache):
    kw = dict(max_new_tokens=10, block_size=4, steps=6, use_cache=cache, stop_at_eos=False)
    batched = generate(tiny_model, PROMPTS, sampler, **kw)
    alone = [generate(tiny_model, [p], sampler, **kw) for p in PROMPTS]
    assert batched.sequences == [a.sequences[0] for a in alone]
    assert [t.order for t in batched.traces] == [a.traces[0].order for a in alone]
    assert [t.nfe for t in batched.traces] == [a.traces[0].nfe for a in alone]
    for seq in batched.sequences:
        assert MASK not in seq


@pytest.mark.parametrize("mnt,block,steps,tps", [
    (10, 4, 6, None), (10, 4, 3, None), (10, 3, 10, None), (7, 7, 2, None), (16, 5, 16, None),
    (9, None, 4, None), (9, 2, None, 3), (12, 5, None, None), (5, 8, 100, None), (11, 4, 5, None),
])
@pytest.mark.parametrize("schedule", ["linear", "linear_round", "dream"])
def test_no_masks_left(tiny_llada, mnt, block, steps, tps, schedule):
    out = generate(tiny_llada, PROMPTS, "confidence", max_new_tokens=mnt, block_size=block, steps=steps,
                   tokens_per_step=tps, schedule=schedule, stop_at_eos=False)
    for seq, p in zip(out.sequences, PROMPTS):
        assert len(seq) == len(p) + mnt
        assert MASK not in seq
    # every generated position decoded exactly once, recorded in the trace
    for tr, p in zip(out.traces, PROMPTS):
        assert sorted(r.position for r in tr.tokens) == list(range(len(p), len(p) + mnt))


def test_steps_budget_respected(tiny_llada):
    out = generate(tiny_llada, [PROMPTS[0]], "confidence", max_new_tokens=12, block_size=4, steps=6, stop_at_eos=False)
    assert out.nfe == 6 and out.traces[0].nfe == 6
    per_step = [s.committed for s in out.traces[0].steps]
    assert per_step == [2, 2, 2, 2, 2, 2]


def test_rejected_combination(tiny_llada):
    with pytest.raises(UnmaskError, match="fewer than the 3 blocks"):
        generate(tiny_llada, PROMPTS, "confidence", max_new_tokens=12, block_size=4, steps=2)
    with pytest.raises(UnmaskError, match="either steps or tokens_per_step"):
        generate(tiny_llada, PROMPTS, "confidence", max_new_tokens=12, steps=4, tokens_per_step=2)


def test_infilling_masks_in_prompt(tiny_model):
    prompt = [3, 9, MASK, 11, MASK, MASK, 14]
    out = generate(tiny_model, [prompt], "margin", max_new_tokens=0)
    seq = out.sequences[0]
    assert MASK not in seq and len(seq) == len(prompt)
    assert [seq[i] for i in (0, 1, 3, 6)] == [3, 9, 11, 14]
    assert sorted(r.position for r in out.traces[0].tokens) == [2, 4, 5]


def test_nothing_to_decode(tiny_llada):
    with pytest.raises(UnmaskError, match="nothing to decode"):
        generate(tiny_llada, [[3, 4]], "confidence", max_new_tokens=0)


def test_seeds(tiny_llada):
    kw = dict(max_new_tokens=12, temperature=1.0, stop_at_eos=False)
    a = generate(tiny_llada, [PROMPTS[0]], "random", seed=1, **kw).sequences
    b = generate(tiny_llada, [PROMPTS[0]], "random", seed=1, **kw).sequences
    c = generate(tiny_llada, [PROMPTS[0]], "random", seed=2, **kw).sequences
    assert a == b and a != c
    # greedy sampler at temperature 0 ignores the seed
    g1 = generate(tiny_llada, [PROMPTS[0]], "confidence", seed=1, max_new_tokens=8).sequences
    g2 = generate(tiny_llada, [PROMPTS[0]], "confidence", seed=2, max_new_tokens=8).sequences
    assert g1 == g2


def test_mask_token_never_produced(tiny_llada):
    def boost_mask(step, x, logits):
        return logits  # the engine already set the mask logit to -inf before the hook

    out = generate(tiny_llada, PROMPTS, "confidence", max_new_tokens=8, temperature=2.0, logits_hook=boost_mask,
                   stop_at_eos=False)
    assert all(MASK not in s for s in out.sequences)


def test_trace_figures(tiny_llada):
    out = generate(tiny_llada, [PROMPTS[1]], "entropy", max_new_tokens=8, stop_at_eos=False)
    tr = out.traces[0]
    assert len(tr.tokens) == 8 and tr.nfe == 8 == out.nfe
    assert abs(tr.cumulative_entropy - sum(r.entropy for r in tr.tokens)) < 1e-9
    assert all(0 <= r.confidence <= 1 and r.entropy >= 0 for r in tr.tokens)
    assert out.generated_tokens == 8 and out.tokens_per_second > 0
    assert tr.order[0][0] == 0 and len(tr.order) == 8


def test_stop_at_eos_and_hooks(tiny_llada):
    eos = tiny_llada.config.eos_token_id
    calls = []

    def force_eos(step, x, logits):
        calls.append(step)
        logits[:, 3, eos] = 1e4  # position 3 of the block becomes EOS with certainty
        return logits

    def pin(step, x, logits):
        if step is None:
            x[:, -1] = 7  # Dream-style token control: pin the last token before decoding starts
        return x

    out = generate(tiny_llada, [PROMPTS[0]], "confidence", max_new_tokens=8, logits_hook=force_eos, tokens_hook=pin)
    gen = out.sequences[0][len(PROMPTS[0]):]
    assert gen[3] == eos and len(out.generated[0]) == 3
    assert MASK not in out.sequences[0]
    assert out.nfe < 8 and calls  # stopped early: the positions after EOS were never decoded


@pytest.mark.parametrize("bad,match", [
    (dict(block_size=0), "block_size must be > 0"),
    (dict(steps=0), "steps must be > 0"),
    (dict(temperature=-1.0), "temperature must be >= 0"),
    (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
    (dict(top_p=1.5), r"top_p must be in \(0, 1\]"),
    (dict(use_cache="full"), "use_cache must be one of"),
    (dict(threshold=1.2), r"threshold must be in \(0, 1\]"),
])
def test_bad_config(tiny_llada, bad, match):
    sampler = "threshold" if "threshold" in bad else "confidence"
    with pytest.raises(UnmaskError, match=match):
        generate(tiny_llada, PROMPTS, sampler, max_new_tokens=4, **bad)


def test_prompt_longer_than_context(tiny_llada):
    with pytest.raises(UnmaskError, match="exceeds the model's context of 256"):
        generate(tiny_llada, [[3] * 250], "confidence", max_new_tokens=10)


def test_dream_empty_prompt_rejected(tiny_dream):
    with pytest.raises(UnmaskError, match="must not be empty"):
        generate(tiny_dream, [[]], "confidence", max_new_tokens=4)


def test_config_roundtrip():
    cfg = GenerationConfig(max_new_tokens=5, seed=[1, 2])
    d = cfg.to_dict()
    assert d["max_new_tokens"] == 5 and "logits_hook" not in d


def test_top_k_top_p_filters():
    from unmask.decoding.engine import filter_logits, propose_tokens

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    k2 = filter_logits(logits, top_k=2, top_p=None)
    assert torch.isinf(k2[0, 2:]).all() and torch.isfinite(k2[0, :2]).all()
    p = filter_logits(logits, top_k=None, top_p=0.7)  # 0.5 < 0.7, 0.5 + 0.3 crosses it: keep two
    assert torch.isfinite(p[0, :2]).all() and torch.isinf(p[0, 2:]).all()
    p1 = filter_logits(logits, top_k=None, top_p=0.1)  # the most likely token always survives
    assert torch.isfinite(p1[0, 0]) and torch.isinf(p1[0, 1:]).all()
    g = torch.Generator().manual_seed(0)
    draws = {int(propose_tokens(logits, 1.0, 2, None, g)) for _ in range(200)}
    assert draws == {0, 1}
    assert int(propose_tokens(logits, 0.0, None, None, g)) == 0


@pytest.mark.parametrize("v", [7, 1024, 1500, 126_464])
def test_first_argmax_is_argmax(v):
    """The slice-maxima argmax gives torch.argmax's index (the first maximum): ties inside a slice,
    across slices and in the tail, infinities, all -inf."""
    from unmask.decoding.processors import first_argmax

    g = torch.Generator().manual_seed(v)
    x = torch.randn(6, v, generator=g)
    x[1, v // 3] = x[1, v - 1] = 50.0  # a tie: the earlier one wins
    x[2, v - 1] = 60.0  # the maximum in the tail
    x[3, 0] = float("inf")
    x[3, v // 2] = float("inf")
    x[4] = float("-inf")
    x[5, : v // 2] = 9.0  # a long tie spanning slices
    assert torch.equal(first_argmax(x), x.argmax(-1))
    assert torch.equal(first_argmax(x[:, None]), x[:, None].argmax(-1))  # any leading shape


def test_an_engine_keeps_nothing_between_calls(tiny_llada):
    """Per-call state lives in the call's Run: one Engine used for batches of different shapes, in
    any order, gives what fresh engines give, and holds only its constants afterwards."""
    from unmask.decoding.engine import Engine
    from unmask.samplers.base import make_sampler

    cfg = GenerationConfig(max_new_tokens=8, block_size=4, use_cache="dual", temperature=0.7, seed=3)
    engine = Engine(tiny_llada, make_sampler("confidence"))
    before = set(vars(engine))
    a = engine.generate([[5, 6, 7], [8, 9]], cfg)
    b = engine.generate([[4, 4, 4, 4]], cfg)
    assert set(vars(engine)) == before
    assert a.sequences == Engine(tiny_llada, make_sampler("confidence")).generate([[5, 6, 7], [8, 9]], cfg).sequences
    assert b.sequences == Engine(tiny_llada, make_sampler("confidence")).generate([[4, 4, 4, 4]], cfg).sequences
    assert (a.nfe, b.nfe) == (2 * 4, 2 * 4)  # each call counts its own forwards from zero
