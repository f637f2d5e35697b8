"""The plan abstraction: phases of regions with gates, decoded by the engine."""

from __future__ import annotations

import pytest
import torch

from unmask.decoding.engine import GenerationConfig, generate
from unmask.decoding.plan import BlockPlanner, Gate, Layout, Phase, Region, block_phases
from unmask.errors import UnmaskError

MASK = 1


def _layout(prompts, max_new):
    plen = max(len(p) for p in prompts)
    x = torch.zeros((len(prompts), plen + max_new), dtype=torch.long)
    pads = []
    for r, p in enumerate(prompts):
        x[r, plen - len(p) : plen] = torch.tensor(p)
        pads.append(plen - len(p))
    x[:, plen:] = MASK
    return Layout(x=x, pads=pads, groups=list(range(len(prompts))), prompt_len=plen, mask_id=MASK)


def test_block_phases_match_semi_ar_blocks():
    lay = _layout([[5, MASK, 6], [7, 8, 9, MASK]], 10)
    phases = block_phases(lay, GenerationConfig(max_new_tokens=10, block_size=4, steps=7))
    spans = [ph.regions[0].spans[0] for ph in phases]
    assert spans == [(2, 4), (4, 8), (8, 12), (12, 14)]  # prompt masks from the batch's first one
    assert [ph.regions[0].steps for ph in phases] == [2, 2, 2, 1]
    assert all(ph.regions[0].gate.scheduled and ph.regions[0].name is None for ph in phases)
    assert [ph.index for ph in phases] == [0, 1, 2, 3]


def test_gate_cap():
    g = Gate(tau=0.9, max_fill_frac=0.4)
    assert [g.cap(n) for n in (1, 2, 3, 5, 10, 11)] == [1, 1, 1, 2, 4, 4]
    assert Gate().cap(7) == 7


class TwoRegions:
    """A custom planner: the generation region split in two named halves, one phase."""

    def __init__(self, sweep: str, tau: float = 1.0) -> None:
        self.sweep, self.tau = sweep, tau

    def check(self, cfg, sampler):
        return None

    def config(self):
        return {"plan": "two", "sweep": self.sweep}

    def plan(self, layout: Layout, cfg):
        p, t = layout.prompt_len, layout.total
        mid = (p + t) // 2
        n = layout.rows
        gate = Gate(tau=self.tau, max_fill_frac=1.0)
        return [Phase([Region([(p, mid)] * n, gate, name="L"), Region([(mid, t)] * n, gate, name="Q")],
                      sweep=self.sweep)]


@pytest.mark.parametrize("cache", ["none", "prefix", "dual"])
def test_custom_two_region_plan_nfe(tiny_llada, cache):
    # tau=1.0: nothing passes, so each region commits its single best position per step
    prompts = [[5, 6, 7], [8, 9]]
    jac = generate(tiny_llada, prompts, "confidence", max_new_tokens=6, plan=TwoRegions("jacobi"), use_cache=cache)
    gs = generate(tiny_llada, prompts, "confidence", max_new_tokens=6, plan=TwoRegions("gauss_seidel"),
                  use_cache=cache)
    for out in (jac, gs):
        assert all(MASK not in s for s in out.sequences)
    # 3 steps of one commit per region; Jacobi: one forward per step, Gauss-Seidel two
    assert [t.nfe for t in jac.traces] == [3, 3]
    assert [t.nfe for t in gs.traces] == [6, 6]
    tr = gs.traces[0]
    assert [(s.step, s.region) for s in tr.steps] == [(0, "L"), (0, "Q"), (1, "L"), (1, "Q"), (2, "L"), (2, "Q")]
    assert tr.steps[-1].fill == {"L": 1.0, "Q": 1.0}
    assert tr.regions == {"L": [3, 6], "Q": [6, 9]}
    assert gs.traces[1].regions == {"L": [2, 5], "Q": [5, 8]}  # row-local: padding excluded
    for i, p in enumerate(prompts):
        alone = generate(tiny_llada, [p], "confidence", max_new_tokens=6, plan=TwoRegions("gauss_seidel"),
                         use_cache=cache)
        assert alone.sequences[0] == gs.sequences[i]


def test_default_plan_is_block_planner(tiny_llada):
    a = generate(tiny_llada, [[5, 6, 7]], "confidence", max_new_tokens=6, block_size=3)
    b = generate(tiny_llada, [[5, 6, 7]], "confidence", max_new_tokens=6, block_size=3, plan=BlockPlanner())
    assert a.sequences == b.sequences and a.traces[0].nfe == b.traces[0].nfe


def test_closed_gates_raise(tiny_llada):
    class Stuck(TwoRegions):
        def plan(self, layout, cfg):
            phases = super().plan(layout, cfg)
            for r, other in zip(phases[0].regions, ("Q", "L")):
                r.gate = Gate(tau=0.5, after=(other, 0.5))
            return phases

    with pytest.raises(UnmaskError, match="no progress"):
        generate(tiny_llada, [[5, 6]], "confidence", max_new_tokens=4, plan=Stuck("jacobi"))
