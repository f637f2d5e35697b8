"""Lockstep reasoning/answer decoding: a reasoning region R and an answer region A decoded in tandem.

Both regions are masks on the canvas (from ``[R]``/``[A]`` markers in the prompt, from a chat
template followed by ``R <separator> A``, or from explicit spans, e.g. a task's infilling canvas).
They form one phase of the decoding plan (:mod:`unmask.decoding.plan`), each with a threshold gate:

* a masked position is *eligible* when the probability of its proposed token reaches its region's
  threshold (``tau_r``, ``tau_a``);
* at most ``max(1, floor(max_fill_frac * remaining))`` positions of a region are committed per
  step; which eligible positions win is the chosen sampler's decision (confidence by default);
* when nothing in a region is eligible, the sampler commits the region's single best masked
  position (the *fallback*), so both regions always progress and decoding always finishes;
* with ``answer_after = F``, A commits nothing until a fraction F of R's masks is committed.

Modes (the phase's sweep):

* ``jacobi``: one forward per step; R and A commit from the same logits. NFE = steps.
* ``gauss_seidel``: commit in R, run a second forward on the updated canvas, then commit in A,
  so A sees R's new tokens. NFE = 2 per step while both regions commit, 1 when only one of them
  does (R done, or A held back by ``answer_after``). With a lookahead sampler (Info-Gain) the
  winner's lookahead forward *is* the canvas after R's commit, so A reuses it.

Fixed text between or around the regions is part of the canvas and never rewritten. Masks outside
the two regions in the prompt are refused; a generation region after the prompt
(``max_new_tokens > 0``) is decoded afterwards in plain semi-autoregressive blocks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import UnmaskError
from ..validation import check_option
from .plan import Gate, Layout, Phase, Region, block_phases, check_sweep

MARKERS = {"R": "[R]", "A": "[A]"}
MODES = ("gauss_seidel", "jacobi")
DEFAULTS = {"tau_r": 0.90, "tau_a": 0.92, "max_fill_frac": 0.4, "reasoning_tokens": 64, "answer_tokens": 16}

Span = tuple[int, int]


def _unit(name: str, value: float) -> float:
    """A required option, checked by its shared rule (``unmask.validation``: (0, 1])."""
    if value is None:
        raise UnmaskError(f"{name} must be in (0, 1], got None")
    return float(check_option(name, value))


@dataclass
class LockstepPlan:
    """The planner for lockstep decoding. ``regions`` gives, in *prompt* coordinates (0 = the
    prompt's first token, padding excluded), the ``{"R": (start, end), "A": (start, end)}`` spans:
    one mapping for every prompt, or a list with one mapping per prompt."""

    regions: Mapping[str, Span] | Sequence[Mapping[str, Span]]
    mode: str = "gauss_seidel"
    tau_r: float = DEFAULTS["tau_r"]
    tau_a: float = DEFAULTS["tau_a"]
    max_fill_frac: float = DEFAULTS["max_fill_frac"]
    answer_after: float | None = None

    def __post_init__(self) -> None:
        self.mode = check_sweep(self.mode)
        self.tau_r = _unit("tau_r", self.tau_r)
        self.tau_a = _unit("tau_a", self.tau_a)
        self.max_fill_frac = _unit("max_fill_frac", self.max_fill_frac)
        if self.answer_after is not None:
            self.answer_after = float(check_option("answer_after", self.answer_after))
        for spans in self._per_prompt():
            _check_spans(spans)

    def _per_prompt(self) -> list[Mapping[str, Span]]:
        if isinstance(self.regions, Mapping):
            return [self.regions]
        return list(self.regions)

    # -- Planner protocol ---------------------------------------------------------------------
    def check(self, cfg, sampler) -> None:
        if not getattr(sampler, "uses_schedule", True):
            raise UnmaskError(f"lockstep gates each region itself (tau_r, tau_a, max_fill_frac); the "
                              f"{sampler.name} sampler picks its own count: use confidence, entropy, margin, "
                              "random, leftright, pc or info_gain inside the regions")
        if getattr(cfg, "compat", None):
            raise UnmaskError("--compat reproduces the references' block loops; it does not combine with lockstep")
        if cfg.beam_size > 1:
            raise UnmaskError("lockstep decoding does not support beam_size > 1 (a beam would have to span "
                              "both regions); use best_of")

    def config(self) -> dict[str, Any]:
        return {"plan": "lockstep", "mode": self.mode, "tau_r": self.tau_r, "tau_a": self.tau_a,
                "max_fill_frac": self.max_fill_frac, "answer_after": self.answer_after}

    def plan(self, layout: Layout, cfg) -> list[Phase]:
        per = self._per_prompt()
        n_prompts = max(layout.groups) + 1
        if len(per) == 1:
            per = per * n_prompts
        if len(per) != n_prompts:
            raise UnmaskError(f"got region spans for {len(per)} prompts, but {n_prompts} prompts")
        spans: dict[str, list[Span]] = {"R": [], "A": []}
        for row in range(layout.rows):
            g, pad = layout.groups[row], layout.pads[row]
            plen = layout.prompt_length(row)
            for name in ("R", "A"):
                s, e = per[g][name]
                if e > plen:
                    raise UnmaskError(f"region {name} = [{s}, {e}) reaches past the prompt ({plen} tokens)")
                spans[name].append((pad + s, pad + e))
            # every mask inside the prompt must belong to R or A
            masked = (layout.x[row, pad : layout.prompt_len] == layout.mask_id).nonzero().squeeze(-1).tolist()
            inside = set(range(*per[g]["R"])) | set(range(*per[g]["A"]))
            stray = [p for p in masked if p not in inside]
            if stray:
                raise UnmaskError(f"prompt {g} has mask tokens outside the R and A regions (at {stray[:5]}); "
                                  "lockstep decodes only R and A inside the prompt")
            for name in ("R", "A"):
                s, e = per[g][name]
                if not bool((layout.x[row, pad + s : pad + e] == layout.mask_id).any()):
                    raise UnmaskError(f"region {name} of prompt {g} has no mask tokens to decode")
        after = ("R", self.answer_after) if self.answer_after else None
        r = Region(spans["R"], Gate(tau=self.tau_r, max_fill_frac=self.max_fill_frac), name="R")
        a = Region(spans["A"], Gate(tau=self.tau_a, max_fill_frac=self.max_fill_frac, after=after), name="A")
        phases = [Phase([r, a], sweep=self.mode, index=0)]
        if cfg.max_new_tokens > 0:
            phases += block_phases(layout, cfg, start_index=1, include_prompt=False)
        return phases


def _check_spans(spans: Mapping[str, Span]) -> None:
    if set(spans) != {"R", "A"}:
        raise UnmaskError(f"lockstep needs exactly the regions R and A, got {sorted(spans)}")
    for name, sp in spans.items():
        try:
            s, e = (int(v) for v in sp)
        except (TypeError, ValueError):
            raise UnmaskError(f"region {name} must be a (start, end) pair, got {sp!r}") from None
        if s < 0 or e <= s:
            raise UnmaskError(f"region {name} = [{s}, {e}) is empty or negative; a region needs at least one token")
    (rs, re_), (as_, ae) = spans["R"], spans["A"]
    if rs < ae and as_ < re_:
        raise UnmaskError(f"regions R [{rs}, {re_}) and A [{as_}, {ae}) overlap")


# --------------------------------------------------------------------------- canvases from text
_MARKER_RE = re.compile(r"\[(R|A)\]")


def split_markers(text: str) -> list[str | tuple[str]]:
    """Split a prompt at its ``[R]``/``[A]`` markers: text pieces (kept verbatim) and ``("R",)`` /
    ``("A",)`` for the markers. Exactly one of each is required."""
    parts: list[str | tuple[str]] = []
    pos = 0
    seen: list[str] = []
    for m in _MARKER_RE.finditer(text):
        if m.start() > pos:
            parts.append(text[pos : m.start()])
        parts.append((m.group(1),))
        seen.append(m.group(1))
        pos = m.end()
    if pos < len(text):
        parts.append(text[pos:])
    for name in ("R", "A"):
        if seen.count(name) == 0:
            raise UnmaskError(f"--lockstep needs a {MARKERS[name]} marker in the prompt (or --answer_separator to "
                              "put R and A after it)")
        if seen.count(name) > 1:
            raise UnmaskError(f"the prompt has {seen.count(name)} {MARKERS[name]} markers; give exactly one")
    return parts


def canvas_from_markers(text: str, encode_first, encode_rest, mask_id: int, reasoning_tokens: int,
                        answer_tokens: int) -> tuple[list[int], dict[str, Span]]:
    """Token ids of a marked prompt and the R/A spans in them. ``encode_first(text)`` tokenises
    the first text piece (with the tokenizer's special tokens, e.g. BOS), ``encode_rest(text)``
    the later pieces (none). Each piece is tokenised on its own, so the fixed text is exactly
    what the user wrote; each marker becomes a run of mask tokens."""
    _check_sizes(reasoning_tokens, answer_tokens)
    sizes = {"R": reasoning_tokens, "A": answer_tokens}
    ids: list[int] = []
    spans: dict[str, Span] = {}
    first = True
    for part in split_markers(text):
        if isinstance(part, tuple):
            if first:  # a leading marker: still give the tokenizer its special tokens
                ids += encode_first("")
                first = False
            name = part[0]
            spans[name] = (len(ids), len(ids) + sizes[name])
            ids += [mask_id] * sizes[name]
        else:
            ids += encode_first(part) if first else encode_rest(part)
            first = False
    return ids, spans


def canvas_after_prompt(prompt_ids: list[int], separator_ids: list[int], mask_id: int, reasoning_tokens: int,
                        answer_tokens: int, suffix_ids: Sequence[int] = ()) -> tuple[list[int], dict[str, Span]]:
    """``prompt R separator A suffix``: the chat-template layout (the prompt already went through
    the template, ending with the assistant turn's opening)."""
    _check_sizes(reasoning_tokens, answer_tokens)
    ids = list(prompt_ids)
    r = (len(ids), len(ids) + reasoning_tokens)
    ids += [mask_id] * reasoning_tokens + list(separator_ids)
    a = (len(ids), len(ids) + answer_tokens)
    ids += [mask_id] * answer_tokens + list(suffix_ids)
    return ids, {"R": r, "A": a}


def _check_sizes(reasoning_tokens: int, answer_tokens: int) -> None:
    for name, v in (("reasoning_tokens", reasoning_tokens), ("answer_tokens", answer_tokens)):
        if not isinstance(v, int) or v <= 0:
            raise UnmaskError(f"{name} must be an integer > 0, got {v}")


def unescape(text: str) -> str:
    r"""``\n``, ``\t`` and ``\\`` typed on a command line become the characters."""
    return text.replace("\\\\", "\0").replace("\\n", "\n").replace("\\t", "\t").replace("\0", "\\")


# --------------------------------------------------------------------------- metrics
def lockstep_metrics(trace) -> dict[str, Any]:
    """Figures of one lockstep trace: steps, NFE, forwards per step, per-region final fill, the
    step at which A was first committed and R's fill then, and whether that answer was premature
    (A committed while R was less than half filled)."""
    steps = [s for s in trace.steps if s.region in ("R", "A")]
    n_steps = (max(s.step for s in steps) + 1) if steps else 0
    first_a = next((s for s in steps if s.region == "A"), None)
    # R's fill on the canvas A's decision was made from (Gauss-Seidel: after R's commit of that
    # step; Jacobi: before it)
    r_fill_then = None if first_a is None else float(first_a.info.get("seen_fill", {}).get("R", 0.0))
    last = steps[-1].fill if steps else {}
    commits = {"R": sum(s.committed for s in steps if s.region == "R"),
               "A": sum(s.committed for s in steps if s.region == "A")}
    fallbacks = {k: sum(1 for s in steps if s.region == k and s.info.get("gate") == "fallback") for k in ("R", "A")}
    return {
        "steps": n_steps,
        "nfe": trace.nfe,
        "nfe_per_step": round(trace.nfe / n_steps, 4) if n_steps else 0.0,
        "fill_r": last.get("R", 0.0),
        "fill_a": last.get("A", 0.0),
        "commits_r": commits["R"],
        "commits_a": commits["A"],
        "fallbacks_r": fallbacks["R"],
        "fallbacks_a": fallbacks["A"],
        "a_first_step": first_a.step if first_a else None,
        "r_fill_at_a_first": None if r_fill_then is None else round(r_fill_then, 6),
        "premature_answer": bool(r_fill_then is not None and r_fill_then < 0.5),
    }


def fill_curves(trace) -> dict[str, list[float]]:
    """Per step, each region's fill fraction at the end of that step (for plots)."""
    steps = [s for s in trace.steps if s.region in ("R", "A")]
    if not steps:
        return {}
    n = max(s.step for s in steps) + 1
    cur = {"R": 0.0, "A": 0.0}
    out = {"R": [], "A": []}
    by_step: dict[int, list] = {}
    for s in steps:
        by_step.setdefault(s.step, []).append(s)
    for t in range(n):
        for s in by_step.get(t, []):
            cur.update(s.fill or {})
        out["R"].append(cur["R"])
        out["A"].append(cur["A"])
    return out


# --------------------------------------------------------------------------- user options
@dataclass
class LockstepOptions:
    """What the user chose; ``mode`` None = lockstep off."""

    mode: str | None = None
    reasoning_tokens: int = DEFAULTS["reasoning_tokens"]
    answer_tokens: int = DEFAULTS["answer_tokens"]
    tau_r: float = DEFAULTS["tau_r"]
    tau_a: float = DEFAULTS["tau_a"]
    max_fill_frac: float = DEFAULTS["max_fill_frac"]
    answer_after: float | None = None
    answer_separator: str | None = None

    def __post_init__(self) -> None:
        if self.mode is not None:
            self.mode = check_sweep(self.mode)
            self.plan({"R": (0, 1), "A": (1, 2)})  # validates the numbers before any model work

    @property
    def on(self) -> bool:
        return self.mode is not None

    def plan(self, regions) -> LockstepPlan:
        return LockstepPlan(regions, self.mode or "gauss_seidel", tau_r=self.tau_r, tau_a=self.tau_a,
                            max_fill_frac=self.max_fill_frac, answer_after=self.answer_after)

    def config(self) -> dict[str, Any]:
        return {"lockstep": self.mode, "tau_r": self.tau_r, "tau_a": self.tau_a, "max_fill_frac": self.max_fill_frac,
                "answer_after": self.answer_after, "reasoning_tokens": self.reasoning_tokens,
                "answer_tokens": self.answer_tokens, "answer_separator": self.answer_separator}


def task_regions(task, item: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """A task's R/A spans in canvas coordinates, or a one-line error for tasks without them."""
    fn = getattr(task, "regions", None)
    if fn is None:
        raise UnmaskError(f"the {task.name} task has no reasoning/answer regions; lockstep needs a task such as "
                          "judge (tiny-judge) or a text model with [R]/[A] markers")
    return {k: tuple(v) for k, v in fn(item).items()}



# --------------------------------------------------------------------------- summaries
def summarize_traces(traces) -> dict[str, Any]:
    """Means over lockstep traces: steps, NFE per step, the step of A's first commit, R's fill
    then, and the premature-answer rate (A first committed while R < 50% filled)."""
    mets = [lockstep_metrics(t) for t in traces]
    n = len(mets)
    if n == 0:
        return {}
    firsts = [m["a_first_step"] for m in mets if m["a_first_step"] is not None]
    fills = [m["r_fill_at_a_first"] for m in mets if m["r_fill_at_a_first"] is not None]
    return {
        "mean_steps": sum(m["steps"] for m in mets) / n,
        "nfe_per_step": sum(m["nfe"] for m in mets) / max(1, sum(m["steps"] for m in mets)),
        "mean_a_first_step": sum(firsts) / len(firsts) if firsts else None,
        "mean_r_fill_at_a_first": sum(fills) / len(fills) if fills else None,
        "premature_rate": sum(1 for m in mets if m["premature_answer"]) / n,
        "mean_fallbacks_r": sum(m["fallbacks_r"] for m in mets) / n,
        "mean_fallbacks_a": sum(m["fallbacks_a"] for m in mets) / n,
    }
