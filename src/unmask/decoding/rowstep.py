"""The per-row step: one :class:`StepView` per row and region, the sampler's ``select`` (or the
search), and the commit.

This is the general path, for everything the vectorised step (:mod:`unmask.decoding.batched`)
does not take: plans with several or named regions and threshold gates (lockstep), Gauss-Seidel
sweeps, lookahead samplers (Info-Gain, LookUM) and beam search, samplers with previous-step
probabilities (KLASS) or without a vectorised rule (PC, EB, origin...), and every compat mode
(the reference loops' scores, schedules and block-entry commits). Its host work grows with the
rows, but its host syncs do not: each view reads its mask count from the last refresh, the
finiteness flags of a stage come back in one copy, and the trace records travel with the next
mask count.
"""

from __future__ import annotations

from typing import Any

import torch

from ..samplers.base import Action, StepView, entropy_from_logits, top_k_stable
from . import compat as _compat
from .guards import nonfinite, raise_nonfinite
from .hooks import call_logits_hook
from .plan import Region
from .processors import entropy_rows, propose_tokens
from .search import beam_step, decide
from .state import Row, Run


def stage(run: Run, regions: list[Region], live: list[int], committed: set[int]) -> torch.Tensor | None:
    """One forward over the phase window for the rows that may commit in ``regions`` (their gates
    open), then every row and region's decision, committed into the run's canvas. Adds the rows
    that committed to ``committed``; returns the processed logits (None when no row could
    commit)."""
    ph, cfg, rows = run.phase, run.cfg, run.rows
    phase, ws = ph.phase, ph.ws
    open_ = {ri: [reg for reg in regions if run.may_commit(ri, reg)] for ri in live}
    act_list = [ri for ri in live if open_[ri]]
    if not act_list:
        return None
    raw = run.runner.step_logits(run.x, run.am, act_list, ws, ph.we, rows)
    logits = run.runner.process(raw)
    if cfg.logits_hook is not None:
        logits = call_logits_hook(cfg.logits_hook, run.global_step,
                                  run.x[torch.tensor(act_list, device=run.x.device)], logits, ws)
    run.bad = []  # each view's finiteness flag (see guards.nonfinite)
    # the named regions' fill on the canvas these logits saw (lockstep's trace)
    seen = {ri: run.fills(ri) for ri in act_list} if ph.named else {}
    groups = []  # (region, its index, rows deciding there, their views)
    for reg in regions:
        sub = [j for j, ri in enumerate(act_list) if reg in open_[ri]]
        if sub:
            rk = phase.regions.index(reg)
            views = [view(run, rows[act_list[j]], logits[j], reg, rk, seen.get(act_list[j])) for j in sub]
            groups.append((reg, rk, [act_list[j] for j in sub], views))
    flag = torch.stack(run.bad).any() if run.bad else None
    # one sync for every view of the stage; a lookahead sampler's stage defers it to the mask count
    # at its end (its proposals and lookahead run on the device and cannot fail on NaN scores)
    deferred = getattr(run.sampler, "needs_lookahead", False)
    if flag is not None and not deferred and bool(flag):
        raise_nonfinite(logits, cfg.logits_hook is not None)
    if cfg.beam_size > 1:  # plain blocks only: one region per stage
        for reg, rk, ids, views in groups:
            committed.update(beam_step(run, views, ids, reg, rk))
    else:
        regions_done: dict[int, int] = {}
        for (reg, rk, ids, views), actions in zip(groups, decide(run, groups)):
            for v, ri, action in zip(views, ids, actions):
                if run.sampler.needs_previous_probs:
                    rows[ri].prev_probs[rk] = (v.positions - ws, v.probs, action.state)
                capped = cap_to_gate(action, v, reg)
                if capped is not action:  # a lookahead's logits were for the whole action
                    rows[ri].next_logits = None
                chosen = run.commit(rows[ri], v, capped, reg, rk)
                regions_done[ri] = regions_done.get(ri, 0) + 1
                if run.compat.mask_softmax:
                    rows[ri].stalled = stalled(run, rows[ri], chosen, rk)
            committed.update(ids)
        for ri, n in regions_done.items():
            if n > 1:  # a lookahead saw one region's action, not the whole step's
                rows[ri].next_logits = None
    if run.refresh_masks(flag if deferred else None):
        raise_nonfinite(logits, cfg.logits_hook is not None)
    return logits


