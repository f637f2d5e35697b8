"""The state of one ``generate`` call, in one object.

:class:`Run` is created per call and dropped at its end: the canvas, the rows (a prompt, a best-of
run or a beam each, with its generator, trace and schedule), the active phase (:class:`PhaseState`:
window, mask counts, initial masks), the runner (forwards, cache, accounting) and the trace
records waiting for their host copy. The :class:`~unmask.decoding.engine.Engine` itself keeps only
what is fixed for a model and a sampler, so two calls never share anything.

The bookkeeping the loop reads on the host (masks left per row and region, fill fractions, each
row's schedule) lives here too, with :meth:`Run.commit`, the one place a step's tokens are
written into the canvas and the trace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..samplers.base import Action, StepView
from . import compat as _compat
from .plan import Phase, Region
from .processors import Scratch
from .runner import Runner
from .schedule import block_schedule, fixed_schedule
from .trace import StepRecord, TokenRecord, Trace


@dataclass
class Sched:
    """A scheduled region's per-row step counts and progress."""

    schedule: list[int]
    ptr: int = 0
    deficit: int = 0  # scheduled tokens an earlier step did not commit
    block_steps: int = 0  # the region's step budget (the origin sampler's T)

    def copy(self) -> Sched:
        return Sched(list(self.schedule), self.ptr, self.deficit, self.block_steps)


@dataclass
class Row:
    """Bookkeeping for one canvas row (a prompt, a best-of run, or a beam)."""

    index: int
    group: int  # the prompt this row belongs to
    pad: int
    generator: torch.Generator
    trace: Trace
    sched: dict[int, Sched] = field(default_factory=dict)  # per region of the active phase
    step: int = 0
    done: bool = False
    alive: bool = True  # beams not (yet) in use are not alive
    score: float = 0.0  # cumulative objective (beam search)
    next_logits: torch.Tensor | None = None  # winner's lookahead logits, reused by the next step
    stalled: bool = False  # compat: the reference would stop decoding this block for the row
    #: per region of the phase: (window-local masked positions, their probs, the sampler's
    #: ``Action.state`` for them) of the row's last view, for samplers with ``needs_previous_probs``
    #: (kept on the device)
    prev_probs: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = field(default_factory=dict)


@dataclass
class PhaseState:
    """The active phase: its window ``[ws, we)``, each region's masks left per row (host ints from
    the last count), the masks each region had when the phase began, and for the vectorised
    step the ``[B, W]`` map of every row's span."""

    phase: Phase
    ws: int
    we: int
    named: bool  # some region has a name (lockstep): the trace records regions and fills
    left: dict[int, list[int]] = field(default_factory=dict)  # id(region) -> per row
    initial: dict[tuple[int, int], int] = field(default_factory=dict)  # (row, region index) -> masks
    fast: bool = False  # the vectorised step applies (decoding/batched.py)
    span_all: torch.Tensor | None = None


