"""Lockstep decoding from the command line and the session: options, canvases, summaries.

The decoding itself is a plan (:mod:`unmask.decoding.lockstep`); this module lays the R and A
regions out on a canvas for each way a user can ask for them, and turns traces into the figures
``sample``, ``compare`` and ``eval`` print:

* a prompt with ``[R]`` and ``[A]`` markers (each becomes ``--reasoning_tokens`` /
  ``--answer_tokens`` masks, the text around them is kept verbatim, no chat template);
* ``--answer_separator TEXT``: the prompt (through the chat template when there is one), then R,
  the fixed separator (e.g. ``"\\nAnswer: "``), then A;
* a task model whose task exposes ``regions(item)`` (``tiny-judge``): the task's own canvas.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from .decoding.lockstep import (
    DEFAULTS,
    LockstepPlan,
    canvas_after_prompt,
    canvas_from_markers,
    lockstep_metrics,
    unescape,
)
from .decoding.plan import check_sweep
from .errors import UnmaskError

#: CLI flags of lockstep decoding (shared by sample, chat, compare and eval)
LOCKSTEP_FLAGS = ("lockstep", "reasoning_tokens", "answer_tokens", "tau_r", "tau_a", "max_fill_frac", "answer_after",
                  "answer_separator")
#: compare's sampler names: lockstep_gs / lockstep_jacobi, optionally ``:inner_sampler``
MODE_NAMES = {"lockstep_gs": "gauss_seidel", "lockstep_gauss_seidel": "gauss_seidel", "lockstep_jacobi": "jacobi"}


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


def options_from_args(args: argparse.Namespace, region_flags_alone: bool = False) -> LockstepOptions:
    """Lockstep options from parsed flags. Region flags without ``--lockstep`` are an error unless
    ``region_flags_alone`` (compare: its lockstep_* sampler names carry the mode)."""
    kw: dict[str, Any] = {}
    for name in LOCKSTEP_FLAGS[1:]:
        v = getattr(args, name, None)
        if v is not None:
            kw[name] = v
    if "answer_separator" in kw:
        kw["answer_separator"] = unescape(kw["answer_separator"])
    chosen = getattr(args, "lockstep", None)
    if chosen is None and kw and not region_flags_alone:
        raise UnmaskError(f"{', '.join(f'--{k}' for k in kw)} apply only with --lockstep gauss_seidel|jacobi "
                          "(in compare also with lockstep_gs / lockstep_jacobi samplers)")
    opts = LockstepOptions(mode=chosen, **kw)
    if chosen is None:
        LockstepOptions(mode="gauss_seidel", **kw)  # still validate the values up front
    return opts


def parse_sampler_name(name: str) -> tuple[str | None, str]:
    """``lockstep_gs`` -> (gauss_seidel, confidence); ``lockstep_jacobi:info_gain`` -> (jacobi,
    info_gain); a plain name -> (None, name)."""
    head, _, inner = name.partition(":")
    key = head.strip().lower().replace("-", "_")
    if key in MODE_NAMES:
        return MODE_NAMES[key], (inner.strip() or "confidence")
    if key.startswith("lockstep"):
        raise UnmaskError(f"unknown lockstep sampler {name!r}; use lockstep_gs or lockstep_jacobi, optionally "
                          "followed by :sampler (e.g. lockstep_gs:info_gain)")
    if inner:
        raise UnmaskError(f"{name!r}: only lockstep_gs / lockstep_jacobi take a ':sampler' suffix")
    return None, name


def task_regions(task, item: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """A task's R/A spans in canvas coordinates, or a one-line error for tasks without them."""
    fn = getattr(task, "regions", None)
    if fn is None:
        raise UnmaskError(f"the {task.name} task has no reasoning/answer regions; lockstep needs a task such as "
                          "judge (tiny-judge) or a text model with [R]/[A] markers")
    return {k: tuple(v) for k, v in fn(item).items()}


# --------------------------------------------------------------------------- text canvases
def text_canvas(session, prompt: str, chat_template: bool | None, opts: LockstepOptions
                ) -> tuple[list[int], dict[str, tuple[int, int]]]:
    """Token ids and R/A spans of a text prompt (markers, or the separator layout)."""
    tok = session.tokenizer
    if tok is None:
        raise UnmaskError(f"{session.folder} has no tokenizer; pass token ids and region spans through the Python API")
    mask_id = int(session.model.config.mask_token_id)
    if "[R]" in prompt or "[A]" in prompt:
        if opts.answer_separator is not None:
            raise UnmaskError("give either [R]/[A] markers in the prompt or --answer_separator, not both")
        if chat_template:
            raise UnmaskError("a prompt with [R]/[A] markers is laid out verbatim; for the chat template use "
                              "--answer_separator and a prompt without markers")
        return canvas_from_markers(
            prompt,
            lambda t: list(tok(t, add_special_tokens=True)["input_ids"]),
            lambda t: list(tok(t, add_special_tokens=False)["input_ids"]),
            mask_id, opts.reasoning_tokens, opts.answer_tokens)
    if opts.answer_separator is None:
        raise UnmaskError("--lockstep needs [R] and [A] markers in the prompt, or --answer_separator TEXT to put "
                          "R and A after it")
    ids, spans = separator_canvases(session, [session.encode_prompt(prompt, chat_template)], opts)
    return ids[0], spans[0]


