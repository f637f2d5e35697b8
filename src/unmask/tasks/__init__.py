"""Tasks: synthetic puzzles for the tiny models (:mod:`unmask.tasks.synthetic`) and benchmarks."""

from .synthetic import SyntheticTask, get_task, task_from_json, task_names

__all__ = ["SyntheticTask", "get_task", "task_from_json", "task_names"]
