"""Creative writing: 200 WritingPrompts instructions, judged by an LLM (no reference answer).

Data: ``writing/creativity_writing.jsonl`` from the Info-Gain sampler's repository (MIT; the
prompts are r/WritingPrompts posts as collected in the WritingPrompts dataset, see
``unmask/data/README.md``). Each record is ``{"source": "writing_prompts", "prompt": str}``; the
prompt already contains the instruction ("... Aim for 500 words ..."), so it is the user turn
as is, with no examples (the reference's ``build_prompt`` does the same).

Scoring. A story has no right answer: ``correct`` is never set (the summary's accuracy reads 0
and means nothing here). Each record gets two judge-free figures, ``words`` and ``repetition``
(the share of the story's word trigrams that repeat an earlier trigram of the same story). The
corpus figures (distinct-n, self-BLEU, the share of canvases filled without an EOS) and the LLM
judge live in :mod:`unmask.eval.writing_judge`, because they need every story of a run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .base import EvalTask, assign_ids, data_dir, read_jsonl, require_fields

_WORD = re.compile(r"\w+(?:'\w+)?|[^\w\s]", re.UNICODE)


def words(text: str) -> list[str]:
    """Lower-cased words and single punctuation marks (the unit of every judge-free metric)."""
    return _WORD.findall(text.lower())


def repetition_rate(tokens: list[str], n: int = 3) -> float:
    """Share of the n-grams that already occurred earlier in the same text (0 for < n tokens)."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


class Writing(EvalTask):
    name = "writing"
    description = "creative writing (200 WritingPrompts), judged by an LLM (--judge_base_url) plus judge-free metrics"
    defaults = {"max_new_tokens": 512, "steps": 512, "block_size": 32}
    data_format = 'JSONL {"prompt": str, "source"?: str, "id"?: str}'

    def default_data_path(self) -> Path:
        return data_dir() / "writing" / "creativity_writing.jsonl"

    def load(self, data_path=None) -> list[dict[str, Any]]:
        path = Path(data_path) if data_path else self.default_data_path()
        rows = read_jsonl(path)
        require_fields(rows, {"prompt": str}, path, self.data_format)
        return assign_ids(rows, "writing")

    def prompt(self, item: dict[str, Any], chat: bool, num_fewshot: int):
        if chat:
            return [{"role": "user", "content": item["prompt"]}]
        return item["prompt"] + "\n\n"

    def extract(self, text: str, item: dict[str, Any]) -> Any:
        story = text.strip()
        return story or None

    def score(self, item: dict[str, Any], answer: Any, text: str) -> dict[str, float]:
        toks = [t for t in words(text) if t[0].isalnum()]
        return {"words": float(len(toks)), "repetition": repetition_rate(toks)}

    def reference(self, item: dict[str, Any]) -> Any:
        return item["prompt"]  # what the judge is shown as the writing prompt
