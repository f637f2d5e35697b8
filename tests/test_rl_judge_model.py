"""The shipped ``tiny-judge-rl`` (tiny-judge after GRPO, docs/rl.md round 3): it loads by alias, and
on fixed held-out items greedy confidence decoding writes the walk before the verdict and is right,
while left to right, the order that already worked, still is. Real weights: a bad export fails here."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from unmask.compare import premature_answer
from unmask.models.registry import resolve_model_path
from unmask.session import Session
from unmask.tasks.judge import is_heldout


@pytest.fixture(scope="module")
def session() -> Session:
    return Session.load("tiny-judge-rl")


def test_loads_by_alias_with_its_card(session):
    folder = resolve_model_path("tiny-judge-rl")
    for name in ("config.json", "model.safetensors", "tokenizer.json", "task.json", "MODEL_CARD.md", "RL.json"):
        assert (folder / name).is_file(), name
    assert session.task is not None and session.task.name == "judge"
    assert "unmask rl" in (folder / "MODEL_CARD.md").read_text()


def _decode(session, sampler):
    task = session.task
    items = task.make_dataset(24, seed=4244)
    assert all(is_heldout(it["question"]) for it in items)
    out = session.generate_ids([session.task_prompt_ids(it) for it in items], sampler,
                               overrides={"max_new_tokens": 0, "temperature": 0.0,
                                          "suppress_token_ids": tuple(task.suppressed_ids())})
    scores = [task.score(it, seq) for it, seq in zip(items, out.sequences)]
    premature = []
    for t in out.traces:
        order = [[rec.step, rec.position, rec.token] for rec in t.tokens]
        premature.append(premature_answer(SimpleNamespace(order=order), task.regions()))
    return scores, premature


def test_greedy_confidence_walks_first_and_left_to_right_still_works(session):
    scores, premature = _decode(session, "confidence")
    assert sum(s["correct"] for s in scores) >= 22, scores
    assert sum(premature) <= 12, premature  # tiny-judge commits the verdict first on every item
    scores, premature = _decode(session, "leftright")
    assert sum(s["correct"] for s in scores) >= 23 and not any(premature), scores
