"""Evaluation harness: resumable runs (:mod:`.runner`), crash-safe records (:mod:`.results`),
a code sandbox (:mod:`.sandbox`), sweeps (:mod:`.sweep`, :mod:`.plots`), multi-process sharding
(:mod:`.distributed`) and an lm-evaluation-harness adapter (:mod:`.lm_eval_adapter`).

    from unmask.eval import EvalSpec, run_eval
    summary = run_eval(EvalSpec(model="tiny-sudoku", task="sudoku", limit=10))
"""

from .runner import EvalSpec, run_eval

__all__ = ["EvalSpec", "run_eval"]
