"""Each sampler on a hand-built step: probabilities chosen so the rules disagree."""

import json
import math

import pytest
import torch

from unmask.errors import UnmaskError
from unmask.samplers import StepView, entropy_from_logits, make_sampler
from unmask.samplers.baselines import write_token_frequencies

PROBS = torch.tensor(
    [
        [0.60, 0.20, 0.10, 0.10],  # most confident
        [0.50, 0.50, 0.00, 0.00],  # lowest entropy, zero margin
        [0.58, 0.14, 0.14, 0.14],  # largest margin
        [0.25, 0.25, 0.25, 0.25],  # uniform
    ]
)


def view(k=1, seed=0, probs=PROBS):
    logits = torch.log(probs)
    tokens = probs.argmax(-1)
    return StepView(
        logits=logits, probs=probs, positions=torch.arange(10, 14), tokens=tokens,
        confidence=probs.gather(-1, tokens[:, None]).squeeze(-1), entropy=entropy_from_logits(logits),
        k=k, generator=torch.Generator().manual_seed(seed), block_start=10,
    )


def chosen(name, k=1, **opts):
    return sorted(make_sampler(name, **opts).select(view(k)).index.tolist())


def test_entropy_helper():
    assert math.isclose(float(entropy_from_logits(torch.zeros(7))), math.log(7), rel_tol=1e-6)
    assert math.isclose(float(entropy_from_logits(torch.log(PROBS[1]))), math.log(2), rel_tol=1e-6)


def test_confidence_margin_entropy_leftright():
    assert chosen("confidence") == [0]
    assert chosen("low_confidence", k=2) == [0, 2]
    assert chosen("margin") == [2]
    assert chosen("topk_margin", k=2) == [0, 2]
    assert chosen("entropy") == [1]
    assert chosen("entropy", k=2) == [0, 1]
    assert chosen("leftright", k=2) == [0, 1]


def test_threshold_rule():
    assert chosen("threshold", threshold=0.55) == [0, 2]
    assert chosen("threshold", threshold=0.9) == [0]  # nothing passes: still the top-1
    assert chosen("threshold", threshold=0.2) == [0, 1, 2, 3]


def test_factor_rule():
    # sorted confidences .60 .58 .50 .25: (n+1)(1-c_n) = 0.8, 1.26, 2.0, 3.75
    assert chosen("factor", factor=1.0) == [0]
    assert chosen("factor", factor=1.3) == [0, 2]
    assert chosen("factor", factor=2.0) == [0, 1, 2]


def test_eb_rule():
    # entropies ascending: .693 (pos 1), 1.089 (pos 0), 1.139 (pos 2), 1.386 (pos 3)
    assert chosen("eb", gamma=0.01) == [1]
    assert chosen("eb", gamma=0.8) == [0, 1]
    assert chosen("eb", gamma=10) == [0, 1, 2, 3]


def test_pc_sampler(tmp_path):
    # no frequency file: score = exp(-lambda * offset) * min(-p * log(1e-9), alpha)
    assert chosen("pc", k=2, pc_lambda=0.0, pc_alpha=100.0) == [0, 2]
    assert chosen("pc", k=2, pc_lambda=1.0, pc_alpha=100.0) == [0, 1]

    class Tok:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [int(c) for c in text]}

    path = tmp_path / "freq.json"
    write_token_frequencies(["0000000000000000", "1"], Tok(), path)
    data = json.loads(path.read_text())
    assert data["num_tokens"] == 17 and "token_frequency" in data
    # token 0 is very frequent, so positions proposing token 0 get a low score; pos 1 proposes 0 too
    # (tie broken to argmax index 0), so frequency makes every position cheap except none -> the
    # decay decides: with lambda 0 and a cap that does not bind, p * -log f ranks positions
    s = make_sampler("pc", pc_lambda=0.0, pc_alpha=100.0, pc_freq_file=str(path))
    v = view(k=1, probs=torch.tensor([[0.1, 0.9, 0, 0], [0.9, 0.1, 0, 0], [0.2, 0.8, 0, 0], [0.5, 0.5, 0, 0]]))
    # tokens: 1, 0, 1, 0 ; f(1) = 1/17, f(0) = 16/17 -> pos 0: .9*2.83=2.55, pos 2: .8*2.83=2.27
    assert s.select(v).index.tolist() == [0]


def test_pc_missing_file():
    with pytest.raises(UnmaskError, match="pc-freq"):
        make_sampler("pc", pc_freq_file="/nonexistent/freq.json")


def test_random_is_seeded():
    s = make_sampler("random")
    picks = [tuple(sorted(s.select(view(k=2, seed=seed)).index.tolist())) for seed in range(12)]
    again = [tuple(sorted(s.select(view(k=2, seed=seed)).index.tolist())) for seed in range(12)]
    assert picks == again
    assert len(set(picks)) > 1


def test_bad_sampler_options():
    with pytest.raises(UnmaskError, match="unknown sampler 'nope'"):
        make_sampler("nope")
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(UnmaskError, match=r"threshold must be in \(0, 1\]"):
            make_sampler("threshold", threshold=bad)
