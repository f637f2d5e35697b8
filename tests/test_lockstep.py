"""Lockstep reasoning/answer decoding: gates, sweeps, NFE, hooks, markers."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from unmask.decoding.engine import generate
from unmask.decoding.lockstep import (
    LockstepPlan,
    canvas_after_prompt,
    canvas_from_markers,
    fill_curves,
    lockstep_metrics,
    split_markers,
)
from unmask.decoding.plan import Gate
from unmask.errors import UnmaskError
from unmask.models.base import ModelOutput
from unmask.samplers.klass import KlassSampler

MASK, EOS, PAD, V = 1, 2, 0, 12


class ScriptedModel(torch.nn.Module):
    """A 'model' whose predictions are a hand-written function of the canvas, so tests can say
    exactly which position passes which threshold. ``rule(x_row) -> {pos: (token, prob)}``;
    unlisted positions predict token 3 with probability 0.2. No cache support (use_cache none)."""

    shift_logits = False

    def __init__(self, rule) -> None:
        super().__init__()
        self.rule = rule
        self.config = SimpleNamespace(mask_token_id=MASK, eos_token_id=EOS, pad_token_id=PAD, max_sequence_length=0)
        self.calls = 0

    @property
    def device(self):
        return torch.device("cpu")

    @staticmethod
    def _row(token: int, p: float) -> torch.Tensor:
        other = (1.0 - p) / (V - 2)  # spread over the other non-mask tokens
        probs = torch.full((V,), other, dtype=torch.float64)
        probs[MASK] = 1e-30
        probs[token] = p
        return probs.log().float()

    def predict(self, x, attention_mask=None, cache=None, start=0, end=None, return_cache=False, logits_end=None):
        assert cache is None and not return_cache
        self.calls += 1
        end = x.shape[1] if end is None else end
        out = torch.empty((x.shape[0], end - start, V))
        for b in range(x.shape[0]):
            table = self.rule(x[b].tolist())
            for j, pos in enumerate(range(start, end)):
                out[b, j] = self._row(*table.get(pos, (3, 0.2)))
        return ModelOutput(out)


def gs_vs_jacobi_rule(x):
    """Canvas [5, R R, A A]. R: position 1 is sure (0.95 -> 7), position 2 is not (0.5).
    A reads R: while position 1 is masked, position 3 is sure (0.97 -> 9); once it is written,
    position 4 is sure instead (0.99 -> 8)."""
    table = {1: (7, 0.95), 2: (6, 0.5)}
    if x[1] == MASK:
        table.update({3: (9, 0.97), 4: (8, 0.3)})
    else:
        table.update({3: (9, 0.3), 4: (8, 0.99)})
    return table


def test_gauss_seidel_and_jacobi_commit_different_positions():
    # hand-checked: tau_r 0.9, tau_a 0.92, max_fill_frac 1.
    # Jacobi, step 0, one forward: R commits 1 (0.95); A, from the same logits (1 still masked),
    # commits 3 (0.97). Gauss-Seidel, step 0: R commits 1; the second forward sees 1 = 7, so A
    # commits 4 (0.99) instead.
    prompt = [5, MASK, MASK, MASK, MASK]
    regions = {"R": (1, 3), "A": (3, 5)}
    m = ScriptedModel(gs_vs_jacobi_rule)
    jac = generate(m, [prompt], "confidence", max_new_tokens=0, plan=LockstepPlan(regions, "jacobi", max_fill_frac=1.0))
    assert [(t.step, t.position, t.token) for t in jac.traces[0].tokens if t.step == 0] == [(0, 1, 7), (0, 3, 9)]
    assert [s.region for s in jac.traces[0].steps if s.step == 0] == ["R", "A"]
    assert m.calls == jac.traces[0].nfe
    m.calls = 0
    gs = generate(m, [prompt], "confidence", max_new_tokens=0,
                  plan=LockstepPlan(regions, "gauss_seidel", max_fill_frac=1.0))
    toks = gs.traces[0].tokens
    assert [(t.step, t.position, t.token) for t in toks if t.step == 0] == [(0, 1, 7), (0, 4, 8)]
    assert m.calls == gs.traces[0].nfe
    # NFE pattern: Jacobi one forward per step; Gauss-Seidel two while both regions commit
    assert jac.traces[0].nfe == lockstep_metrics(jac.traces[0])["steps"]
    steps_gs = lockstep_metrics(gs.traces[0])["steps"]
    both = {s.step for s in gs.traces[0].steps if s.region == "R"} & {s.step for s in gs.traces[0].steps
                                                                      if s.region == "A"}
    assert gs.traces[0].nfe == steps_gs + len(both)
    assert [s.nfe for s in gs.traces[0].steps][:2] == [1, 2]
    for out in (jac, gs):
        assert MASK not in out.sequences[0]


def static_rule(conf: dict[int, float]):
    return lambda x: {p: (4 + p % 5, c) for p, c in conf.items()}


@pytest.mark.parametrize("sampler", ["confidence", "klass"])
@pytest.mark.parametrize("frac", [0.2, 0.4, 1.0])
def test_thresholds_and_max_fill_frac_exact(frac, sampler):
    # KLASS (threshold 0.5, below every gate's tau) would commit every stable position the gate
    # lets through; the gate's cap must hold for it as for confidence
    # R = positions 1..10 with fixed confidences, A = 11..15
    conf = {1: 0.99, 2: 0.5, 3: 0.98, 4: 0.95, 5: 0.91, 6: 0.3, 7: 0.6, 8: 0.89, 9: 0.2, 10: 0.93,
            11: 0.97, 12: 0.91, 13: 0.925, 14: 0.1, 15: 0.99}
    tau = {"R": 0.9, "A": 0.92}
    prompt = [5] + [MASK] * 15
    chosen = {"confidence": "confidence", "klass": KlassSampler(threshold=0.5, kl_threshold=0.01, kl_history=1)}[sampler]
    out = generate(ScriptedModel(static_rule(conf)), [prompt], chosen, max_new_tokens=0,
                   plan=LockstepPlan({"R": (1, 11), "A": (11, 16)}, "jacobi", tau_r=0.9, tau_a=0.92,
                                     max_fill_frac=frac))
    tr = out.traces[0]
    if frac == 0.4:  # hand-checked first step: R cap floor(0.4*10)=4 of 5 eligible, A cap 2 of 3
        assert sorted(t.position for t in tr.tokens if t.step == 0) == [1, 3, 4, 10, 11, 15]
    remaining = {"R": set(range(1, 11)), "A": set(range(11, 16))}
    for st in tr.steps:
        got = [t.position for t in tr.tokens if t.step == st.step and tr.regions[st.region][0] <= t.position
               < tr.regions[st.region][1]]
        rem = remaining[st.region]
        passing = sorted((p for p in rem if conf[p] >= tau[st.region]), key=lambda p: -conf[p])
        cap = max(1, math.floor(frac * len(rem) + 1e-9))
        if passing:
            assert st.info["gate"] == "threshold"
            assert sorted(got) == sorted(passing[:cap])  # the most confident eligible, at most cap
        else:
            assert st.info["gate"] == "fallback"
            assert got == [max(rem, key=lambda p: (conf[p], -p))]  # single best position
        rem -= set(got)
    assert not remaining["R"] and not remaining["A"]
    assert Gate(tau=0.9, max_fill_frac=frac).cap(10) == max(1, math.floor(frac * 10 + 1e-9))


@pytest.mark.parametrize("after", [0.5, 1.0])
def test_answer_after_respected(after):
    conf = {p: 0.99 for p in range(1, 12)}
    out = generate(ScriptedModel(static_rule(conf)), [[5] + [MASK] * 11], "confidence", max_new_tokens=0,
                   plan=LockstepPlan({"R": (1, 9), "A": (9, 12)}, "gauss_seidel", max_fill_frac=0.25,
                                     answer_after=after))
    tr = out.traces[0]
    met = lockstep_metrics(tr)
    assert met["r_fill_at_a_first"] >= after
    first_a = next(s for s in tr.steps if s.region == "A")
    r_before = [s for s in tr.steps if s.region == "R" and s.step <= first_a.step][-1]
    assert r_before.fill["R"] >= after
    # without answer_after the sure answer is committed at once (premature)
    free = generate(ScriptedModel(static_rule(conf)), [[5] + [MASK] * 11], "confidence", max_new_tokens=0,
                    plan=LockstepPlan({"R": (1, 9), "A": (9, 12)}, "gauss_seidel", max_fill_frac=0.25))
    fm = lockstep_metrics(free.traces[0])
    assert fm["a_first_step"] == 0 and fm["premature_answer"]
    assert not met["premature_answer"]
    # while A is held back, Gauss-Seidel spends one forward per step, not two
    held = [s.step for s in tr.steps if s.region == "R" and s.step < first_a.step]
    assert [s.nfe for s in tr.steps if s.step in held] == [i + 1 for i in range(len(held))]


def _prompts():
    return [[5, 6] + [MASK] * 7 + [7, 8] + [MASK] * 3 + [9], [10] + [MASK] * 7 + [7, 8] + [MASK] * 3]


def _regions():
    return [{"R": (2, 9), "A": (11, 14)}, {"R": (1, 8), "A": (10, 13)}]


@pytest.mark.parametrize("mode", ["jacobi", "gauss_seidel"])
@pytest.mark.parametrize("cache", ["none", "prefix", "dual"])
@pytest.mark.parametrize("sampler", ["confidence", "entropy", "margin", "info_gain"])
def test_no_masks_left_and_batched_equals_alone(tiny_llada, tiny_dream, mode, cache, sampler):
    for model in (tiny_llada, tiny_dream):
        kw = dict(max_new_tokens=0, use_cache=cache, temperature=0.5, seed=3)
        if sampler == "info_gain":
            kw["candidate_number"] = 3
        plan = LockstepPlan(_regions(), mode, tau_r=0.3, tau_a=0.4)
        both = generate(model, _prompts(), sampler, plan=plan, **kw)
        for i, p in enumerate(_prompts()):
            assert MASK not in both.sequences[i]
            alone = generate(model, [p], sampler, plan=LockstepPlan(_regions()[i], mode, tau_r=0.3, tau_a=0.4), **kw)
            assert alone.sequences[0] == both.sequences[i]
            assert [(t.step, t.position) for t in alone.traces[0].tokens] == \
                   [(t.step, t.position) for t in both.traces[i].tokens]
            # fixed text between the regions is never rewritten
            assert both.sequences[i][: _regions()[i]["R"][0]] == p[: _regions()[i]["R"][0]]
            assert both.sequences[i][_regions()[i]["R"][1] : _regions()[i]["A"][0]] == [7, 8]


def test_trailing_generation_and_seeds(tiny_llada):
    plan = LockstepPlan({"R": (2, 9), "A": (11, 14)}, "jacobi", tau_r=0.5, tau_a=0.5)
    a = generate(tiny_llada, [_prompts()[0]], "random", max_new_tokens=5, block_size=2, plan=plan, seed=7)
    b = generate(tiny_llada, [_prompts()[0]], "random", max_new_tokens=5, block_size=2, plan=plan, seed=7)
    assert a.sequences == b.sequences and MASK not in a.sequences[0]
    blocks = {s.block for s in a.traces[0].steps}
    assert blocks == {0, 1, 2, 3}  # the lockstep phase, then three plain blocks


def test_bad_input():
    with pytest.raises(UnmaskError, match="tau_r"):
        LockstepPlan({"R": (1, 2), "A": (2, 3)}, tau_r=0)
    with pytest.raises(UnmaskError, match="tau_a"):
        LockstepPlan({"R": (1, 2), "A": (2, 3)}, tau_a=1.5)
    with pytest.raises(UnmaskError, match="max_fill_frac"):
        LockstepPlan({"R": (1, 2), "A": (2, 3)}, max_fill_frac=0)
    with pytest.raises(UnmaskError, match="empty"):
        LockstepPlan({"R": (1, 1), "A": (2, 3)})
    with pytest.raises(UnmaskError, match="overlap"):
        LockstepPlan({"R": (1, 4), "A": (2, 3)})
    with pytest.raises(UnmaskError, match="lockstep mode"):
        LockstepPlan({"R": (1, 2), "A": (2, 3)}, mode="sor")
    with pytest.raises(UnmaskError, match="answer_after"):
        LockstepPlan({"R": (1, 2), "A": (2, 3)}, answer_after=2)


def test_refused_combinations(tiny_llada):
    plan = LockstepPlan({"R": (1, 3), "A": (3, 5)})
    p = [5, MASK, MASK, MASK, MASK]
    with pytest.raises(UnmaskError, match="threshold sampler"):
        generate(tiny_llada, [p], "threshold", max_new_tokens=0, plan=plan)
    with pytest.raises(UnmaskError, match="beam_size"):
        generate(tiny_llada, [p], "info_gain", max_new_tokens=0, plan=plan, beam_size=2)
    with pytest.raises(UnmaskError, match="outside the R and A"):
        generate(tiny_llada, [[5, MASK, MASK, MASK, MASK, MASK]], "confidence", max_new_tokens=0, plan=plan)
    with pytest.raises(UnmaskError, match="no mask tokens"):
        generate(tiny_llada, [[5, 6, 7, MASK, MASK]], "confidence", max_new_tokens=0, plan=plan)


def test_dream_style_hooks(tiny_dream):
    """Hooks written the way Dream's README/demos write them: full-canvas logits indexed with a
    mask over the whole x, a tokens hook that pins tokens and is first called with
    (None, x, None)."""
    calls = []

    def generation_tokens_hook_func(step, x, logits):
        calls.append((step, None if logits is None else tuple(logits.shape)))
        x[:, -1] = 9  # pin the last position, as Dream's token-control demo does
        return x

    def generation_logits_hook_func(step, x, logits):
        mask_index = x == MASK  # Dream hooks index logits with masks over the whole canvas
        assert logits.shape[:2] == x.shape
        logits[mask_index] = logits[mask_index].clone()
        logits[:, :, 4] = float("-inf")  # never write token 4
        return logits

    p = [5, 6] + [MASK] * 6 + [7] + [MASK] * 3 + [MASK]
    out = generate(tiny_dream, [p], "confidence", max_new_tokens=0,
                   plan=LockstepPlan({"R": (2, 8), "A": (9, 13)}, "gauss_seidel", tau_r=0.3, tau_a=0.3),
                   generation_tokens_hook_func=generation_tokens_hook_func,
                   generation_logits_hook_func=generation_logits_hook_func)
    seq = out.sequences[0]
    assert seq[-1] == 9 and MASK not in seq and 4 not in seq[2:12]
    assert calls[0] == (None, None)
    assert all(shape == (1, len(p), calls[1][1][2]) for _, shape in calls[1:])
    assert [s for s, _ in calls[1:]] == list(range(len(calls) - 1))
    with pytest.raises(UnmaskError, match="not both"):
        generate(tiny_dream, [p[:8]], "confidence", max_new_tokens=2, tokens_hook=lambda s, x, lg: x,
                 generation_tokens_hook_func=generation_tokens_hook_func)
    # the same hooks on a plain (non-lockstep) generation
    out = generate(tiny_dream, [[5, 6, 7]], "confidence", max_new_tokens=6, block_size=3,
                   generation_logits_hook_func=generation_logits_hook_func)
    assert 4 not in out.generated[0]


def test_markers():
    parts = split_markers("Why? [R] so the answer is [A].")
    assert parts == ["Why? ", ("R",), " so the answer is ", ("A",), "."]
    assert split_markers("[R][A]") == [("R",), ("A",)]
    with pytest.raises(UnmaskError, match=r"\[A\] marker"):
        split_markers("no answer marker [R]")
    with pytest.raises(UnmaskError, match=r"\[R\] marker"):
        split_markers("plain text")
    with pytest.raises(UnmaskError, match="2 \\[R\\] markers"):
        split_markers("[R] and [R] then [A]")
    enc_first = lambda t: [100] + [ord(c) for c in t]  # noqa: E731 - BOS + chars
    enc_rest = lambda t: [ord(c) for c in t]  # noqa: E731
    ids, spans = canvas_from_markers("ab[R]c[A]d", enc_first, enc_rest, MASK, 3, 2)
    assert ids == [100, 97, 98, MASK, MASK, MASK, 99, MASK, MASK, 100]
    assert spans == {"R": (3, 6), "A": (7, 9)}
    ids, spans = canvas_from_markers("[A] then [R]", enc_first, enc_rest, MASK, 2, 1)
    assert ids[:2] == [100, MASK] and spans == {"A": (1, 2), "R": (8, 10)}
    with pytest.raises(UnmaskError, match="reasoning_tokens"):
        canvas_from_markers("[R][A]", enc_first, enc_rest, MASK, 0, 2)
    ids, spans = canvas_after_prompt([7, 8], [40, 41], MASK, 2, 3, suffix_ids=[2])
    assert ids == [7, 8, MASK, MASK, 40, 41, MASK, MASK, MASK, 2] and spans == {"R": (2, 4), "A": (6, 9)}


def test_fill_curves_and_metrics(tiny_llada):
    out = generate(tiny_llada, [_prompts()[0]], "confidence", max_new_tokens=0,
                   plan=LockstepPlan(_regions()[0], "jacobi", tau_r=0.5, tau_a=0.5))
    tr = out.traces[0]
    curves = fill_curves(tr)
    met = lockstep_metrics(tr)
    assert len(curves["R"]) == met["steps"] == tr.nfe
    assert curves["R"][-1] == 1.0 and curves["A"][-1] == 1.0
    assert all(a <= b for a, b in zip(curves["R"], curves["R"][1:]))
    assert met["commits_r"] == 7 and met["commits_a"] == 3


@pytest.mark.parametrize("sizes", [(1, 1), (3, 9), (12, 2)])
@pytest.mark.parametrize("frac", [0.1, 0.4, 1.0])
@pytest.mark.parametrize("sampler", ["random", "leftright", "pc"])
def test_no_masks_left_over_sizes(tiny_llada, sizes, frac, sampler):
    r, a = sizes
    p = [5, 6] + [MASK] * r + [7] + [MASK] * a
    for mode in ("jacobi", "gauss_seidel"):
        for cache in ("none", "dual"):
            out = generate(tiny_llada, [p, [9] + p], sampler, max_new_tokens=0, use_cache=cache,
                           plan=LockstepPlan([{"R": (2, 2 + r), "A": (3 + r, 3 + r + a)},
                                              {"R": (3, 3 + r), "A": (4 + r, 4 + r + a)}], mode, tau_r=0.2,
                                             tau_a=0.3, max_fill_frac=frac, answer_after=0.5))
            for seq, tr in zip(out.sequences, out.traces):
                assert MASK not in seq
                met = lockstep_metrics(tr)
                assert met["commits_r"] == r and met["commits_a"] == a and met["r_fill_at_a_first"] >= 0.5
                # the cap holds on every commit: at most max(1, floor(frac * remaining))
                left = {"R": r, "A": a}
                for st in tr.steps:
                    assert st.committed <= max(1, math.floor(frac * left[st.region] + 1e-9))
                    left[st.region] -= st.committed


def test_public_api_exports_lockstep_plan():
    import unmask

    assert unmask.LockstepPlan is LockstepPlan


def test_info_gain_nfe_pattern_inside_regions():
    """Hand-checked NFE with R = 8, A = 3 masks that never pass the gate (one fallback commit per
    region per step, 8 steps). Jacobi+confidence: 1 forward per step = 8. Gauss-Seidel+confidence:
    8 + 3 steps in which A also commits = 11. Gauss-Seidel+info_gain: R's winning lookahead is the
    canvas after R's commit, so A reuses it, and A's winning lookahead serves the next step: also 11.
    Jacobi+info_gain: both regions' candidates share one batched lookahead forward: steps 0-2 and 3
    cost 2 (fresh forward + lookahead), 4-6 reuse the previous winner (1), step 7 is R's last mask
    (no lookahead, reused logits: 0) = 11."""
    conf = {p: 0.5 for p in range(1, 12)}
    expect = {("jacobi", "confidence"): 8, ("gauss_seidel", "confidence"): 11,
              ("gauss_seidel", "info_gain"): 11, ("jacobi", "info_gain"): 11}
    for (mode, sampler), nfe in expect.items():
        m = ScriptedModel(static_rule(conf))
        out = generate(m, [[5] + [MASK] * 11], sampler, max_new_tokens=0,
                       plan=LockstepPlan({"R": (1, 9), "A": (9, 12)}, mode))
        tr = out.traces[0]
        assert (tr.nfe, m.calls, lockstep_metrics(tr)["steps"]) == (nfe, nfe, 8), (mode, sampler)
    # Jacobi+info_gain: per-step forwards 2, 2, 2, 2, 1, 1, 1, 0
    assert [s.nfe for s in tr.steps if s.region == "R"] == [2, 4, 6, 8, 9, 10, 11, 11]
