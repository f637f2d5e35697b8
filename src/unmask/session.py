"""A loaded model + tokenizer, and the glue that turns text into a generation and back.

Used by the CLI (``sample``, ``chat``) and by the evaluation runner, so prompt building, stop
tokens and output decoding are written once.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .decoding.engine import GenerationConfig, GenerationOutput, generate
from .decoding.lockstep import canvas_after_prompt, canvas_from_markers, lockstep_metrics, task_regions
from .errors import UnmaskError
from .models.registry import resolve_model_path
from .userio import read_text, write_text

#: end-of-turn markers of the chat templates we know (LLaDA, Dream/Qwen, our tiny models)
END_OF_TURN_TOKENS = ("<|eot_id|>", "<|im_end|>", "<|eot|>", "<|endoftext|>", "<|dlm_pad|>")
DEFAULT_MAX_NEW_TOKENS = 128
#: seed of the built-in example of ``unmask sample``. For Sudoku this is a 28-32-givens,
#: hidden-singles puzzle: the shipped tiny-sudoku solves it with the adaptive samplers and random
#: order does not, which is the point of the demo (seed 2026 drew a beyond-singles puzzle that
#: the shipped weights miss; tests/test_builtin_models.py keeps this choice honest).
BUILTIN_EXAMPLE_SEED = 2027
SMALL_MODEL_PARAMS = 20_000_000


@dataclass
class SampleResult:
    """One sampled completion with its figures (what ``unmask sample`` prints)."""

    text: str
    token_ids: list[int]
    output: GenerationOutput
    prompt_text: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def trace(self):
        return self.output.traces[0]

    def to_json(self) -> dict[str, Any]:
        tr = self.trace
        d = {
            "text": self.text,
            "token_ids": self.token_ids,
            "nfe": tr.nfe,
            "forward_rows": tr.forward_rows,
            "forward_tokens": tr.forward_tokens,
            "cumulative_entropy": tr.cumulative_entropy,
            "seconds": self.output.seconds,
            "generated_tokens": self.output.generated_tokens,
            "tokens_per_second": self.output.tokens_per_second,
            "order": tr.order,
        }
        d.update(self.extra)
        return d

    def summary_line(self) -> str:
        tr = self.trace
        return (
            f"[nfe={tr.nfe} forward_tokens={tr.forward_tokens} cumulative_entropy={tr.cumulative_entropy:.3f} "
            f"seconds={self.output.seconds:.2f} tokens/s={self.output.tokens_per_second:.1f}]"
        )

    def render(self) -> str:
        lines = [self.text]
        for k, v in self.extra.items():
            if k in ("task", "puzzle", "correct", "cell_accuracy", "obs_accuracy", "product_first", "reasoning",
                     "answer_region"):
                lines.append(f"{k}: {v}")
        if "lockstep" in self.extra:
            m = self.extra["lockstep"]
            lines.append(f"[lockstep {m['mode']}: steps={m['steps']} nfe={m['nfe']} A first at step "
                         f"{m['a_first_step']} with R {100 * (m['r_fill_at_a_first'] or 0):.0f}% filled"
                         f"{' (premature)' if m['premature_answer'] else ''}]")
        lines.append(self.summary_line())
        return "\n".join(lines)


class Session:
    """Model, tokenizer and (for built-in task models) the task the model was trained on."""

    def __init__(self, model, tokenizer, folder: Path | None = None, task=None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.folder = folder
        self.task = task

    @classmethod
    def load(cls, name_or_path: str | None, device: str = "cpu", dtype: str | None = "auto") -> Session:
        from .models.loading import load_model
        from .tokenizer import load_tokenizer

        if name_or_path is None:
            name_or_path = "tiny-sudoku"
        folder = resolve_model_path(name_or_path)
        model = load_model(folder, dtype=dtype, device=device)
        if str(device).startswith("cpu") and model.num_parameters() < SMALL_MODEL_PARAMS and "UNMASK_THREADS" not in os.environ:
            # a tiny model gains nothing from intra-op threads, and on a busy machine extra threads
            # spin against other processes (measured: 1.4 s vs 12 s for the built-in Sudoku example)
            torch.set_num_threads(1)
        if os.environ.get("UNMASK_THREADS"):
            torch.set_num_threads(int(os.environ["UNMASK_THREADS"]))
        tok = None
        if any((folder / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
            tok = load_tokenizer(folder)
        task = None
        if (folder / "task.json").exists():
            from .tasks.synthetic import task_from_json

            try:
                task = task_from_json(json.loads(read_text(folder / "task.json", "task file")))
            except (KeyError, ValueError, TypeError, AttributeError) as e:
                raise UnmaskError(f"{folder / 'task.json'} does not describe a known task: {e}") from e
        return cls(model, tok, folder, task)

    # ------------------------------------------------------------------ prompts
    def stop_token_ids(self) -> list[int]:
        ids = {int(self.model.config.eos_token_id)}
        tok = self.tokenizer
        if tok is not None:
            vocab = tok.get_vocab()
            ids.update(int(vocab[t]) for t in END_OF_TURN_TOKENS if t in vocab)
        ids.discard(int(self.model.config.mask_token_id))
        return sorted(ids)

    def encode_prompt(self, prompt: str | list[dict[str, str]], chat_template: bool | None = None) -> list[int]:
        """Token ids of a prompt; ``chat_template`` None = use the template when the tokenizer has
        one. A list of messages always goes through the template."""
        tok = self.tokenizer
        if tok is None:
            raise UnmaskError(f"{self.folder} has no tokenizer; pass token ids through the Python API instead")
        has_template = bool(getattr(tok, "chat_template", None))
        if isinstance(prompt, list):
            if not has_template:
                raise UnmaskError("this tokenizer has no chat template; use --chat_template False")
            text = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
            return list(tok(text, add_special_tokens=False)["input_ids"])
        use = has_template if chat_template is None else chat_template
        if use:
            if not has_template:
                raise UnmaskError("this tokenizer has no chat template; use --chat_template False")
            text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
            return list(tok(text, add_special_tokens=False)["input_ids"])
        return list(tok(prompt, add_special_tokens=True)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        if self.tokenizer is None:
            return " ".join(map(str, ids))
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    # ------------------------------------------------------------------ generation
    def generation_config(self, overrides: dict[str, Any] | None = None) -> GenerationConfig:
        overrides = dict(overrides or {})
        if overrides.get("max_new_tokens") is None:
            overrides["max_new_tokens"] = DEFAULT_MAX_NEW_TOKENS
        overrides.setdefault("stop_token_ids", tuple(self.stop_token_ids()))
        return GenerationConfig(**overrides)

    def generate_ids(self, prompts: list[list[int]], sampler: str = "confidence", sampler_options=None,
                     overrides=None) -> GenerationOutput:
        cfg = self.generation_config(overrides)
        return generate(self.model, prompts, sampler, cfg, **(sampler_options or {}))

    def sample(
        self,
        prompt: str | None = None,
        chat_template: bool | None = None,
        sampler: str = "confidence",
        sampler_options: dict[str, Any] | None = None,
        overrides: dict[str, Any] | None = None,
        lockstep=None,
    ) -> SampleResult:
        """One completion. ``lockstep`` (:class:`unmask.decoding.lockstep.LockstepOptions`) decodes a
        reasoning and an answer region in tandem instead of the plain block order."""
        if lockstep is not None:
            return self.sample_lockstep(prompt, chat_template, sampler, sampler_options or {}, overrides or {},
                                        lockstep)
        if self.task is not None:
            return self.sample_task(prompt, sampler, sampler_options or {}, overrides or {})
        if prompt is None:
            raise UnmaskError("--prompt is required for this model (only built-in task models have a default example)")
        ids = self.encode_prompt(prompt, chat_template)
        out = self.generate_ids([ids], sampler, sampler_options, overrides)
        gen = out.generated[0]
        return SampleResult(text=self.decode(gen), token_ids=gen, output=out, prompt_text=prompt)

    # ------------------------------------------------------------------ task models
    def task_item(self, prompt: str | None) -> dict[str, Any]:
        """The built-in example of the model's task, or an item built from the user's text. The
        text first goes through ``task.canvas_from_text`` (the server's rule too: whitespace
        dropped, a shorter text padded with blanks, an empty one = the built-in example); the task
        then decides what the canvas means (:meth:`~unmask.tasks.synthetic.SyntheticTask.item_from_text`)."""
        text = self.task.canvas_from_text(prompt or "")
        if not text:
            return self.task.example_item(BUILTIN_EXAMPLE_SEED)
        return self.task.item_from_text(text)

    def task_prompt_ids(self, item: dict[str, Any]) -> list[int]:
        return self.task.item_prompt_ids(item, self.tokenizer)

    def sample_task(self, prompt, sampler, sampler_options, overrides) -> SampleResult:
        task = self.task
        item = self.task_item(prompt)
        ids = self.task_prompt_ids(item)
        if overrides.get("max_new_tokens"):
            raise UnmaskError(f"{task.name} models fill a fixed canvas: drop --max_new_tokens")
        cfg = {**overrides, "max_new_tokens": 0, "stop_at_eos": False,
               "suppress_token_ids": tuple(task.suppressed_ids())}
        out = self.generate_ids([ids], sampler, sampler_options, cfg)
        answer = task.parse(out.sequences[0])
        scores = task.score(item, answer)
        extra: dict[str, Any] = {"task": task.name, "puzzle": item.get("puzzle"), "answer": answer,
                                 "correct": bool(scores.get("correct", 0.0))}
        extra.update({k: v for k, v in scores.items() if k != "correct"})
        extra.update(task.sample_extras(item, out.traces[0]))
        return SampleResult(text=task.render(answer), token_ids=out.sequences[0][1:], output=out,
                            prompt_text=item.get("puzzle") or "", extra=extra)

    # ------------------------------------------------------------------ lockstep (R and A regions)
    def text_canvas(self, prompt: str, chat_template: bool | None, opts
                    ) -> tuple[list[int], dict[str, tuple[int, int]]]:
        """Token ids and R/A spans of a text prompt (markers, or the separator layout)."""
        tok = self.tokenizer
        if tok is None:
            raise UnmaskError(f"{self.folder} has no tokenizer; pass token ids and region spans through the Python API")
        mask_id = int(self.model.config.mask_token_id)
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
        ids, spans = self.separator_canvases([self.encode_prompt(prompt, chat_template)], opts)
        return ids[0], spans[0]

    def separator_canvases(self, prompts: list[list[int]], opts
                           ) -> tuple[list[list[int]], list[dict[str, tuple[int, int]]]]:
        """``prompt R separator A`` after each encoded prompt: the canvases and their R/A spans (the
        separator is tokenized once)."""
        sep = opts.answer_separator
        sep_ids = list(self.tokenizer(sep, add_special_tokens=False)["input_ids"]) if sep else []
        mask_id = int(self.model.config.mask_token_id)
        canvases = [canvas_after_prompt(p, sep_ids, mask_id, opts.reasoning_tokens, opts.answer_tokens) for p in prompts]
        return [ids for ids, _ in canvases], [spans for _, spans in canvases]

    def region_texts(self, seq: list[int], spans: dict[str, tuple[int, int]]) -> dict[str, str]:
        """Decoded R, A and the whole span from the first region to the last (fixed text included)."""
        lo = min(s for s, _ in spans.values())
        hi = max(e for _, e in spans.values())
        return {"reasoning": self.decode(seq[slice(*spans["R"])]), "answer": self.decode(seq[slice(*spans["A"])]),
                "text": self.decode(seq[lo:hi])}

    def sample_lockstep(self, prompt, chat_template, sampler, sampler_options, overrides, opts):
        """``unmask sample --lockstep``: one prompt (or the task model's example) decoded in lockstep."""
        overrides = dict(overrides)
        if self.task is not None:
            task = self.task
            item = self.task_item(prompt)
            spans = task_regions(task, item)
            self._tell_view(overrides, spans)
            res = self.sample_task(prompt, sampler, sampler_options, {**overrides, "plan": opts.plan(spans)})
            seq = res.output.sequences[0]
            res.extra["reasoning"] = task.decode_ids(seq[slice(*spans["R"])])
            res.extra["answer_region"] = task.decode_ids(seq[slice(*spans["A"])])
            res.extra["lockstep"] = {"mode": opts.mode, **lockstep_metrics(res.trace)}
            return res
        if prompt is None:
            raise UnmaskError("--prompt is required for this model (with [R]/[A] markers or --answer_separator)")
        ids, spans = self.text_canvas(prompt, chat_template, opts)
        self._tell_view(overrides, spans)
        if overrides.get("max_new_tokens") is None:
            overrides["max_new_tokens"] = 0
        out = self.generate_ids([ids], sampler, sampler_options, {**overrides, "plan": opts.plan(spans)})
        seq = out.sequences[0]
        texts = self.region_texts(seq, spans)
        if out.generated[0]:
            texts["text"] += self.decode(out.generated[0])
        extra = {"reasoning": texts["reasoning"], "answer": texts["answer"],
                 "lockstep": {"mode": opts.mode, **lockstep_metrics(out.traces[0])}}
        return SampleResult(text=texts["text"], token_ids=seq, output=out, prompt_text=prompt, extra=extra)

    @staticmethod
    def _tell_view(overrides: dict[str, Any], spans: dict[str, tuple[int, int]]) -> None:
        """A live view (``--visualize``) labels the regions: its tokens hook is a bound method of an
        object with ``set_regions``."""
        owner = getattr(overrides.get("tokens_hook"), "__self__", None)
        if owner is not None and hasattr(owner, "set_regions"):
            owner.set_regions(spans)

    def lockstep_reply(self, prompt_ids: list[int], sampler, sampler_options, overrides, opts):
        """One chat reply decoded in lockstep after the templated prompt: returns the output and the
        reply text (R, separator, A; masks never shown)."""
        canvases, all_spans = self.separator_canvases([prompt_ids], opts)
        ids, spans = canvases[0], all_spans[0]
        self._tell_view(overrides, spans)
        out = self.generate_ids([ids], sampler, sampler_options,
                                   {**overrides, "max_new_tokens": 0, "plan": opts.plan(spans)})
        lo, hi = spans["R"][0], spans["A"][1]
        mask_id = int(self.model.config.mask_token_id)
        reply = self.decode([t for t in out.sequences[0][lo:hi] if t != mask_id]).strip()
        return out, reply

    @staticmethod
    def save_trace(result: SampleResult, path: str | Path) -> None:
        data = {"text": result.text, "prompt": result.prompt_text, **result.extra, "trace": result.trace.to_dict()}
        write_text(path, json.dumps(data), "trace file")


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"