@dataclass
class Run:
    """Everything one ``generate`` call knows while it runs (see the module docstring)."""

    model: Any
    sampler: Any
    cfg: Any  # GenerationConfig
    runner: Runner
    compat: _compat.CompatOptions
    mask_id: int
    eos_id: int
    stop_ids: list[int]
    prompt_len: int
    x: torch.Tensor  # the canvas [B, T] on the model's device
    am: torch.Tensor  # attention mask [B, T]
    rows: list[Row]
    block_entry: bool = False  # compat block_entry_commit applies
    bc: int = 0  # block length of a block-causal model (0: not one)
    phase: PhaseState | None = None
    global_step: int = 0
    #: token records committed since the last mask count, copied to the host with it
    pending: list = field(default_factory=list)
    bad: list = field(default_factory=list)  # finiteness flags of the current stage's views
    #: the last lookahead's read logits and their entropies (its deferred finiteness check)
    lookahead_read: tuple[torch.Tensor, torch.Tensor | None] | None = None
    scratch: Scratch = field(default_factory=Scratch)  # the vectorised step's reused buffers

    # ------------------------------------------------------------------ mask counts
    def refresh_masks(self, flag: torch.Tensor | None = None) -> bool:
        """Count each row's masks per region of the phase with one device-to-host copy; the loop's
        bookkeeping reads these Python ints (no per-row tensor work or synchronisation). The
        token records of the commits since the last count travel in the same copy, and so does
        ``flag`` (a 0-d bool, e.g. a deferred finiteness check), whose value is returned."""
        x, ph = self.x, self.phase
        masked = x == self.mask_id
        pos = torch.arange(x.shape[1], device=x.device)
        per_region = []
        for reg in ph.phase.regions:
            lo = torch.tensor([s for s, _ in reg.spans], device=x.device)
            hi = torch.tensor([e for _, e in reg.spans], device=x.device)
            per_region.append((masked & (pos >= lo[:, None]) & (pos < hi[:, None])).sum(1))
        counts = torch.stack(per_region)
        pending, self.pending = self.pending, []
        if not pending and flag is None:
            ph.left = {id(reg): c for reg, c in zip(ph.phase.regions, counts.tolist())}  # the one copy
            return False
        # float64 holds the counts and the records (positions, tokens) exactly
        head = [] if flag is None else [flag.to(device=counts.device, dtype=torch.float64).reshape(1)]
        flat = torch.cat([*head, counts.double().reshape(-1), *[p[3].reshape(-1).to(counts.device) for p in pending]])
        host = flat.tolist()
        bad = bool(host[0]) if head else False
        if head:
            host = host[1:]
        b = x.shape[0]
        ph.left = {id(reg): [int(v) for v in host[i * b : (i + 1) * b]] for i, reg in enumerate(ph.phase.regions)}
        at = len(ph.phase.regions) * b
        for tokens, step, pad, packed in pending:
            n = packed.shape[1]
            p_, t_, c_, h_ = (host[at + i * n : at + (i + 1) * n] for i in range(4))
            at += 4 * n
            for p, t, c, h in zip(p_, t_, c_, h_):
                tokens.append(TokenRecord(step=step, position=int(p) - pad, token=int(t), confidence=c, entropy=h))
        return bad

    def masks_in(self, row: int, region: Region, exact: bool = False) -> int:
        """Masks left in ``region`` for canvas row ``row`` (as of the last count unless ``exact``)."""
        if exact:
            rs, re_ = region.spans[row]
            return int((self.x[row, rs:re_] == self.mask_id).sum()) if re_ > rs else 0
        return self.phase.left[id(region)][row]

    def has_masks(self, row: int) -> bool:
        return any(self.masks_in(row, reg) for reg in self.phase.phase.regions)

    def may_commit(self, row: int, region: Region) -> bool:
        """Whether the row has masks in the region and the region's gate is open (``after``)."""
        if not self.masks_in(row, region):
            return False
        after = region.gate.after
        if after is None:
            return True
        regions = self.phase.phase.regions
        other = next((k for k, r in enumerate(regions) if r.name == after[0]), None)
        if other is None:
            return True
        return self.fill(row, other) >= after[1] - 1e-12

    def fills(self, row: int) -> dict[str, float]:
        """Every named region's fill fraction (empty for plain blocks)."""
        return {r.name: round(self.fill(row, k), 6) for k, r in enumerate(self.phase.phase.regions)
                if r.name is not None}

    def fill(self, row: int, k: int) -> float:
        """Fraction of the masks region ``k`` had when the phase began that are now committed."""
        init = self.phase.initial.get((row, k), 0)
        if init == 0:
            return 1.0
        return 1.0 - self.masks_in(row, self.phase.phase.regions[k], exact=True) / init

    def row_schedule(self, n_masks: int, block_steps: int | None) -> list[int]:
        """Per-step counts for a region with ``n_masks`` masks (sums to ``n_masks``)."""
        cfg = self.cfg
        sched = _compat.block_schedule(self.compat, self.sampler, n_masks, block_steps, int(self.block_entry))
        if sched is not None:
            return sched
        if cfg.tokens_per_step is not None:
            return fixed_schedule(n_masks, cfg.tokens_per_step)
        if block_steps is None:
            return fixed_schedule(n_masks, 1)
        return block_schedule(n_masks, block_steps, cfg.schedule)

    # ------------------------------------------------------------------ commit
    def commit(self, row: Row, view: StepView, action: Action, region: Region, rk: int,
               x: torch.Tensor | None = None) -> torch.Tensor:
        """Write the action's tokens into the canvas (``x``, default the run's) and record them in
        the trace (with the region's name and every named region's fill fraction when the plan
        names regions). Returns the tokens written (in position order)."""
        x = self.x if x is None else x
        idx = action.index.to(view.positions.device)
        chosen = action.tokens.to(view.tokens.device) if action.tokens is not None else view.tokens[idx]
        order = torch.argsort(idx)  # tokens of one step are simultaneous: record them by position
        idx, chosen = idx[order], chosen[order]
        pos = view.positions[idx]
        x[row.index, pos] = chosen.to(x.dtype)
        conf = view.probs[idx, chosen.to(idx.device)].double()
        ent = view.entropy[idx].double()
        # the step's token records (positions and tokens are exact in float64) come to the host
        # with the next mask count, one copy for every row (see :meth:`refresh_masks`)
        packed = torch.stack([pos.double(), chosen.to(pos.device).double(), conf, ent])
        self.pending.append((row.trace.tokens, row.step, row.pad, packed))
        info = {k_: v for k_, v in action.info.items() if k_ != "kind"}
        rec = StepRecord(step=row.step, block=self.phase.phase.index, committed=int(idx.numel()),
                         kind=action.info.get("kind", "select"), info=info)
        if region.name is not None:
            rec.region = region.name
            rec.fill = self._fills_on(x, row.index)
            rec.nfe = self.runner.tally.group_nfe[row.group]
            info.update(view.extra)
        row.trace.steps.append(rec)
        sc = row.sched.get(rk)
        if sc is not None:
            if view.k is not None:
                sc.deficit = max(0, view.k - int(idx.numel()))
            sc.ptr += 1
        return chosen

    def _fills_on(self, x: torch.Tensor, row: int) -> dict[str, float]:
        """:meth:`fills` on canvas ``x`` (a beam step writes a new canvas before it replaces the run's)."""
        if x is self.x:
            return self.fills(row)
        saved, self.x = self.x, x
        try:
            return self.fills(row)
        finally:
            self.x = saved
