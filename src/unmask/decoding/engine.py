"""The decoding loop: one generation, phase by phase and step by step.

The engine owns everything a sampler must not care about: left padding, blocks, the step
schedule, KV caches, logit processors, hooks and stopping. One generation:

1. Canvas ``[B, T]``: left padding, the prompt (which may itself contain mask tokens, e.g. a
   Sudoku), then ``max_new_tokens`` masks.
2. Plan (:mod:`unmask.decoding.plan`): a list of phases, each a group of regions with a gate. By
   default an optional leading block over the masks inside the prompt, then ``block_size`` chunks
   of the generation region (semi-autoregressive decoding), decoded in order; lockstep decoding
   is one phase with a reasoning and an answer region.
3. Per phase, each row gets, for every scheduled region, a list of per-step counts (see
   :mod:`unmask.decoding.schedule`) that sums to its number of masks there, so no combination of
   settings can leave masks behind; threshold gates always commit at least one position.
4. Per step, the rows that may still commit take one step: the vectorised step
   (:mod:`unmask.decoding.batched`) when the phase and sampler allow it, else the per-row step
   (:mod:`unmask.decoding.rowstep`), one stage per forward (all regions at once, or one after
   another for a Gauss-Seidel sweep), with the search (:mod:`unmask.decoding.search`) for
   lookahead samplers and beams. Then the tokens hook and the stop rules.

The package by responsibility: :mod:`~unmask.decoding.config` (settings and output),
:mod:`~unmask.decoding.processors` (logits processing and token proposal),
:mod:`~unmask.decoding.runner` (forwards, caches, forward accounting),
:mod:`~unmask.decoding.search` (lookahead, beam), :mod:`~unmask.decoding.state` (the per-call
state, :class:`~unmask.decoding.state.Run`), and this loop. The :class:`Engine` keeps only what
is fixed for its model and sampler; everything a call changes lives in its ``Run``.

Randomness: each row owns a ``torch.Generator`` seeded with the row's seed (by default the same
seed for every row). A row's tokens therefore depend only on its prompt, its seed and the config,
never on the other rows of the batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from ..errors import UnmaskError
from ..samplers.base import Sampler
from . import batched as _batched
from . import block_causal as bcm
from . import compat as _compat
from .config import CACHE_MODES, GenerationConfig, GenerationOutput, resolve_hnext_scope, row_seeds
from .guards import check_token_ids
from .hooks import call_tokens_hook, dream_hook_aliases
from .plan import BlockPlanner, Layout, Phase
from .processors import default_processors, filter_logits, propose_tokens
from .rowstep import entry_commit, stage
from .runner import Runner
from .state import PhaseState, Row, Run, Sched
from .stopping import handle_stops
from .trace import Trace

__all__ = ["CACHE_MODES", "Engine", "GenerationConfig", "GenerationOutput", "filter_logits", "generate",
           "propose_tokens", "resolve_hnext_scope"]


class Engine:
    """Runs generations for one model with one sampler. Holds nothing between calls: each call's
    state is a fresh :class:`~unmask.decoding.state.Run`."""

    def __init__(self, model: torch.nn.Module, sampler: Sampler) -> None:
        self.model = model
        self.sampler = sampler
        cfg = model.config
        self.mask_id = int(cfg.mask_token_id)
        pad = getattr(cfg, "pad_token_id", None)
        self.pad_id = int(pad if pad is not None else cfg.eos_token_id)
        self.eos_id = int(cfg.eos_token_id)
        self.max_len = int(getattr(cfg, "max_sequence_length", 0) or 0)
        self.block_causal = bcm.is_block_causal(model)
        #: logits processors applied after the config's own (e.g. a model family's vocabulary slice)
        self.extra_processors: list = []

    @torch.no_grad()
    def generate(self, prompts: Sequence[Sequence[int]], cfg: GenerationConfig) -> GenerationOutput:
        cfg.validate()
        if cfg.compile:
            from .compiled import compiled_forward

            with compiled_forward(self.model):
                return self.generate(prompts, replace(cfg, compile=False))
        compat = _compat.resolve(cfg.compat, self.model)
        top_k = _compat.effective_top_k(compat, cfg.top_k)
        if top_k != cfg.top_k:
            cfg = replace(cfg, top_k=top_k)
        adapted = _compat.adapt_sampler(self.sampler, compat)
        if adapted is not self.sampler:
            other = Engine(self.model, adapted)
            other.extra_processors = self.extra_processors
            return other.generate(prompts, cfg)
        if len(prompts) == 0:
            raise UnmaskError("no prompts given")
        if cfg.beam_size > 1 and not getattr(self.sampler, "needs_lookahead", False):
            raise UnmaskError(f"beam_size > 1 needs a lookahead sampler (info_gain, lookum), not {self.sampler.name}")
        if self.block_causal:
            if cfg.plan is not None:
                raise UnmaskError("block-causal models (SDAR/TraDo) decode on their own block grid; drop the custom plan")
            groups = bcm.phase_groups(prompts, bcm.block_length_of(self.model, cfg.block_size))
            if len(groups) > 1:  # rows share the block grid (and one exact cache) only within a phase
                return self._generate_phases(prompts, cfg, groups)
        run, phases = self._start(prompts, cfg, compat)
        t0 = time.perf_counter()
        decode(run, phases)
        return self._finish(run, prompts, time.perf_counter() - t0)

    # ------------------------------------------------------------------ setup
    def _start(self, prompts: Sequence[Sequence[int]], cfg: GenerationConfig,
               compat: _compat.CompatOptions) -> tuple[Run, list[Phase]]:
        """Check the call, build the canvas and its rows, the runner and the plan."""
        lengths = [len(p) for p in prompts]
        prompt_len = max(lengths)
        max_new = cfg.max_new_tokens
        bc = 0  # block length of a block-causal model (0: not one)
        if self.block_causal:
            bc = bcm.block_length_of(self.model, cfg.block_size)
            if max_new:  # whole blocks, as the reference (an infilling canvas keeps its length)
                max_new = bcm.grid_new_tokens(prompt_len, max_new, bc)
        total = prompt_len + max_new
        if self.max_len and total > self.max_len:
            raise UnmaskError(
                f"prompt ({prompt_len} tokens) + max_new_tokens ({cfg.max_new_tokens}) = {total} exceeds the "
                f"model's context of {self.max_len} tokens; shorten the prompt or lower --max_new_tokens"
            )
        if getattr(self.model, "shift_logits", False) and min(lengths) == 0:
            raise UnmaskError("this model predicts each token from the one before it: the prompt must not be empty")
        stop_ids = list(cfg.stop_token_ids) if cfg.stop_token_ids is not None else [self.eos_id]
        check_token_ids(self.model, {"mask_token_id": [self.mask_id], "eos_token_id": [self.eos_id],
                                     "pad_token_id": [self.pad_id], "stop_token_ids": stop_ids,
                                     "suppress_token_ids": list(cfg.suppress_token_ids),
                                     "prompt token ids": sorted({int(t) for p in prompts for t in p})})
        seeds = row_seeds(cfg.seed, len(prompts))

        # rows: one per prompt, or best_of runs / beam_size beams per prompt
        per = max(cfg.beam_size, cfg.best_of)
        b = len(prompts) * per
        x = torch.full((b, total), self.pad_id, dtype=torch.long)
        am = torch.zeros((b, total), dtype=torch.long)
        rows: list[Row] = []
        for g, p in enumerate(prompts):
            for j in range(per):
                r = g * per + j
                if len(p):
                    x[r, prompt_len - len(p) : prompt_len] = torch.tensor(list(p), dtype=torch.long)
                am[r, prompt_len - len(p) :] = 1
                seed = seeds[g] + (j if cfg.best_of > 1 else 0)
                rows.append(Row(index=r, group=g, pad=prompt_len - len(p),
                                generator=torch.Generator().manual_seed(seed),
                                trace=Trace(prompt_length=len(p), max_new_tokens=cfg.max_new_tokens),
                                alive=(j == 0 or cfg.beam_size == 1)))
        x[:, prompt_len:] = self.mask_id
        # the setup reads the prompts (Python lists) and the canvas while it is still on the host
        if not max_new and not any(self.mask_id in p for p in prompts):
            raise UnmaskError("nothing to decode: max_new_tokens is 0 and the prompt has no mask tokens")
        for row in rows:
            row.trace.initial_tokens = [int(t) for t in prompts[row.group]] + [self.mask_id] * max_new
        planner = bcm.AlignedBlockPlanner(bc) if bc else (cfg.plan or BlockPlanner())
        planner.check(cfg, self.sampler)
        layout = Layout(x=x.clone(), pads=[r.pad for r in rows], groups=[r.group for r in rows],
                        prompt_len=prompt_len, mask_id=self.mask_id)
        phases = planner.plan(layout, cfg)
        for phase in phases:
            for reg in phase.regions:
                if reg.name is not None:
                    for row in rows:
                        s_, e_ = reg.spans[row.index]
                        row.trace.regions[reg.name] = [s_ - row.pad, e_ - row.pad]

        block_entry = _compat.uses_block_entry(compat, self.model, cfg.use_cache)
        processors = default_processors(cfg, self.mask_id, stop_ids, keep_mask=compat.mask_softmax)
        runner = Runner(self.model, row_groups=[r.group for r in rows],
                        processors=processors + self.extra_processors, block_causal=self.block_causal,
                        predict_kw={"block_length": bc} if bc else {}, pad_free=min(lengths) == prompt_len,
                        block_entry=block_entry, use_cache=cfg.use_cache)
        device = self.model.device
        run = Run(model=self.model, sampler=self.sampler, cfg=cfg, runner=runner, compat=compat,
                  mask_id=self.mask_id, eos_id=self.eos_id, stop_ids=stop_ids, prompt_len=prompt_len,
                  x=x.to(device), am=am.to(device), rows=rows, block_entry=block_entry, bc=bc)
        if cfg.tokens_hook is not None:
            run.x = call_tokens_hook(cfg.tokens_hook, None, run.x, None, 0)
        return run, phases

    # ------------------------------------------------------------------ output
    def _finish(self, run: Run, prompts: Sequence[Sequence[int]], seconds: float) -> GenerationOutput:
        """Each prompt's best row (the beam with the best score, the best-of run with the lowest
        cumulative entropy, or its only row), with one host copy of the final canvas."""
        cfg, tally, prompt_len = run.cfg, run.runner.tally, run.prompt_len
        x_host = run.x.tolist()  # the call's one copy of the final canvas
        sequences, generated, traces = [], [], []
        for g in range(len(prompts)):
            group = [r for r in run.rows if r.group == g and r.alive]
            if cfg.beam_size > 1:
                best = max(group, key=lambda r: (r.score, -r.index))
            elif cfg.best_of > 1:
                best = min(group, key=lambda r: (r.trace.cumulative_entropy, r.index))
            else:
                best = group[0]
            seq = x_host[best.index][best.pad :]
            gen = x_host[best.index][prompt_len:]
            cut = next((i for i, t in enumerate(gen) if t in run.stop_ids), len(gen))
            sequences.append(seq)
            generated.append(gen[:cut])
            best.trace.final_tokens = seq
            best.trace.nfe = tally.group_nfe[g]
            best.trace.forward_rows = tally.group_rows[g]
            best.trace.forward_tokens = tally.group_tokens[g]
            traces.append(best.trace)
        return GenerationOutput(
            sequences=sequences, generated=generated, traces=traces, nfe=tally.nfe,
            forward_rows=tally.forward_rows, seconds=seconds, prompt_lengths=[len(p) for p in prompts],
            forward_tokens=tally.forward_tokens,
        )

    def _generate_phases(self, prompts, cfg: GenerationConfig, groups: list[list[int]]) -> GenerationOutput:
        """A block-causal batch whose prompt lengths differ modulo the block length: decode one
        sub-batch per phase (each prompt keeps its seed) and put the results back in order."""
        seeds = row_seeds(cfg.seed, len(prompts))
        outs = [self.generate([prompts[i] for i in group], replace(cfg, seed=[seeds[i] for i in group]))
                for group in groups]
        slot = {i: (gi, j) for gi, group in enumerate(groups) for j, i in enumerate(group)}
        pick = [slot[i] for i in range(len(prompts))]
        return GenerationOutput(
            sequences=[outs[g].sequences[j] for g, j in pick],
            generated=[outs[g].generated[j] for g, j in pick],
            traces=[outs[g].traces[j] for g, j in pick],
            nfe=sum(o.nfe for o in outs),
            forward_rows=sum(o.forward_rows for o in outs),
            forward_tokens=sum(o.forward_tokens for o in outs),
            seconds=sum(o.seconds for o in outs),
            prompt_lengths=[len(p) for p in prompts],
        )


# ---------------------------------------------------------------------- the loop
def decode(run: Run, phases: list[Phase]) -> None:
    """Decode every phase in order; each phase steps until no row may commit in it."""
    exact = None  # block-causal models: exact K/V of every finished block (positions [0, ws))
    if run.bc and run.cfg.use_cache != "none":
        exact = run.runner.prefill(run.x, run.am, phases[0].window()[0])  # the prompt
    for phase in phases:
        if run.bc and all(r.done or not r.alive for r in run.rows):
            break
        begin_phase(run, phase, exact)
        while True:
            live = [r.index for r in run.rows
                    if r.alive and not r.done and not r.stalled and run.has_masks(r.index)]
            if not live:
                break
            if run.phase.fast:
                _batched.step(run, live)  # the vectorised step: one host copy
            else:
                row_step(run, live)
            run.global_step += 1
        if exact is not None and run.phase.we < run.x.shape[1]:  # append the finished block
            exact = run.runner.extend_cache(run.x, run.am, run.phase.ws, run.phase.we)
    if run.pending:  # every commit is followed by a mask count; this is a safety net
        run.refresh_masks()


def begin_phase(run: Run, phase: Phase, exact=None) -> None:
    """Enter a phase: its cache (block-causal models: the exact one so far), the block-entry
    commit of compat mode, the mask counts and every row's schedule per region."""
    ws, we = phase.window()
    rows = run.rows
    named = any(reg.name is not None for reg in phase.regions)
    run.phase = PhaseState(phase=phase, ws=ws, we=we, named=named)
    cache: dict[str, Any] = {}
    if exact is not None:
        cache = {"cache": exact, "map": {r: r for r in range(len(rows))}}
    run.runner.begin_phase({row.index: phase.row_window(row.index) for row in rows}, cache)
    if run.block_entry:
        entry_commit(run)
    run.refresh_masks()
    run.phase.initial = {(row.index, k): run.masks_in(row.index, reg)
                         for row in rows for k, reg in enumerate(phase.regions)}
    run.phase.fast = _batched.eligible_for(run, phase)
    if run.phase.fast:
        run.phase.span_all = _batched._spans(phase, list(range(len(rows))), ws, we, run.x.device)
    for row in rows:
        row.sched = {}
        for k, reg in enumerate(phase.regions):
            if reg.gate.scheduled:
                n_in = run.masks_in(row.index, reg)
                if run.bc and run.cfg.tokens_per_step is None:  # the reference's quotas of a full block
                    sched = bcm.transfer_quotas(n_in, run.bc, reg.steps)
                else:
                    sched = run.row_schedule(n_in, reg.steps)
                row.sched[k] = Sched(sched, block_steps=reg.steps or len(sched))
        row.next_logits = None
        row.stalled = False
        row.prev_probs = {}


