"""Evaluation harness: resumable runs (:mod:`.runner`), crash-safe records (:mod:`.results`),
a code sandbox (:mod:`.sandbox`), sweeps (:mod:`.sweep`, :mod:`.plots`), multi-process sharding
(:mod:`.distributed`) and an lm-evaluation-harness adapter (:mod:`.lm_eval_adapter`).

    from unmask.eval import EvalSpec, run_eval
    summary = run_eval(EvalSpec(model="tiny-sudoku", task="sudoku", limit=10))

Lazy (PEP 562): the sandbox modules are standard library only and import without torch.
"""

from .._lazy import lazy_exports

_EXPORTS = {"EvalSpec": ".runner", "run_eval": ".runner"}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
