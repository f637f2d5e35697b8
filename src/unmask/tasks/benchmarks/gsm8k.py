"""GSM8K (Cobbe et al., 2021): grade-school math word problems with a numeric answer.

Data: ``unmask/data/gsm8k/test.jsonl`` (1319 problems, MIT, OpenAI). Few-shot exemplars are the
first 8 training problems (``train_first8.jsonl``, verbatim lines of the upstream
``train.jsonl``); the default is **5-shot**, lm-evaluation-harness' default for ``gsm8k`` and
what the dllm/Info-Gain evaluation scripts run.

Prompt: ``Question: ...\\nAnswer: <worked solution ending in '#### n'>`` blocks. With a chat
template the exemplars become alternating user/assistant turns (lm-eval's
``--fewshot_as_multiturn``), so instruct models see the ``#### n`` convention in their own turns.

Answer extraction, first match wins:

1. ``#### n`` (the dataset's own convention; the first occurrence);
2. the last ``\\boxed{n}``;
3. the last "the answer is n" / "answer: n";
4. the last number in the output (lm-eval's "flexible-extract").

The record keeps which rule fired; ``strict_correct`` counts only rules 1-3. Comparison is exact
numeric equality after normalisation (``$``, thousands separators, a trailing period and trailing
zeros are ignored: ``$1,000.00`` equals ``1000``); no substring or tolerance matching. An output
with no number at all scores 0.

``--data`` format: JSONL with ``question`` and ``answer`` (either a worked solution ending in
``#### n`` or just the number), optional ``id``.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Any

from .base import EvalTask, assign_ids, data_dir, read_jsonl, require_fields

NUMBER = r"-?(?:\$\s*)?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+"
_NUM_RE = re.compile(NUMBER)
_HASH_RE = re.compile(r"####\s*(" + NUMBER + ")")
_ANSWER_IS_RE = re.compile(r"answer\s*(?:is|:)\s*:?\s*\**\s*(" + NUMBER + ")", re.IGNORECASE)
_BOXED_NUM_RE = re.compile(r"\\boxed\s*\{\s*(" + NUMBER + r")\s*\}")


def parse_number(text: str | None) -> Fraction | None:
    """Exact value of a number written like ``-1,234.50``, ``$18``, ``18.`` or ``3/4``; None when
    the text is not a single number."""
    if text is None:
        return None
    t = text.strip().replace("$", "").replace(" ", "").rstrip(".")
    if t.endswith("%"):
        t = t[:-1]
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", t):
        t = t.replace(",", "")
    m = re.fullmatch(r"(-?\d+)/(\d+)", t)
    if m:
        den = int(m.group(2))
        return Fraction(int(m.group(1)), den) if den else None
    try:
        return Fraction(Decimal(t))
    except (InvalidOperation, ValueError):
        return None


def gold_answer(answer: str | int | float) -> str:
    """The final number of a GSM8K reference (the text after ``####``, or the value itself)."""
    s = str(answer)
    return s.split("####")[-1].strip()


def extract_answer(text: str) -> tuple[str | None, str]:
    """``(number text, rule)``; rule is ``hash``, ``boxed``, ``answer_is``, ``last_number`` or
    ``none``."""
    m = _HASH_RE.search(text)
    if m:
        return m.group(1), "hash"
    boxed = _BOXED_NUM_RE.findall(text)
    if boxed:
        return boxed[-1], "boxed"
    ans = _ANSWER_IS_RE.findall(text)
    if ans:
        return ans[-1], "answer_is"
    nums = _NUM_RE.findall(text)
    if nums:
        return nums[-1], "last_number"
    return None, "none"


def numbers_equal(a: str | None, b: str | None) -> bool:
    x, y = parse_number(a), parse_number(b)
    return x is not None and y is not None and x == y


class GSM8K(EvalTask):
    name = "gsm8k"
    description = "GSM8K grade-school math (1319 test problems), final-number accuracy; 5-shot"
    default_fewshot = 5
    defaults = {"max_new_tokens": 256, "steps": 256, "block_size": 32}
    stop_sequences = ("Question:", "</s>", "<|im_end|>")
    data_format = 'JSONL {"question": str, "answer": str ("... #### n" or "n"), "id"?: str}'

    def default_data_path(self) -> Path:
        return data_dir() / "gsm8k" / "test.jsonl"

    def load(self, data_path=None) -> list[dict[str, Any]]:
        path = Path(data_path) if data_path else self.default_data_path()
        rows = read_jsonl(path)
        require_fields(rows, {"question": str, "answer": str}, path, self.data_format)
        return assign_ids(rows, "gsm8k")

    def fewshot(self, n: int) -> list[dict[str, Any]]:
        rows = read_jsonl(data_dir() / "gsm8k" / "train_first8.jsonl")
        if n > len(rows):
            from ...errors import UnmaskError

            raise UnmaskError(f"gsm8k has {len(rows)} few-shot exemplars; got --num_fewshot {n}")
        return rows[:n]

    def prompt(self, item, chat, num_fewshot):
        shots = self.fewshot(num_fewshot)
        if chat:
            msgs: list[dict[str, str]] = []
            for s in shots:
                msgs.append({"role": "user", "content": f"Question: {s['question']}"})
                msgs.append({"role": "assistant", "content": s["answer"]})
            msgs.append({"role": "user", "content": f"Question: {item['question']}"})
            return msgs
        blocks = [f"Question: {s['question']}\nAnswer: {s['answer']}" for s in shots]
        blocks.append(f"Question: {item['question']}\nAnswer:")
        return "\n\n".join(blocks)

    def extract(self, text, item):
        value, _ = extract_answer(text)
        return value

    def score(self, item, answer, text):
        gold = gold_answer(item["answer"])
        _, rule = extract_answer(text)
        ok = numbers_equal(answer, gold)
        return {"correct": float(ok), "strict_correct": float(ok and rule in ("hash", "boxed", "answer_is"))}

    def reference(self, item):
        return gold_answer(item["answer"])

    def settings(self):
        return {**super().settings(), "fewshot_source": "train_first8"}
