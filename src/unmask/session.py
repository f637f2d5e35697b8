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


def render_task_answer(task: str, answer: str) -> str:
    """Human-readable answer: Sudoku as a 9x9 grid, the others as they are."""
    if task != "sudoku" or len(answer) != 81:
        return answer
    lines = []
    for r in range(9):
        row = answer[9 * r : 9 * r + 9]
        lines.append(" ".join(row[0:3]) + " | " + " ".join(row[3:6]) + " | " + " ".join(row[6:9]))
        if r in (2, 5):
            lines.append("------+-------+------")
    return "\n".join(lines)


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
        """One completion. ``lockstep`` (:class:`unmask.lockstep_run.LockstepOptions`) decodes a
        reasoning and an answer region in tandem instead of the plain block order."""
        if lockstep is not None:
            from .lockstep_run import sample_lockstep

            return sample_lockstep(self, prompt, chat_template, sampler, sampler_options or {}, overrides or {},
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
        """The built-in example of the model's task, or an item built from the user's text:
        Sudoku takes 81 cells (``0`` or ``.`` = blank); the other tasks take a canvas of their
        answer length with ``?`` or ``_`` where the model must fill; a shorter text is padded with
        blanks (``task.canvas_from_text``, the server's rule too)."""
        task = self.task
        text = task.canvas_from_text(prompt or "")  # the rule the server uses too
        if not text:
            if task.name == "sudoku":
                return task.make_dataset(1, seed=BUILTIN_EXAMPLE_SEED, givens=(28, 32))[0]
            return task.make_dataset(1, seed=BUILTIN_EXAMPLE_SEED)[0]
        if task.name == "sudoku":
            from .tasks.sudoku import parse_grid

            try:
                parse_grid(text)
            except ValueError as e:
                raise UnmaskError(f"not a Sudoku puzzle: {e}") from e
            return {"puzzle": text}
        return {"puzzle": text}

    def task_prompt_ids(self, item: dict[str, Any]) -> list[int]:
        ids = self.task.prompt_ids(item, self.tokenizer)
        if self.task.name == "sudoku" or "puzzle" not in item:
            return ids
        return self._overlay(ids, item["puzzle"])

    def _overlay(self, ids: list[int], text: str) -> list[int]:
        """Pin the characters the user gave (anything but ``?``/``_``) on the task's canvas."""
        out = list(ids)
        for i, ch in enumerate(text):
            if ch in "?_":
                continue
            try:
                out[1 + i] = self.task.char_ids[ch]
            except KeyError:
                raise UnmaskError(f"character {ch!r} is not in the {self.task.name} alphabet") from None
        return out

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
        if task.name == "multiply":
            from .tasks.multiply import product_before_factors

            extra["product_first"] = product_before_factors([p for _, p, _ in out.traces[0].order])
        return SampleResult(text=render_task_answer(task.name, answer), token_ids=out.sequences[0][1:], output=out,
                            prompt_text=item.get("puzzle") or "", extra=extra)

    @staticmethod
    def save_trace(result: SampleResult, path: str | Path) -> None:
        data = {"text": result.text, "prompt": result.prompt_text, **result.extra, "trace": result.trace.to_dict()}
        write_text(path, json.dumps(data), "trace file")


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"