def row_step(run: Run, live: list[int]) -> None:
    """One step on the per-row path: every stage's forward and decisions, then the tokens hook
    and the stop rules."""
    cfg, rows, phase = run.cfg, run.rows, run.phase.phase
    committed: set[int] = set()
    logits = None
    for regions in phase.stages():  # all regions at once (Jacobi) or one by one (Gauss-Seidel)
        stage_logits = stage(run, regions, live, committed)
        if stage_logits is not None:
            logits = stage_logits  # the last forward's, for the tokens hook
    if not committed:  # only a plan whose gates wait on each other can get here
        raise UnmaskError("the decoding plan made no progress: every region's gate is closed")
    for ri in committed:
        rows[ri].step += 1
        if not run.has_masks(ri):
            rows[ri].next_logits = None
    if cfg.tokens_hook is not None:
        before = run.x.clone()
        run.x = call_tokens_hook(cfg.tokens_hook, run.global_step, run.x, logits, run.phase.ws)
        # a row whose canvas the hook changed must not reuse its lookahead logits; a hook that
        # only watches (live view, server streaming) costs no extra forward
        # (call_tokens_hook refuses a canvas of another shape)
        changed = (run.x != before).any(1).tolist()
        for row in rows:
            if changed[row.index]:
                row.next_logits = None
    if handle_stops(run) or cfg.tokens_hook is not None:
        run.refresh_masks()  # a hook or a stop may have changed the canvas


