"""KLASS on hand-made probability sequences whose stable sets were worked out by hand, and the
engine's previous-step plumbing on a tiny model."""

import math

import pytest
import torch

from unmask.decoding.engine import Engine, GenerationConfig, generate
from unmask.errors import UnmaskError
from unmask.samplers import StepView, entropy_from_logits, make_sampler
from unmask.samplers.klass import KlassSampler, kl_to_previous


def view(probs, previous=None, state=None, k=1):
    probs = torch.tensor(probs, dtype=torch.float32)
    tokens = probs.argmax(-1)
    logits = torch.log(probs)
    return StepView(
        logits=logits, probs=probs, positions=torch.arange(20, 20 + probs.shape[0]), tokens=tokens,
        confidence=probs.gather(-1, tokens[:, None]).squeeze(-1), entropy=entropy_from_logits(logits), k=k,
        generator=torch.Generator().manual_seed(0), block_start=20,
        previous_probs=None if previous is None else torch.tensor(previous, dtype=torch.float32),
        previous_state=state,
    )


# three positions (a, b, c) over four steps, vocabulary of 4
A0 = [0.95, 0.03, 0.01, 0.01]
A2 = [0.96, 0.02, 0.01, 0.01]  # KL(A2 || A0) = .96 ln(.96/.95) + .02 ln(.02/.03) = 0.001943
B0 = [0.40, 0.30, 0.20, 0.10]
B1 = [0.92, 0.04, 0.02, 0.02]  # far from B0
B2 = [0.93, 0.03, 0.02, 0.02]  # KL(B2 || B1) = .93 ln(.93/.92) + .03 ln(.03/.04) = 0.001424
C0 = [0.60, 0.20, 0.10, 0.10]  # stable throughout steps 0-2 but never confident
C3 = [0.30, 0.50, 0.10, 0.10]  # KL(C3 || C0) = .3 ln(.3/.6) + .5 ln(.5/.2) = 0.2502
STEPS = [[A0, B0, C0], [A0, B1, C0], [A2, B2, C0], [A2, B2, C3]]


def run(sampler, steps=STEPS):
    """Feed the steps as the engine would: each view carries the previous step's probs and the
    previous action's state. Returns (chosen indices, kind, state) per step."""
    prev, state, out = None, None, []
    for probs in steps:
        action = sampler.select(view(probs, prev, state))
        out.append((action.index.tolist(), action.info["kind"], action.state.tolist()))
        prev, state = probs, action.state
    return out


def test_kl_direction_and_epsilon():
    p, q = torch.tensor([[0.5, 0.5]]), torch.tensor([[0.9, 0.1]])
    want = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)  # KL(p || q), not KL(q || p)
    assert float(kl_to_previous(p, q)) == pytest.approx(want, abs=1e-6)
    assert float(kl_to_previous(q, p)) != pytest.approx(want, abs=1e-3)
    assert float(kl_to_previous(torch.tensor([A2]), torch.tensor([A0]))) == pytest.approx(0.001943, abs=2e-6)
    # no previous prediction (a zero row): ln(1e12) - H(p), far above any threshold
    u = torch.full((1, 4), 0.25)
    assert float(kl_to_previous(u, torch.zeros(1, 4))) == pytest.approx(math.log(1e12) - math.log(4), rel=1e-5)


def test_history_two_by_hand():
    # step 0: no previous step -> streaks 0 -> fallback, top-1 confidence (a, .95)
    # step 1: a unchanged (streak 1), b jumped (0), c unchanged (1): nobody has 2 -> fallback a
    # step 2: a KL .0019 (2, conf .96: ready), b KL .0014 (1), c (2, conf .6: not confident) -> {a}
    # step 3: a (3), b (2, conf .93: ready), c KL .25 (0) -> {a, b}
    got = run(KlassSampler(threshold=0.9, kl_threshold=0.01, kl_history=2))
    assert got == [
        ([0], "klass_fallback", [0.0, 0.0, 0.0]),
        ([0], "klass_fallback", [1.0, 0.0, 1.0]),
        ([0], "klass", [2.0, 1.0, 2.0]),
        ([0, 1], "klass", [3.0, 2.0, 0.0]),
    ]


