"""The model side of the server: requests -> engine rows and settings, canvases -> text.

Two kinds of model are served:

* **language models** (LLaDA, Dream, any folder with a tokenizer): a completion is the text the
  model writes after the prompt; chat messages go through the tokenizer's chat template. Text is
  decoded with ``skip_special_tokens=True`` and *without* the tokenizer's space clean-up, because
  the clean-up rewrites text across token boundaries and a streamed prefix would then not be a
  prefix of the final text.
* **built-in task models** (``tiny-sudoku``, ``tiny-multiply``, ``tiny-nae-sat``, ``tiny-judge``):
  these fill a fixed canvas of characters, so the prompt *is* the canvas: the characters given are kept,
  ``?``/``_`` (and for Sudoku ``0``/``.``) and everything after the end of a shorter prompt are
  filled, whitespace is ignored, and an empty prompt means the model's built-in example. The
  completion is the whole filled canvas (givens included), e.g. ``12*34=`` ->
  ``12*34=0408``. A chat request uses its last user message as the prompt.

Settings are validated here with the engine's own checks (``GenerationConfig.validate`` and
``make_sampler``), so a request is accepted or refused exactly like the same CLI flags.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

from ..decoding.engine import GenerationConfig, GenerationOutput
from ..errors import UnmaskError
from ..session import DEFAULT_MAX_NEW_TOKENS, Session
from ..validation import MAX_SEED as SEED_MAX
from .schema import ApiError, ParsedRequest, bad_request

MASK_GLYPH = "░"
#: answers (prompts x n) one request may ask for
MAX_ANSWERS = 256


@dataclass
class Defaults:
    """The server's settings for fields a request leaves out (the ``unmask serve`` flags)."""

    sampler: str = "confidence"
    sampler_options: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)  # GenerationConfig fields
    lockstep: dict[str, Any] = field(default_factory=dict)  # lockstep options (--lockstep, --tau_r, ...)


@dataclass
class Row:
    """One answer to produce: a prompt's token ids and its seed."""

    prompt_ids: list[int]
    seed: int
    prompt: int  # index of the prompt in the request (usage counts each prompt once)
    batch_extra: tuple  # what else this row needs to share a batch (see Backend.row_extra)


@dataclass
class Plan:
    """A validated request: its rows and the settings every one of its rows is decoded with."""

    rows: list[Row]
    sampler: str
    sampler_options: dict[str, Any]
    config: dict[str, Any]  # GenerationConfig fields, seed excluded
    key: tuple  # rows with equal (key, row.batch_extra) may share an engine batch
    per_row: int  # engine rows per answer (best_of runs or beams)
    max_new_tokens: int
    summary: dict[str, Any]  # the effective settings, echoed in the response


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


