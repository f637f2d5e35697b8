"""Prompts for RL: training-split items of a synthetic task, or a JSONL file.

Held-out questions must never be trained on. ``make_dataset`` of a conditional task draws the
held-out split (it is what ``unmask compare`` evaluates), so training prompts of conditional
tasks are built from ``training_example`` instead: its canvas, with every derived cell masked,
becomes a ``puzzle`` item. Unconditional tasks (``multiply``) have one empty canvas; their items
only differ by id (the rollout seed makes the rows differ).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from ..errors import UnmaskError
from ..userio import parse_jsonl, read_text


def training_items(task, n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    if not task.conditional:
        return task.make_dataset(n, seed=seed)
    derived = set(task.derived_positions())
    if not derived:
        raise UnmaskError(f"task {task.name} names no derived cells, so it has no training prompts for RL")
    items = []
    for k in range(n):
        ids, _ = task.training_example(rng)
        chars = ["?" if p in derived else task.id_chars[t] for p, t in enumerate(ids) if p > 0]
        items.append({"puzzle": "".join(chars), "id": f"{task.name}-train-{seed}-{k}"})
    return items


def read_jsonl(path: str) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.is_file():
        raise UnmaskError(f"--prompts {path}: no such file")
    items = parse_jsonl(read_text(p, "--prompts file"), p)
    for i, item in enumerate(items, 1):
        if not isinstance(item.get("prompt"), str):
            raise UnmaskError(f"--prompts {path}: record {i} needs a string field 'prompt'")
    if not items:
        raise UnmaskError(f"--prompts {path}: no items")
    return items