def test_history_one_and_thresholds_by_hand():
    # one stable step suffices: a is ready at step 1 already, b (KL .0014 < .01) at step 2
    got = run(KlassSampler(threshold=0.9, kl_threshold=0.01, kl_history=1))
    assert [g[0] for g in got] == [[0], [0], [0, 1], [0, 1]]
    # kl_threshold .001 is below both KLs above: only unchanged distributions (KL 0) are stable,
    # so step 2 falls back (a .96) and step 3 takes a and b (both unchanged)
    got = run(KlassSampler(threshold=0.9, kl_threshold=0.001, kl_history=1))
    assert [g[0] for g in got] == [[0], [0], [0], [0, 1]]
    # a confidence threshold of .5 lets c in whenever it is stable
    got = run(KlassSampler(threshold=0.5, kl_threshold=0.01, kl_history=2))
    assert [g[0] for g in got] == [[0], [0], [0, 2], [0, 1]]


def test_fallback_takes_the_schedules_k():
    s = KlassSampler()
    assert s.select(view([A0, B1, C0], k=2)).index.tolist() == [0, 1]
    assert s.select(view([A0, B1, C0], k=None)).index.tolist() == [0, 1, 2]


def test_options_are_checked():
    assert make_sampler("klass", kl_threshold=0.001, kl_history=3).config() == {
        "sampler": "klass", "threshold": 0.9, "kl_threshold": 0.001, "kl_history": 3}
    for bad in ({"kl_threshold": 0.0}, {"kl_threshold": float("nan")}, {"kl_history": 0}, {"kl_history": 1.5},
                {"threshold": 1.5}):
        with pytest.raises(UnmaskError):
            make_sampler("klass", **bad)


class Recorder(KlassSampler):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.seen = []

    def select(self, view):
        action = super().select(view)
        self.seen.append((view, action))
        return action


def test_engine_hands_the_previous_step_aligned(tiny_llada):
    rec = Recorder()
    cfg = GenerationConfig(max_new_tokens=8, block_size=4, steps=8, stop_at_eos=False)
    Engine(tiny_llada, rec).generate([[3, 9, 10]], cfg)
    assert len(rec.seen) == 8  # one token per step with these thresholds on a random model
    for i, (v, _) in enumerate(rec.seen):
        before = rec.seen[i - 1] if i else None
        if before is None or before[0].block_start != v.block_start:  # a block's first step
            assert v.previous_probs is None and v.previous_state is None
            continue
        pv, pa = before
        where = {p: j for j, p in enumerate(pv.positions.tolist())}
        assert set(v.positions.tolist()) <= set(where)
        for j, p in enumerate(v.positions.tolist()):
            assert torch.equal(v.previous_probs[j], pv.probs[where[p]])
            assert float(v.previous_state[j]) == float(pa.state[where[p]])


def test_everything_stable_commits_a_block_in_two_forwards(tiny_llada):
    # threshold ~0 and a huge KL threshold: the first step of a block has no KL (fallback, one
    # token), the second finds every remaining mask stable and confident
    out = generate(tiny_llada, [[3, 9, 10]], "klass", threshold=1e-6, kl_threshold=1e6, kl_history=1,
                   max_new_tokens=12, block_size=4, steps=12, stop_at_eos=False)
    assert out.traces[0].nfe == 3 * 2
    kinds = [s.kind for s in out.traces[0].steps]
    assert kinds == ["klass_fallback", "klass"] * 3
    out = generate(tiny_llada, [[3, 9, 10]], "confidence", max_new_tokens=12, block_size=4, steps=12,
                   stop_at_eos=False)
    assert out.traces[0].nfe == 12
