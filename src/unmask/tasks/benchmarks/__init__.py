"""Evaluation benchmarks: one module per family and a registry.

``get_benchmark(name)`` builds a benchmark task by name; :func:`unmask.tasks.benchmarks.registry.
resolve_task` also resolves the synthetic tasks of the built-in tiny models. Every task follows
:class:`unmask.tasks.benchmarks.base.EvalTask`.
"""

from __future__ import annotations

from collections.abc import Callable

from ...errors import UnmaskError
from .base import EvalTask
from .code import MBPP, HumanEval, MBPPSanitized
from .gsm8k import GSM8K
from .math500 import Math500
from .planning import Countdown, Countdown4, Countdown5, Sudoku4, sudoku4_variant
from .truthfulqa import TruthfulQA
from .writing import Writing

_BENCHMARKS: dict[str, Callable[[], EvalTask]] = {
    "gsm8k": GSM8K,
    "math500": Math500,
    "humaneval": HumanEval,
    "mbpp": MBPP,
    "mbpp_sanitized": MBPPSanitized,
    "truthfulqa": TruthfulQA,
    "countdown3": Countdown,
    "countdown4": Countdown4,
    "countdown5": Countdown5,
    "sudoku4": Sudoku4,
    "writing": Writing,
}
for _n in range(4, 13):
    _BENCHMARKS[f"sudoku4_{_n}"] = sudoku4_variant(_n)

#: alternative spellings
ALIASES = {"countdown": "countdown3", "math": "math500", "truthfulqa_gen": "truthfulqa", "cd3": "countdown3",
           "cd4": "countdown4", "cd5": "countdown5", "sudoku_4x4": "sudoku4",
           "creativity_writing": "writing", "writing_prompts": "writing"}


def benchmark_names() -> list[str]:
    return sorted(_BENCHMARKS)


def canonical_name(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    return ALIASES.get(key, key)


def get_benchmark(name: str) -> EvalTask:
    """A fresh benchmark task object (tasks hold per-run settings such as sandbox limits)."""
    key = canonical_name(name)
    if key not in _BENCHMARKS:
        raise UnmaskError(f"unknown benchmark {name!r}; choose one of {', '.join(benchmark_names())}")
    return _BENCHMARKS[key]()


__all__ = ["EvalTask", "benchmark_names", "canonical_name", "get_benchmark"]