def view(run: Run, row: Row, logits: torch.Tensor, region: Region, rk: int,
         seen: dict[str, float] | None = None) -> StepView:
    """The row's view of one region: the positions its gate lets through, their predictions,
    and ``k``. ``logits`` cover the phase window starting at canvas index ``ws``."""
    cfg, compat, sampler = run.cfg, run.compat, run.sampler
    ws = run.phase.ws
    r = row.index
    rs, re_ = region.spans[r]
    # the masked positions in order, window-local; their number is known on the host from the
    # last mask count (a stable sort instead of ``nonzero``, which would block on the device)
    n = run.phase.left[id(region)][r]
    open_ = (run.x[r, rs:re_] != run.mask_id).to(torch.int8)
    elig = torch.argsort(open_, stable=True)[:n] + (rs - ws)
    lg = logits[elig]  # [n, V]
    probs = torch.softmax(lg, dim=-1)
    ent = entropy_rows(lg, run.scratch)  # entropy_from_logits, in reused buffers
    run.bad.append(nonfinite(ent))  # NaN/+inf/all -inf at a read position (checked per stage)
    tokens = propose_tokens(lg, cfg.temperature, cfg.top_k, cfg.top_p, row.generator)
    conf = probs.gather(-1, tokens[:, None]).squeeze(-1)
    if compat.active:
        probs, conf, ref_ent = _compat.view_scores(compat, lg, tokens, cfg.temperature, cfg.top_k, cfg.top_p)
        ent = ent if ref_ent is None else ref_ent
    prev = prev_state = None
    if sampler.needs_previous_probs:
        # the row's last view in this block (stored after its action, with the sampler's
        # per-position ``Action.state``), aligned to today's positions on the device
        stored = row.prev_probs.get(rk)
        if stored is not None:
            prev, prev_state = align_previous(stored, elig, logits.shape[0])
    k = None
    extra: dict[str, Any] = {"seen_fill": seen} if seen else {}
    gate = region.gate
    if gate.scheduled:
        sc = row.sched[rk]
        if sampler.uses_schedule:
            # counts not committed earlier (a bypass may commit fewer than k) carry over, and
            # the last scheduled step takes everything left, so no schedule can leave masks
            # (compat with the mask token in the softmax: the reference's last step commits
            # only its quota, leaving any mask it "committed" earlier; see compat.row_stalled)
            if sc.ptr < len(sc.schedule) - 1 or (compat.mask_softmax and sc.ptr < len(sc.schedule)):
                k = sc.schedule[sc.ptr] + sc.deficit
            else:
                k = int(elig.numel())
            if _compat.uses_dream_steps(compat, sampler) and sc.block_steps:
                sc.ptr, k = _compat.dream_step(int(elig.numel()), max(sc.ptr, int(run.block_entry)),
                                               sc.block_steps)
            k = max(1, min(k, int(elig.numel())))
        extra.update({"block_step": sc.ptr, "block_steps": sc.block_steps})
    else:
        remaining = int(elig.numel())
        passed = (conf >= gate.tau).nonzero().squeeze(-1)
        if passed.numel():
            keep = passed
            k = min(int(passed.numel()), gate.cap(remaining))
            extra["gate"] = "threshold"
        else:  # nothing is sure enough: the sampler commits the region's single best position
            keep = torch.arange(remaining, device=conf.device)
            k = 1
            extra["gate"] = "fallback"
        extra["eligible"] = int(passed.numel())
        elig, lg, probs, ent, tokens, conf = elig[keep], lg[keep], probs[keep], ent[keep], tokens[keep], conf[keep]
        prev = None if prev is None else prev[keep]
        prev_state = None if prev_state is None else prev_state[keep]
    gen = row.generator

    def resample() -> torch.Tensor:
        return propose_tokens(lg, cfg.temperature, cfg.top_k, cfg.top_p, gen)

    return StepView(
        logits=lg, probs=probs, positions=elig + ws, tokens=tokens, confidence=conf, entropy=ent, k=k,
        generator=row.generator, step=row.step, block_start=rs, temperature=cfg.temperature,
        resample=resample, extra=extra, previous_probs=prev, previous_state=prev_state,
    )


