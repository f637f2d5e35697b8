"""The `judge` reasoning/answer task (a walk over a lookup table): generator, verifier, layout and
the premature-answer metric, checked on hand-made items."""

from __future__ import annotations

import random

import pytest

from unmask.compare import premature_answer
from unmask.decoding.trace import TokenRecord, Trace
from unmask.tasks import get_task
from unmask.tasks.judge import false_claim, is_heldout, parse_reasoning, trajectory


@pytest.fixture(scope="module")
def task():
    return get_task("judge")


Q = "47165342=6"  # 0 -> 4 -> 5 -> 3 -> 6 -> 4 -> ... (a cycle of four), s_12 = 6


def test_trajectory_by_hand():
    assert trajectory(Q) == [4, 5, 3, 6] * 3
    assert trajectory("00000000=0") == [0] * 12  # f(0) = 0: the walk never moves
    assert trajectory("12345670=0") == [1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4]


def test_false_claims_are_states_the_walk_visits():
    rng = random.Random(0)
    table = [4, 7, 1, 6, 5, 3, 4, 2]
    for _ in range(50):
        c = false_claim(table, trajectory(Q), rng)
        assert c != 6 and c in {4, 5, 3}
    # a walk stuck on one state: another value of the table
    assert all(false_claim([0, 1, 1, 1, 1, 1, 1, 1], [0] * 12, rng) == 1 for _ in range(20))
    # a constant table: any other state
    assert all(false_claim([0] * 8, [0] * 12, rng) != 0 for _ in range(20))


def test_parse_reasoning_accepts_either_filler_side_and_rejects_malformed_steps():
    assert parse_reasoning("_1" * 12) == [1] * 12
    assert parse_reasoning("0_" * 6 + "_7" * 6) == [0] * 6 + [7] * 6
    assert parse_reasoning("__" + "_1" * 11) is None  # a step with two fillers
    assert parse_reasoning("11" + "_1" * 11) is None  # a step with two values
    assert parse_reasoning("8_" + "_1" * 11) is None  # not a state
    assert parse_reasoning("_1") is None


def test_layout_and_regions(task):
    item = {"question": Q, "answer": "Y"}
    ids = task.prompt_ids(item)
    assert len(ids) == task.canvas_len == 38
    reg = task.regions(item)
    (r0, r1), (a0, a1) = reg["R"], reg["A"]
    assert (r1 - r0, a1 - a0) == (24, 1)
    masked = [i for i, t in enumerate(ids) if t == task.mask_id]
    assert masked == list(range(r0, r1)) + list(range(a0, a1))
    text = task.decode_ids(ids[1:])
    assert text.startswith(Q + "|") and text[r1 - 1] == "|"


def _steps(values: list[int], left: bool = True) -> str:
    return "".join(f"{v}_" if left else f"_{v}" for v in values)


def _canvas(question: str, values: list[int], answer: str, left: bool = True) -> str:
    return f"{question}|{_steps(values, left)}|{answer}"


def test_score_on_hand_made_answers(task):
    truth = trajectory(Q)
    item = {"question": Q, "answer": "Y"}
    right = _canvas(Q, truth, "Y")
    assert task.score(item, right) == {"correct": 1.0, "r_correct": 1.0, "a_consistent": 1.0}
    assert task.score(item, _canvas(Q, truth, "Y", left=False))["r_correct"] == 1.0
    # the right verdict with a wrong last state: A correct, R wrong, and A no longer follows from R
    wrong = truth[:-1] + [3]
    assert task.score(item, _canvas(Q, wrong, "Y")) == {"correct": 1.0, "r_correct": 0.0, "a_consistent": 0.0}
    # a wrong R whose (wrong) last state makes N the consistent verdict
    assert task.score(item, _canvas(Q, wrong, "N"))["a_consistent"] == 1.0
    # a wrong middle step that still ends on the claim: R wrong, A right and consistent
    detour = truth[:5] + [0] + truth[6:]
    assert task.score(item, _canvas(Q, detour, "Y")) == {"correct": 1.0, "r_correct": 0.0, "a_consistent": 1.0}
    assert task.score(item, right[:-1] + "N")["correct"] == 0.0
    assert task.score(item, "short")["correct"] == 0.0
    false_q = Q[:-1] + "5"
    assert task.verify({"question": false_q, "answer": "N"}, _canvas(false_q, truth, "N"))


def test_generated_items_are_consistent_skewed_and_distinct(task):
    items = task.make_dataset(800, seed=1234)
    assert len({it["question"][:8] for it in items}) == 800
    for it in items:
        values = trajectory(it["question"])
        assert it["values"] == values
        assert it["answer"] == ("Y" if values[-1] == int(it["question"][-1]) else "N")
    share = sum(it["answer"] == "Y" for it in items) / len(items)
    assert 0.70 < share < 0.80  # the confident prior the trap relies on
    assert task.make_dataset(20, seed=5) == task.make_dataset(20, seed=5)


def test_training_examples_are_valid_and_never_heldout(task):
    rng = random.Random(7)
    for _ in range(300):
        ids, target = task.training_example(rng)
        text = task.decode_ids(ids[1:])
        question = text[:10]
        assert not is_heldout(question)
        item = {"question": question, "answer": text[-1]}
        assert task.score(item, text) == {"correct": 1.0, "r_correct": 1.0, "a_consistent": 1.0}
        assert [i for i, t in enumerate(target) if t] == task.derived_positions()
    assert all(is_heldout(it["question"]) for it in task.make_dataset(100, seed=99))


def _trace(order: list[tuple[int, int]]) -> Trace:
    t = Trace(prompt_length=38, max_new_tokens=0, initial_tokens=[0] * 38)
    t.tokens = [TokenRecord(step=s, position=p, token=0, confidence=1.0, entropy=0.0) for s, p in order]
    return t


def test_premature_answer_counts_only_earlier_steps(task):
    reg = task.regions()
    r = list(range(*reg["R"]))
    a = reg["A"][0]
    # answer first: premature
    assert premature_answer(_trace([(0, a)] + [(i + 1, p) for i, p in enumerate(r)]), reg)
    # reasoning first: not premature
    assert not premature_answer(_trace([(i, p) for i, p in enumerate(r)] + [(len(r), a)]), reg)
    # 11 of 24 R cells before A: premature; 12 of 24: not
    assert premature_answer(_trace([(i, p) for i, p in enumerate(r[:11])] + [(11, a)]), reg)
    assert not premature_answer(_trace([(i, p) for i, p in enumerate(r[:12])] + [(12, a)]), reg)
    # R cells committed in the same step as A do not count (Jacobi-style simultaneous commits)
    assert premature_answer(_trace([(0, p) for p in r[:13]] + [(0, a)]), reg)


def test_prefix_frac_gives_r_up_to_a_step_and_keeps_the_default_stream():
    plain = get_task("judge")
    assert "prefix_frac" not in plain.params  # models trained before the option rebuild the same task
    t = get_task("judge", prefix_frac=1.0)
    (r0, r1), (a0, _) = t.regions()["R"], t.regions()["A"]
    rng = random.Random(3)
    for _ in range(100):
        _, target = t.training_example(rng)
        first = next(i for i, v in enumerate(target) if v)
        assert r0 <= first < r1 and (first - r0) % 2 == 0  # a step boundary
        assert all(target[first:r1]) and target[a0]
    with pytest.raises(ValueError):
        get_task("judge", prefix_frac=1.5)
