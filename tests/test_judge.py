"""The `judge` reasoning/answer task: generator, verifier, layout and the premature-answer metric,
checked on hand-made items."""

from __future__ import annotations

import random

import pytest

from unmask.compare import premature_answer
from unmask.decoding.trace import TokenRecord, Trace
from unmask.tasks import get_task
from unmask.tasks.judge import chain_values, is_heldout, parse_reasoning


@pytest.fixture(scope="module")
def task():
    return get_task("judge")


def test_chain_values_by_hand():
    # 3+4=7, 7*2=14->4, 4-5=-1->9, 9+7=16->6, 6*3=18->8
    assert chain_values("3+4*2-5+7*3=8") == [7, 4, 9, 6, 8]
    # subtraction wraps modulo 10 and multiplication keeps the last digit
    assert chain_values("0-1-1-1-1-1=5") == [9, 8, 7, 6, 5]
    assert chain_values("5*9*9*9*9*9=5") == [5, 5, 5, 5, 5]


def test_parse_reasoning_accepts_either_filler_side_and_rejects_malformed_steps():
    assert parse_reasoning("_74_9__68_") == [7, 4, 9, 6, 8]
    assert parse_reasoning("7_4__9_68_") == [7, 4, 9, 6, 8]
    assert parse_reasoning("__74_9_68_") is None  # a step with two fillers
    assert parse_reasoning("774_9_6_8_") is None  # a step with two digits
    assert parse_reasoning("_7") is None


def test_layout_and_regions(task):
    item = {"question": "3+4*2-5+7*3=8", "answer": "Y"}
    ids = task.prompt_ids(item)
    assert len(ids) == task.canvas_len == 27
    reg = task.regions(item)
    (r0, r1), (a0, a1) = reg["R"], reg["A"]
    assert (r1 - r0, a1 - a0) == (10, 1)
    masked = [i for i, t in enumerate(ids) if t == task.mask_id]
    assert masked == list(range(r0, r1)) + list(range(a0, a1))
    text = task.decode_ids(ids[1:])
    assert text.startswith("3+4*2-5+7*3=8|") and text[r1 - 1] == "|"


def test_score_on_hand_made_answers(task):
    item = {"question": "3+4*2-5+7*3=8", "answer": "Y"}
    right = "3+4*2-5+7*3=8|_74_9__68_|Y"
    assert task.score(item, right) == {"correct": 1.0, "r_correct": 1.0, "a_consistent": 1.0}
    # the right verdict with a wrong step: A correct, R wrong, and A no longer follows from R
    wrong_r = "3+4*2-5+7*3=8|_74_9__63_|Y"
    assert task.score(item, wrong_r) == {"correct": 1.0, "r_correct": 0.0, "a_consistent": 0.0}
    # a wrong R whose (wrong) last value makes N the consistent verdict
    assert task.score(item, "3+4*2-5+7*3=8|_74_9__63_|N")["a_consistent"] == 1.0
    assert task.score(item, "3+4*2-5+7*3=8|_74_9__68_|N")["correct"] == 0.0
    assert task.score(item, "short")["correct"] == 0.0
    false_item = {"question": "3+4*2-5+7*3=2", "answer": "N"}
    assert task.verify(false_item, "3+4*2-5+7*3=2|7_4_9_6_8_|N")


def test_generated_items_are_consistent_and_skewed(task):
    items = task.make_dataset(2000, seed=1234)
    for it in items[:200]:
        values = chain_values(it["question"])
        assert it["values"] == values
        assert it["answer"] == ("Y" if values[-1] == int(it["question"][-1]) else "N")
    share = sum(it["answer"] == "Y" for it in items) / len(items)
    assert 0.72 < share < 0.78  # the confident prior the trap relies on


def test_training_examples_are_valid_and_never_heldout(task):
    rng = random.Random(7)
    for _ in range(300):
        ids, target = task.training_example(rng)
        text = task.decode_ids(ids[1:])
        question = text[:13]
        assert not is_heldout(question)
        item = {"question": question, "answer": text[-1]}
        assert task.score(item, text)["r_correct"] == 1.0
        assert [i for i, t in enumerate(target) if t] == task.derived_positions()
    assert all(is_heldout(it["question"]) for it in task.make_dataset(100, seed=99))


def _trace(order: list[tuple[int, int]]) -> Trace:
    t = Trace(prompt_length=27, max_new_tokens=0, initial_tokens=[0] * 27)
    t.tokens = [TokenRecord(step=s, position=p, token=0, confidence=1.0, entropy=0.0) for s, p in order]
    return t


def test_premature_answer_counts_only_earlier_steps(task):
    reg = task.regions()
    r = list(range(*reg["R"]))
    a = reg["A"][0]
    # answer first: premature
    assert premature_answer(_trace([(0, a)] + [(i + 1, p) for i, p in enumerate(r)]), reg)
    # reasoning first: not premature
    assert not premature_answer(_trace([(i, p) for i, p in enumerate(r)] + [(10, a)]), reg)
    # 4 of 10 R cells before A: premature; 5 of 10: not
    assert premature_answer(_trace([(i, p) for i, p in enumerate(r[:4])] + [(4, a)]), reg)
    assert not premature_answer(_trace([(i, p) for i, p in enumerate(r[:5])] + [(5, a)]), reg)
    # R cells committed in the same step as A do not count (Jacobi-style simultaneous commits)
    assert premature_answer(_trace([(0, p) for p in r[:6]] + [(0, a)]), reg)
