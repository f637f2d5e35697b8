"""The search: lookahead scoring of candidate actions, and beam search over them.

Lookahead samplers (Info-Gain, LookUM) answer a step in two phases: ``propose_many`` gives each
row's candidate actions, the engine scores every candidate of every row and region in as few
forwards as ``max_lookahead_rows`` allows (:func:`lookahead`: each candidate applied to a copy
of its row's canvas, the phase's cache read and never written), then ``choose_many`` picks. The
winner's logits become its row's next logits, so a row's following step costs no forward.
:func:`beam_step` keeps the ``beam_size`` best distinct states per prompt instead. Best-of runs
need no search step: they are independent rows, and the loop keeps the lowest-entropy one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from ..samplers.base import Action, LookaheadResult, StepView
from .config import resolve_hnext_scope
from .guards import check_model_logits, nonfinite, raise_nonfinite
from .plan import Region
from .processors import entropy_rows
from .state import Run


@dataclass
class Child:
    """A beam's candidate successor: its parent slot, the action, the cumulative objective."""

    parent: int
    action: Action
    score: float
    next_logits: torch.Tensor | None


def decide(run: Run, groups) -> list[list[Action]]:
    """Ask the sampler, per group ``(region, index, rows, views)`` of one stage. Lookahead
    samplers answer in two phases so that the candidates of every row and region are scored
    in one batched forward; a row's next logits become its winner's lookahead logits."""
    sampler = run.sampler
    if not getattr(sampler, "needs_lookahead", False):
        return [[sampler.select(v) for v in views] for _, _, _, views in groups]
    flat = sampler.propose_many([v for _, _, _, views in groups for v in views])
    proposals, at = [], 0
    for _, _, _, views in groups:
        proposals.append(flat[at : at + len(views)])
        at += len(views)
    requests, where = [], []
    for g, (reg, _, ids, views) in enumerate(groups):
        for j, p in enumerate(proposals[g]):
            if isinstance(p, list):
                requests.append((ids[j], views[j], p, reg))
                where.append((g, j))
    if not requests:
        return proposals
    results = lookahead(run, requests, sampler.hnext_scope, defer_check=True)
    actions = sampler.choose_many([v for _, v, _, _ in requests], [c for _, _, c, _ in requests], results)
    # the lookahead's finiteness check rides on the objectives' host copy: every entropy it
    # read enters some candidate's J, so a non-finite one shows as a non-finite J
    read, ent_read = run.lookahead_read
    if all("J" in a.info for a in actions):
        bad = not all(math.isfinite(v) for a in actions for v in a.info["J"])
    else:  # a sampler that reports no objectives: ask the device
        bad = ent_read is not None and bool(nonfinite(ent_read))
    if bad:
        check_model_logits(read, "the model (lookahead)")
        raise_nonfinite(read, False)
    for (g, j), (ri, _, _, _), res, action in zip(where, requests, results, actions):
        proposals[g][j] = action
        run.rows[ri].next_logits = res.block_logits(action.info.get("winner", 0))
    return proposals


def lookahead(run: Run, requests, scope: str, defer_check: bool = False) -> list[LookaheadResult]:
    """Score candidate actions ``requests`` (``(row, view, candidates, region)``): apply each to a
    copy of its row's canvas and run the copies in as few forwards as ``max_lookahead_rows``
    allows (cached context reused read-only). Returns, per request, the entropies of the
    predictions at every window position (computed only where H_next reads them; 0 elsewhere),
    which of them are still masked (scope ``block``/``padded``: only masks of the request's
    region), and every candidate's raw logits over the phase window (the winner's become the next
    logits of its row).

    What runs per cache mode (``scope`` resolved by :func:`resolve_hnext_scope`): without a
    cache the whole canvas per candidate; ``prefix`` the window ``[s, T)`` against the prefix
    cache, as the plain step; ``dual`` only the active window ``[s, e)`` against the frozen
    prefix and suffix (an explicit ``hnext_scope="all"`` widens it to ``[s, T)``).
    """
    cfg, runner, x = run.cfg, run.runner, run.x
    s, e = run.phase.ws, run.phase.we
    total = x.shape[1]
    scope = resolve_hnext_scope(scope, cfg.use_cache)
    owner = [ri for ri, _, cands, _ in requests for _ in cands]
    xb = x[torch.tensor(owner, device=x.device)]  # advanced indexing: a fresh copy
    i = 0
    for _, view, cands, _ in requests:
        for c in cands:
            toks = c.tokens if c.tokens is not None else view.tokens[c.index]
            xb[i, view.positions[c.index]] = toks.to(xb.dtype)
            i += 1
    # block-causal models: later blocks cannot be predicted before this one is cached, so
    # H_next covers the active block in both cache modes (cached == uncached)
    window_end = total if (scope == "all" and not runner.block_causal) else e
    chunk = cfg.max_lookahead_rows or len(owner)
    raws = []
    for lo in range(0, len(owner), chunk):
        ids = owner[lo : lo + chunk]
        xs, ams = xb[lo : lo + chunk], run.am[torch.tensor(ids, device=x.device)]
        if cfg.use_cache == "none":
            raws.append(runner.full_predict(xs, ams, ids, s, window_end).logits)
        else:
            raws.append(runner.cached_predict(xs, ams, ids, s, window_end, scope != "all"))
    raw = raws[0] if len(raws) == 1 else torch.cat(raws)
    masked = xb[:, s:window_end] == run.mask_id
    if scope != "all":
        keep = torch.zeros_like(masked)
        j = 0
        for ri, _, cands, region in requests:
            rs, re_ = region.spans[ri]
            keep[j : j + len(cands), rs - s : re_ - s] = True
            j += len(cands)
        masked &= keep
    # full-vocabulary entropies, and the finiteness check, only where they are read: the
    # still-masked positions (the next step reads the winner's logits only there too)
    read = raw[masked]
    ent = torch.zeros(masked.shape, dtype=torch.float32, device=raw.device)
    run.lookahead_read = (read, None)
    if read.shape[0]:
        ent_read = entropy_rows(runner.process(read), run.scratch)  # entropy_from_logits, in reused buffers
        run.lookahead_read = (read, ent_read)
        if not defer_check and bool(nonfinite(ent_read)):
            check_model_logits(read, "the model (lookahead)")
            raise_nonfinite(read, False)
        ent[masked] = ent_read
    outside = None
    if scope == "padded":  # the seeds' dual cache: each mask outside the window counts ln V
        outside = (xb == run.mask_id).sum(1) - masked.sum(1)
    results, i = [], 0
    for _, _, cands, _ in requests:
        m = len(cands)
        results.append(LookaheadResult(
            entropy=ent[i : i + m], masked=masked[i : i + m], raw_block_logits=raw[i : i + m, : e - s],
            outside_masks=None if outside is None else outside[i : i + m],
            outside_entropy=math.log(raw.shape[-1])))
        i += m
    return results