def separator_canvases(session, prompts: list[list[int]], opts: LockstepOptions
                       ) -> tuple[list[list[int]], list[dict[str, tuple[int, int]]]]:
    """``prompt R separator A`` after each encoded prompt: the canvases and their R/A spans (the
    separator is tokenized once)."""
    sep = opts.answer_separator
    sep_ids = list(session.tokenizer(sep, add_special_tokens=False)["input_ids"]) if sep else []
    mask_id = int(session.model.config.mask_token_id)
    canvases = [canvas_after_prompt(p, sep_ids, mask_id, opts.reasoning_tokens, opts.answer_tokens) for p in prompts]
    return [ids for ids, _ in canvases], [spans for _, spans in canvases]


def region_texts(session, seq: list[int], spans: dict[str, tuple[int, int]]) -> dict[str, str]:
    """Decoded R, A and the whole span from the first region to the last (fixed text included)."""
    lo = min(s for s, _ in spans.values())
    hi = max(e for _, e in spans.values())
    return {"reasoning": session.decode(seq[slice(*spans["R"])]), "answer": session.decode(seq[slice(*spans["A"])]),
            "text": session.decode(seq[lo:hi])}


def sample_lockstep(session, prompt, chat_template, sampler, sampler_options, overrides, opts: LockstepOptions):
    """``unmask sample --lockstep``: one prompt (or the task model's example) decoded in lockstep."""
    from .session import SampleResult

    overrides = dict(overrides)
    if session.task is not None:
        task = session.task
        item = session.task_item(prompt)
        spans = task_regions(task, item)
        _tell_view(overrides, spans)
        res = session.sample_task(prompt, sampler, sampler_options, {**overrides, "plan": opts.plan(spans)})
        seq = res.output.sequences[0]
        res.extra["reasoning"] = task.decode_ids(seq[slice(*spans["R"])])
        res.extra["answer_region"] = task.decode_ids(seq[slice(*spans["A"])])
        res.extra["lockstep"] = {"mode": opts.mode, **lockstep_metrics(res.trace)}
        return res
    if prompt is None:
        raise UnmaskError("--prompt is required for this model (with [R]/[A] markers or --answer_separator)")
    ids, spans = text_canvas(session, prompt, chat_template, opts)
    _tell_view(overrides, spans)
    if overrides.get("max_new_tokens") is None:
        overrides["max_new_tokens"] = 0
    out = session.generate_ids([ids], sampler, sampler_options, {**overrides, "plan": opts.plan(spans)})
    seq = out.sequences[0]
    texts = region_texts(session, seq, spans)
    if out.generated[0]:
        texts["text"] += session.decode(out.generated[0])
    extra = {"reasoning": texts["reasoning"], "answer": texts["answer"],
             "lockstep": {"mode": opts.mode, **lockstep_metrics(out.traces[0])}}
    return SampleResult(text=texts["text"], token_ids=seq, output=out, prompt_text=prompt, extra=extra)


def _tell_view(overrides: dict[str, Any], spans: dict[str, tuple[int, int]]) -> None:
    """A live view (``--visualize``) labels the regions: its tokens hook is a bound method of an
    object with ``set_regions``."""
    owner = getattr(overrides.get("tokens_hook"), "__self__", None)
    if owner is not None and hasattr(owner, "set_regions"):
        owner.set_regions(spans)


def lockstep_reply(session, prompt_ids: list[int], sampler, sampler_options, overrides, opts: LockstepOptions):
    """One chat reply decoded in lockstep after the templated prompt: returns the output and the
    reply text (R, separator, A; masks never shown)."""
    canvases, all_spans = separator_canvases(session, [prompt_ids], opts)
    ids, spans = canvases[0], all_spans[0]
    _tell_view(overrides, spans)
    out = session.generate_ids([ids], sampler, sampler_options,
                               {**overrides, "max_new_tokens": 0, "plan": opts.plan(spans)})
    lo, hi = spans["R"][0], spans["A"][1]
    mask_id = int(session.model.config.mask_token_id)
    reply = session.decode([t for t in out.sequences[0][lo:hi] if t != mask_id]).strip()
    return out, reply


def eval_layout(run, items, prompts, overrides):
    """``unmask eval --lockstep``: the canvases, per-item spans and generation overrides. A task
    model's task gives its own regions; a text benchmark gets ``prompt R separator A`` (the prompt
    as the task encodes it, chat template included)."""
    opts: LockstepOptions = run.spec.lockstep
    synthetic = getattr(run.task, "task", None)
    if synthetic is not None:
        spans = [task_regions(synthetic, it) for it in items]
        new_prompts = prompts
    else:
        if opts.answer_separator is None:
            raise UnmaskError("eval --lockstep on a text benchmark needs --answer_separator TEXT (e.g. '\\nAnswer: ') "
                              "to place R and A after the prompt")
        new_prompts, spans = separator_canvases(run.session, prompts, opts)
    return new_prompts, spans, {**overrides, "max_new_tokens": 0, "plan": opts.plan(spans)}


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
