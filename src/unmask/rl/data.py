"""Prompts for RL: training-split items of a synthetic task, or a JSONL file.

Held-out questions must never be trained on. ``make_dataset`` of a conditional task draws the
held-out split (it is what ``unmask compare`` evaluates), so training prompts of conditional
tasks are built from ``training_example`` instead: its canvas, with every derived cell masked,
becomes a ``puzzle`` item. Unconditional tasks (``multiply``) have one empty canvas; their items
only differ by id (the rollout seed makes the rows differ).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from ..errors import UnmaskError


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
    items = []
    for i, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise UnmaskError(f"--prompts {path}: line {i} is not JSON ({e.msg})") from None
        if not isinstance(item, dict) or not isinstance(item.get("prompt"), str):
            raise UnmaskError(f"--prompts {path}: line {i} needs a string field 'prompt'")
        items.append(item)
    if not items:
        raise UnmaskError(f"--prompts {path}: no items")
    return items