def beam_step(run: Run, views: list[StepView], act_list: list[int], region: Region, rk: int) -> list[int]:
    """Beam search step: expand every live beam with its candidates (all lookaheads batched),
    keep the ``beam_size`` best distinct states per prompt by cumulative objective. Replaces the
    run's canvas; returns the rows (beam slots) that committed."""
    sampler, rows, x = run.sampler, run.rows, run.x
    proposals = sampler.propose_many(views)
    pending = [j for j, p in enumerate(proposals) if isinstance(p, list)]
    requests = [(act_list[j], views[j], proposals[j], region) for j in pending]
    results = lookahead(run, requests, sampler.hnext_scope) if requests else []
    res_of = {j: r for j, r in zip(pending, results)}
    children: dict[int, list[Child]] = {}
    for j, ri in enumerate(act_list):
        row = rows[ri]
        prop = proposals[j]
        if isinstance(prop, list):
            res = res_of[j]
            scores = sampler.objective(views[j], prop, res).tolist()
            for c, (cand, val) in enumerate(zip(prop, scores)):
                act = Action(cand.index, cand.tokens, info={"kind": "lookahead", "winner": c,
                                                            "J": [round(v, 6) for v in scores],
                                                            "objective": val})
                children.setdefault(row.group, []).append(
                    Child(ri, act, row.score + float(val), res.block_logits(c)))
        else:
            val = sampler.step_objective(views[j], prop)
            prop.info["objective"] = val
            children.setdefault(row.group, []).append(Child(ri, prop, row.score + val, None))
    new_x = x.clone()
    snapshot = {ri: (rows[ri].trace, rows[ri].generator.get_state(), rows[ri].step,
                     {k_: v.copy() for k_, v in rows[ri].sched.items()}) for ri in act_list}
    committed: list[int] = []
    view_of = dict(zip(act_list, views))
    cache = run.runner.cache
    old_map = cache.get("map", {})
    cmap = dict(old_map)
    for g, kids in children.items():
        kids.sort(key=lambda c: -c.score)  # stable: earlier beams and candidate 0 win ties
        slots = [r.index for r in rows if r.group == g and not r.done]
        chosen, seen = [], set()
        for c in kids:
            xc = x[c.parent].clone()
            view = view_of[c.parent]
            toks = c.action.tokens if c.action.tokens is not None else view.tokens[c.action.index]
            xc[view.positions[c.action.index]] = toks.to(xc.dtype)
            key = tuple(xc.tolist())
            if key in seen:
                continue
            seen.add(key)
            chosen.append(c)
            if len(chosen) == len(slots):
                break
        for slot, c in zip(slots, chosen):
            trace, gstate, step, sched = snapshot[c.parent]
            row = rows[slot]
            new_x[slot] = x[c.parent]
            row.trace = replace(trace, tokens=list(trace.tokens), steps=list(trace.steps),
                                regions=dict(trace.regions))
            row.generator = torch.Generator().manual_seed(0)
            row.generator.set_state(gstate)
            row.step, row.sched = step, {k_: v.copy() for k_, v in sched.items()}
            row.score, row.alive = c.score, True
            row.next_logits = c.next_logits
            if c.parent in old_map:
                cmap[slot] = old_map[c.parent]
            run.commit(row, view_of[c.parent], c.action, region, rk, x=new_x)
            committed.append(slot)
        for slot in slots[len(chosen):]:
            rows[slot].alive = False
    if "map" in cache:
        cache["map"] = cmap
    run.x = new_x
    return committed
