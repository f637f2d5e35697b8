"""Evaluation adapter for the synthetic tasks of the built-in tiny models (``sudoku``,
``multiply``, ``nae_sat`` in :mod:`unmask.tasks.synthetic`).

These are infilling tasks: the prompt is the task's canvas with mask tokens where the model must
write (``task.prompt_ids``), decoded with ``max_new_tokens = 0``; no chat template, no few-shot.
The answer is the task's ``parse`` of the final canvas and the metrics are the task's ``score``
(``correct`` plus e.g. ``obs_accuracy`` for NAE-SAT, ``cell_accuracy`` for Sudoku).

Items: ``task.make_dataset(n, seed=1234)`` (a pure function of the seed and the task parameters,
and prefix-stable, so ``--limit`` just takes the first items). When the model folder has a
``task.json`` the task is rebuilt from it (NAE-SAT's triples must match the model's). ``--data``
takes a JSONL file of items in the task's own format (e.g. ``{"puzzle": "..."}`` for Sudoku).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import UnmaskError
from .base import EvalTask, assign_ids, read_jsonl, sha256_json

DEFAULT_SIZE = 100
DEFAULT_SEED = 1234


class SyntheticEvalTask(EvalTask):
    uses_chat = False
    default_fewshot = 0
    defaults = {"max_new_tokens": 0}

    def __init__(self, task, size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED) -> None:
        self.task = task
        self.size = size
        self.seed = seed
        self.name = task.name  # type: ignore[misc]
        self.description = f"synthetic {task.name} (built-in tiny models), infilling"  # type: ignore[misc]
        self.data_format = f"JSONL of {task.name} items (the format of unmask.tasks {task.name}.sample)"  # type: ignore[misc]
        self._limit: int | None = None

    def difficulty(self) -> dict[str, Any]:
        return {"givens": (28, 32)} if self.task.name == "sudoku" else {}

    def set_limit(self, limit: int | None) -> None:
        """Only the first ``limit`` items are built (Sudoku generation is not free)."""
        self._limit = limit

    def load(self, data_path=None):
        if data_path:
            rows = read_jsonl(data_path)
            self.task.check_items(rows, str(data_path))
            return assign_ids(rows, self.task.name)
        n = self.size if self._limit is None else min(self.size, self._limit)
        return self.task.make_dataset(n, self.seed, **self.difficulty())

    def data_fingerprint(self, data_path=None):
        if data_path:
            from .base import sha256_file

            return sha256_file(Path(data_path))
        return sha256_json({"generated": self.task.task_json(), "size": self.size, "seed": self.seed,
                            "difficulty": self.difficulty()})

    def prompt(self, item, chat, num_fewshot):
        raise UnmaskError("synthetic tasks are decoded from token ids, not text prompts")

    def encode(self, session, item, chat, num_fewshot):
        if num_fewshot:
            raise UnmaskError(f"{self.name} has no few-shot examples; use --num_fewshot 0")
        try:
            return list(self.task.prompt_ids(item, session.tokenizer))
        except (KeyError, ValueError) as e:
            raise UnmaskError(f"{self.name}: bad item {item.get('id')}: {e}") from None

    def generation_defaults(self):
        # a decoder may only write answer characters (never Sudoku's blank markers or specials),
        # exactly as `unmask sample` / `unmask compare` decode these tasks
        return {"max_new_tokens": 0, "stop_at_eos": False, "suppress_token_ids": tuple(self.task.suppressed_ids())}

    def output_text(self, session, output, row, chat):
        return self.task.parse(output.sequences[row])

    def generated_tokens(self, output, row, prompt_ids):
        mask = getattr(self.task, "mask_id", None)
        return sum(1 for t in prompt_ids if t == mask)

    def extract(self, text, item):
        return text if text else None

    def score(self, item, answer, text):
        if answer is None:
            return {"correct": 0.0}
        return {k: float(v) for k, v in self.task.score(item, answer).items()}

    def reference(self, item):
        return item.get("solution", item.get("reference"))

    def settings(self):
        return {**super().settings(), "task_json": self.task.task_json()}
