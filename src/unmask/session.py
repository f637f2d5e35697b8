"""A loaded model + tokenizer, and the glue that turns text into a generation and back.

Used by the CLI (``sample``, ``chat``) and by the evaluation runner, so prompt building, stop
tokens and output decoding are written once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .decoding.engine import GenerationConfig, GenerationOutput, generate
from .errors import UnmaskError
from .models.registry import resolve_model_path

#: end-of-turn markers of the chat templates we know (LLaDA, Dream/Qwen, our tiny models)
END_OF_TURN_TOKENS = ("<|eot_id|>", "<|im_end|>", "<|eot|>", "<|endoftext|>", "<|dlm_pad|>")
DEFAULT_MAX_NEW_TOKENS = 128


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
            f"[nfe={tr.nfe} cumulative_entropy={tr.cumulative_entropy:.3f} "
            f"seconds={self.output.seconds:.2f} tokens/s={self.output.tokens_per_second:.1f}]"
        )

    def render(self) -> str:
        lines = [self.text]
        for k, v in self.extra.items():
            if k in ("task", "puzzle", "answer", "correct", "score"):
                lines.append(f"{k}: {v}")
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
        tok = None
        if any((folder / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
            tok = load_tokenizer(folder)
        task = None
        if (folder / "task.json").exists():
            from .tasks.synthetic import task_from_folder

            task = task_from_folder(folder)
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
    ) -> SampleResult:
        if self.task is not None:
            return self.task.sample_with_session(self, prompt, sampler, sampler_options or {}, overrides or {})
        if prompt is None:
            raise UnmaskError("--prompt is required for this model (only built-in task models have a default example)")
        ids = self.encode_prompt(prompt, chat_template)
        out = self.generate_ids([ids], sampler, sampler_options, overrides)
        gen = out.generated[0]
        return SampleResult(text=self.decode(gen), token_ids=gen, output=out, prompt_text=prompt)

    @staticmethod
    def save_trace(result: SampleResult, path: str | Path) -> None:
        data = {"text": result.text, "prompt": result.prompt_text, **result.extra, "trace": result.trace.to_dict()}
        Path(path).write_text(json.dumps(data))


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"