def cap_to_gate(action: Action, view: StepView, region: Region) -> Action:
    """The action limited to the gate's per-step cap (``view.k``) in a thresholded region.

    A lockstep gate promises at most ``max(1, floor(max_fill_frac * remaining))`` commits per
    step, but samplers that commit every sure position (threshold, factor, KLASS) ignore ``k`` by
    design; in a gated region the gate's promise wins, and the most confident positions stay."""
    if region.gate.scheduled or view.k is None or action.index.numel() <= view.k:
        return action
    keep = top_k_stable(view.confidence[action.index.to(view.confidence.device)], view.k)
    keep = keep.to(action.index.device)
    tokens = None if action.tokens is None else action.tokens[keep.to(action.tokens.device)]
    return Action(action.index[keep], tokens, {**action.info, "capped_from": int(action.index.numel())},
                  action.state)


def align_previous(stored, positions: torch.Tensor, width: int):
    """A row's previous-step probs and sampler state at ``positions`` (window-local), aligned on
    the device without a host sync: a window-sized slot map sends each position to its row in the
    last view; a position that was not in that view (a lockstep gate held it back) gets zeros."""
    p_pos, p_probs, p_state = stored
    slot = torch.full((width,), -1, dtype=torch.long, device=positions.device)
    slot[p_pos] = torch.arange(p_pos.shape[0], device=positions.device)
    j = slot[positions]
    have = j >= 0
    j = j.clamp(min=0)
    probs = p_probs[j] * have[:, None]
    state = None if p_state is None else p_state[j] * have
    return probs, state


def stalled(run: Run, row: Row, chosen: torch.Tensor, rk: int) -> bool:
    """Compat with the mask token in the softmax: a step may "commit" the mask token (a no-op);
    the row stops its block where the reference would (see ``compat.row_stalled``). ``chosen``:
    the tokens the step's commit wrote."""
    real = int((chosen != run.mask_id).sum())
    sc = row.sched[rk]
    return _compat.row_stalled(run.compat, run.sampler, sc.ptr, len(sc.schedule), sc.block_steps,
                               int(chosen.numel()), real)


def entry_commit(run: Run) -> None:
    """Fast-dLLM's Dream block loop (compat ``block_entry_commit``): the refresh forward builds
    the block's cache and commits the block's first token unconditionally; its logits serve
    nothing else (the block's steps all run on the cache)."""
    x, cfg, ph = run.x, run.cfg, run.phase
    s, e = ph.ws, ph.we
    act_list = [r.index for r in run.rows
                if r.alive and not r.done and bool((x[r.index, s:e] == run.mask_id).any())]
    if not act_list:
        return
    raw = run.runner.forward(x, run.am, act_list, s, e)  # refresh: fills the cache
    logits = run.runner.process(raw[:, :1])
    for j, ri in enumerate(act_list):
        row = run.rows[ri]
        if not bool(x[ri, s] == run.mask_id):
            continue
        lg = logits[j]  # [1, V]
        tok = _compat.entry_tokens(lg[0], run.compat, cfg.temperature, cfg.top_k, cfg.top_p, row.generator)
        probs, conf, ent = _compat.view_scores(run.compat, lg, tok[None], cfg.temperature, cfg.top_k, cfg.top_p)
        v = StepView(logits=lg, probs=probs, positions=torch.tensor([s], device=x.device), tokens=tok[None],
                     confidence=conf, entropy=ent if ent is not None else entropy_from_logits(lg), k=None,
                     generator=row.generator, step=row.step, block_start=s, temperature=cfg.temperature)
        run.commit(row, v, Action(torch.tensor([0]), info={"kind": "entry"}), ph.phase.regions[0], -1)
        row.step += 1
