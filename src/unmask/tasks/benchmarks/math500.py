"""MATH-500 (Lightman et al., 2023; problems from Hendrycks et al., 2021).

Data: ``unmask/data/math500/test.jsonl`` (500 problems, MIT, OpenAI ``prm800k``). Zero-shot by
default, as the Info-Gain reference configs run it (``no_shot``); there are no few-shot
exemplars, and ``--num_fewshot`` other than 0 is rejected.

Prompt: the problem followed by an instruction to reason step by step and put the final answer in
``\\boxed{}``. Scoring: the content of the **last** ``\\boxed{...}`` of the output (nested braces
handled) must be equivalent to the reference ``answer`` under
:func:`unmask.tasks.benchmarks.latex.is_equiv`. An output without a box scores 0 (no fallback to
"the last number").

``--data`` format: JSONL with ``problem`` and ``answer`` (LaTeX), optional ``unique_id``/``id``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import UnmaskError
from .base import EvalTask, assign_ids, data_dir, read_jsonl, require_fields
from .latex import is_equiv, last_boxed

INSTRUCTION = "Solve the problem below. Reason step by step, then write the final answer inside \\boxed{}."


class Math500(EvalTask):
    name = "math500"
    description = "MATH-500 competition math, boxed-answer equivalence after LaTeX normalisation; 0-shot"
    default_fewshot = 0
    defaults = {"max_new_tokens": 512, "steps": 512, "block_size": 32}
    data_format = 'JSONL {"problem": str, "answer": str (LaTeX), "unique_id"?: str}'

    def default_data_path(self) -> Path:
        return data_dir() / "math500" / "test.jsonl"

    def load(self, data_path=None) -> list[dict[str, Any]]:
        path = Path(data_path) if data_path else self.default_data_path()
        rows = read_jsonl(path)
        require_fields(rows, {"problem": str, "answer": (str, int, float)}, path, self.data_format)
        id_field = "unique_id" if all("unique_id" in r for r in rows) else None
        return assign_ids(rows, "math500", id_field)

    def prompt(self, item, chat, num_fewshot):
        if num_fewshot:
            raise UnmaskError("math500 is zero-shot (no exemplars are defined); use --num_fewshot 0")
        text = f"{INSTRUCTION}\n\nProblem: {item['problem']}"
        if chat:
            return [{"role": "user", "content": text}]
        return text + "\n\nSolution:"

    def extract(self, text, item):
        return last_boxed(text)

    def score(self, item, answer, text):
        return {"correct": float(is_equiv(answer, str(item["answer"])))}

    def reference(self, item):
        return item["answer"]