class Backend:
    """A loaded :class:`~unmask.session.Session` seen through the server's eyes."""

    def __init__(self, session: Session, name: str, defaults: Defaults | None = None) -> None:
        if session.tokenizer is None:
            raise UnmaskError(f"{session.folder} has no tokenizer; the server needs one to turn text into tokens")
        self.session = session
        self.name = name
        self.defaults = defaults or Defaults()
        self.task = session.task
        cfg = session.model.config
        self.mask_id = int(cfg.mask_token_id)
        self.eos_id = int(cfg.eos_token_id)
        self.stop_tuple = tuple(session.stop_token_ids())
        self.stop_ids = set(self.stop_tuple)
        self.vocab_size = int(getattr(cfg, "vocab_size", 0) or 0)
        self.max_len = int(getattr(cfg, "max_sequence_length", 0) or getattr(cfg, "max_position_embeddings", 0) or 0)
        self._piece_cache: dict[int, str] = {}
        # the event loop encodes prompts while the worker thread decodes canvases; a Rust fast
        # tokenizer must not be entered from two threads at once ("Already borrowed")
        self._tok_lock = threading.Lock()
        #: (image urls, prompt ids) -> ids with the images in front; set for MMaDA with a tokenizer
        #: (unmask.multimodal.serve_images.image_prompt), None = a text-only server
        self.image_prompt = None

    # ------------------------------------------------------------------ settings
    def plan(self, req: ParsedRequest) -> Plan:
        """Validate ``req`` against the model and the engine; raise :class:`ApiError` (400)."""
        d = self.defaults
        from ..options import names

        sampler = req.settings.get("sampler", d.sampler)
        options = {**d.sampler_options, **{k: v for k, v in req.settings.items() if k in names("sampler")}}
        overrides = {**d.overrides, **{k: v for k, v in req.settings.items() if k in names("generation")}}
        lockstep = self._lockstep({**d.lockstep, **{k: v for k, v in req.settings.items() if k in names("lockstep")}})
        seed = overrides.pop("seed", 0)
        if seed is None:
            seed = 0
        if not 0 <= seed <= SEED_MAX:
            raise bad_request(f"seed must be in [0, {SEED_MAX}], got {seed}", "seed")
        if req.n > 1 and overrides.get("beam_size", 1) > 1:
            raise bad_request("n > 1 with beam_size > 1 is not supported (beams of one prompt share a batch)", "n")

        if len(req.prompts) * req.n > MAX_ANSWERS:
            raise bad_request(f"at most {MAX_ANSWERS} answers (prompts x n) per request, got "
                              f"{len(req.prompts) * req.n}", "n" if req.n > 1 else "prompt")
        prompts = [self.encode(p, req) for p in req.prompts]
        if self.task is not None:
            masks = max(sum(t == self.mask_id for t in ids) for ids in prompts)
            if req.max_tokens is not None and req.max_tokens < masks:
                raise bad_request(
                    f"{req.max_tokens_field}={req.max_tokens} is too small: {self.name} fills a fixed canvas and this "
                    f"prompt has {masks} cells to fill (leave {req.max_tokens_field} out)", req.max_tokens_field)
            max_new = masks
            overrides.update(max_new_tokens=0, stop_at_eos=False,
                             suppress_token_ids=tuple(self.task.suppressed_ids()))
        else:
            max_new = req.max_tokens or overrides.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS
            overrides["max_new_tokens"] = max_new
            for i, ids in enumerate(prompts):
                if self.max_len and len(ids) + max_new > self.max_len:
                    raise bad_request(
                        f"prompt ({len(ids)} tokens) + {req.max_tokens_field} ({max_new}) exceeds the model's context "
                        f"of {self.max_len} tokens", "prompt" if req.kind == "completion" else "messages")
                if not ids and getattr(self.session.model, "shift_logits", False):
                    raise bad_request(f"prompt {i} is empty; this model needs at least one prompt token", "prompt")

        cfg, sampler_obj = self._check(sampler, options, overrides, req)
        config = cfg.to_dict()
        config.pop("seed", None)
        config.pop("plan", None)
        lock_key: tuple = ()
        if lockstep is not None:
            from ..decoding.lockstep import task_regions

            spans = task_regions(self.task, {})
            config["plan"] = lockstep.plan(spans)
            lock_key = (_freeze(lockstep.config()), _freeze(spans))
        accepted = getattr(sampler_obj, "options", ())
        used_options = {k: v for k, v in options.items() if k in accepted and v is not None}
        per = max(cfg.beam_size, cfg.best_of)
        rows = []
        for p, ids in enumerate(prompts):
            for j in range(req.n):
                rows.append(Row(prompt_ids=ids, seed=seed + j * cfg.best_of, prompt=p,
                                batch_extra=self.row_extra(ids, cfg)))
        key = (sampler_obj.name, _freeze(used_options), _freeze({k: v for k, v in config.items() if k != "plan"}),
               lock_key)
        summary = {"sampler": sampler_obj.name, **used_options, **{k: v for k, v in config.items()
                                                                  if k not in ("stop_token_ids", "suppress_token_ids",
                                                                               "plan")},
                   "seed": seed}
        if lockstep is not None:
            summary.update({k: v for k, v in lockstep.config().items() if v is not None})
        return Plan(rows=rows, sampler=sampler, sampler_options=options, config=config, key=key, per_row=per,
                    max_new_tokens=max_new, summary=summary)

    def _lockstep(self, settings: dict[str, Any]):
        """The lockstep options of a request (server flags as defaults, request fields on top),
        or None when lockstep is off. Lockstep needs reasoning/answer regions: a task model's
        (tiny-judge); a text model's canvas is laid out by ``unmask sample --lockstep``."""
        from ..decoding.lockstep import LockstepOptions

        kw = {k: v for k, v in settings.items() if v is not None}
        mode = kw.pop("lockstep", None)
        try:
            if mode is None:
                if kw:
                    raise UnmaskError(f"{', '.join(sorted(kw))} apply only with lockstep: gauss_seidel | jacobi")
                return None
            opts = LockstepOptions(mode=mode, **kw)
        except UnmaskError as e:
            named = [k for k in sorted(kw, key=len, reverse=True) if k in str(e)]
            raise bad_request(str(e), named[0] if named else "lockstep") from None
        if self.task is None or not hasattr(self.task, "regions"):
            raise bad_request(f"lockstep in the server needs a model whose task has reasoning/answer regions "
                              f"(tiny-judge); {self.name} has none (use unmask sample --lockstep with "
                              "[R]/[A] markers)", "lockstep")
        return opts

    def _check(self, sampler: str, options: dict[str, Any], overrides: dict[str, Any], req: ParsedRequest):
        from ..samplers.base import make_sampler

        fields = set(GenerationConfig.__dataclass_fields__)
        try:
            # like Session.generation_config, with the stop ids computed once: listing a large
            # vocabulary for every request would cost milliseconds on the event loop
            cfg = GenerationConfig(**{"stop_token_ids": self.stop_tuple,
                                      **{k: v for k, v in overrides.items() if k in fields}})
            cfg.validate()
            sampler_obj = make_sampler(sampler, **options)
            if cfg.beam_size > 1 and not getattr(sampler_obj, "needs_lookahead", False):
                raise UnmaskError(f"beam_size > 1 needs a lookahead sampler (info_gain, lookum), not {sampler_obj.name}")
        except UnmaskError as e:
            raise bad_request(str(e), self._param_for(str(e), req)) from None
        return cfg, sampler_obj

    @staticmethod
    def _param_for(message: str, req: ParsedRequest) -> str | None:
        """The request field an engine error message is about (the longest field name in it,
        preferring fields the request itself set)."""
        from .schema import sampling_field_types

        def find(names) -> str | None:
            for name in sorted(names, key=len, reverse=True):
                if re.search(rf"(?<![a-z_]){re.escape(name)}(?![a-z_])", message):
                    return req.max_tokens_field if name == "max_new_tokens" else name
            return None

        return find(req.settings) or find(sampling_field_types())

    def row_extra(self, ids: list[int], cfg: GenerationConfig) -> tuple:
        """What a row's result depends on beyond the settings, when other rows share its batch.

        The engine decodes masks inside the prompt in a leading block of its own, so whether
        *any* row of a batch has them changes how a step budget is split over blocks; with a KV
        cache, where that block starts (counted from the end of the prompt) decides which
        positions are cached. Rows differing in these run in separate batches."""
        first = next((i for i, t in enumerate(ids) if t == self.mask_id), None)
        if first is None:
            return (False,)
        return (True,) if cfg.use_cache == "none" else (True, len(ids) - first)

    # ------------------------------------------------------------------ prompts
    def encode(self, prompt: Any, req: ParsedRequest) -> list[int]:
        """Token ids of one prompt (text, token ids or chat messages)."""
        with self._tok_lock:
            return self._encode(prompt, req)

    def _encode(self, prompt: Any, req: ParsedRequest) -> list[int]:
        param = "messages" if req.kind == "chat" else "prompt"
        if self.task is not None:
            if req.kind == "chat":
                users = [m["content"] for m in prompt if m["role"] == "user"]
                if not users:
                    raise bad_request("messages needs a user message (the puzzle to fill)", "messages")
                prompt = users[-1]
            if not isinstance(prompt, str):
                raise bad_request(f"{self.name} takes its canvas as text, not token ids", param)
            return self.task_canvas(prompt, param)
        tok = self.session.tokenizer
        if req.kind == "chat":
            images = [u for m in prompt for u in m.get("images", ())]
            try:
                ids = self.session.encode_prompt([{"role": m["role"], "content": m["content"]} for m in prompt])
            except UnmaskError as e:
                raise bad_request(f"{e} (use /v1/completions with a plain prompt)", "messages") from None
            if not images:
                return ids
            if self.image_prompt is None:
                raise bad_request(f"{self.name} takes no images (serve an MMaDA model with --vq_model_path)", "messages")
            try:
                return self.image_prompt(images, ids)
            except UnmaskError as e:
                raise bad_request(str(e), "messages") from None
        if isinstance(prompt, str):
            return list(tok(prompt, add_special_tokens=True)["input_ids"])
        if self.vocab_size and any(not 0 <= t < self.vocab_size for t in prompt):
            raise bad_request(f"token ids must be in [0, {self.vocab_size})", "prompt")
        return list(prompt)

    def task_canvas(self, text: str, param: str = "prompt") -> list[int]:
        """The canvas of a task model for a prompt text (see the module docstring)."""
        task = self.task
        try:  # the same rule as `unmask sample --prompt` (SyntheticTask.canvas_from_text)
            ids = self.session.task_prompt_ids(self.session.task_item(text))
        except UnmaskError as e:
            raise bad_request(str(e), param) from None
        if self.mask_id not in ids:
            raise bad_request(f"nothing to fill: the {task.name} canvas has no cell marked to fill", param)
        return ids

    # ------------------------------------------------------------------ text
    def decode(self, ids: list[int]) -> str:
        with self._tok_lock:
            return self.session.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def prefix_text(self, row: list[int], prompt_len: int) -> tuple[str, bool]:
        """Text of the answer's final prefix (every position before it decoded) in a row's
        canvas (padding removed), and whether the answer is complete."""
        if self.task is not None:
            ans = row[1:]
            cut = next((i for i, t in enumerate(ans) if t == self.mask_id), len(ans))
            return self.task.decode_ids(ans[:cut]), cut == len(ans)
        ids = []
        complete = True
        for t in row[prompt_len:]:
            if t == self.mask_id:
                complete = False
                break
            if t in self.stop_ids:
                break
            ids.append(t)
        return self.decode(ids), complete

    def canvas_text(self, row: list[int], prompt_len: int) -> str:
        """The answer region as text with every masked position drawn as ``MASK_GLYPH`` (the
        ``stream_canvas`` view)."""
        if self.task is not None:
            return "".join(MASK_GLYPH if t == self.mask_id else self.task.id_chars.get(t, "?") for t in row[1:])
        parts = []
        for t in row[prompt_len:]:
            if t == self.mask_id:
                parts.append(MASK_GLYPH)
                continue
            if t not in self._piece_cache:
                self._piece_cache[t] = self.decode([t])
            parts.append(self._piece_cache[t])
        return "".join(parts)

    def final(self, out: GenerationOutput, g: int, max_new_tokens: int) -> tuple[str, int, str]:
        """``(text, completion_tokens, finish_reason)`` of answer ``g`` of an engine output."""
        if self.task is not None:
            filled = sum(1 for t in out.traces[g].initial_tokens if t == self.mask_id)
            return self.task.parse(out.sequences[g]), filled, "stop"
        gen = out.generated[g]
        ids = [t for t in gen if t != self.mask_id]
        return self.decode(ids), len(ids), ("length" if len(gen) >= max_new_tokens else "stop")

    def check_defaults(self) -> None:
        """Fail at start-up (CLI error, exit 2) when the server's own flags are invalid."""
        from .schema import ParsedRequest as _PR

        if self.task is not None and self.defaults.overrides.get("max_new_tokens"):
            raise UnmaskError(f"{self.name} fills a fixed canvas: drop --max_new_tokens")
        probe = _PR(kind="completion", prompts=[""] if self.task is not None else ["a"])
        try:
            self.plan(probe)
        except ApiError as e:
            raise UnmaskError(e.message) from None
