"""Resolve a ``--task`` name to an evaluation task: a benchmark, or a synthetic task of the
built-in tiny models (rebuilt from the model folder's ``task.json`` when it has one)."""

from __future__ import annotations

import json
from pathlib import Path

from ...errors import UnmaskError
from . import benchmark_names, canonical_name, get_benchmark
from .base import EvalTask


def synthetic_names() -> list[str]:
    from ..synthetic import task_names

    return task_names()


def task_names() -> list[str]:
    """Every name ``--task`` accepts (aliases excluded)."""
    return sorted(set(benchmark_names()) | set(synthetic_names()))


def model_task_json(model_folder: str | Path | None) -> dict | None:
    """The ``task.json`` of a built-in/trained tiny model folder, or None."""
    if model_folder is None:
        return None
    p = Path(model_folder) / "task.json"
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise UnmaskError(f"{p} is not valid JSON: {e}") from None


def resolve_task(name: str | None, model_folder: str | Path | None = None) -> EvalTask:
    """The evaluation task for ``name``; with ``name`` None, the task a tiny model was trained on."""
    from ..synthetic import get_task, task_from_json
    from .synthetic_eval import SyntheticEvalTask

    meta = model_task_json(model_folder)
    if name is None:
        if meta is None:
            raise UnmaskError("--task is required (this model folder has no task.json)")
        name = str(meta["task"])
    key = canonical_name(name)
    if key in synthetic_names():
        if meta is not None:
            if meta.get("task") != key:
                raise UnmaskError(f"the model was trained on the {meta.get('task')!r} task, not {key!r}")
            return SyntheticEvalTask(task_from_json(meta))
        return SyntheticEvalTask(get_task(key))
    return get_benchmark(key)