def generate(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    sampler: Sampler | str = "confidence",
    config: GenerationConfig | None = None,
    **overrides: Any,
) -> GenerationOutput:
    """Decode a batch of token-id prompts. ``overrides`` set :class:`GenerationConfig` fields;
    sampler options (e.g. ``threshold``) may be given too when ``sampler`` is a name. Dream's
    hook keywords ``generation_logits_hook_func`` / ``generation_tokens_hook_func`` are accepted
    as aliases of ``logits_hook`` / ``tokens_hook`` (see :mod:`unmask.decoding.hooks`)."""
    from ..samplers.base import all_sampler_options, make_sampler

    overrides = dream_hook_aliases(overrides)
    fields = set(GenerationConfig.__dataclass_fields__)
    cfg_kwargs = {k: v for k, v in overrides.items() if k in fields}
    sampler_kwargs = {k: v for k, v in overrides.items() if k not in fields}
    unknown = sorted(set(sampler_kwargs) - all_sampler_options())
    if unknown:
        raise UnmaskError(f"unknown option(s) {', '.join(unknown)}: neither a GenerationConfig field nor an "
                          "option of any sampler")
    if isinstance(sampler, str):
        sampler = make_sampler(sampler, **sampler_kwargs)
    elif sampler_kwargs:
        raise UnmaskError(f"sampler options {sorted(sampler_kwargs)} given with a Sampler object; "
                          "set them on the object (or pass the sampler by name)")
    base = {k: getattr(config, k) for k in fields} if config else {}
    cfg = GenerationConfig(**{**base, **cfg_kwargs})
    return Engine(model, sampler).generate(prompts, cfg)
