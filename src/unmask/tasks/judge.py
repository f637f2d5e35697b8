"""Judge a claim about a chain of operations: reasoning region R, answer region A.

This is the reasoning/answer trap of the Info-Gain paper's judgment tasks, made small enough to
train on a CPU. A question states a start digit, five operations modulo 10 and a claimed final
value; the model writes the running values (R) and then judges the claim (A = ``Y``/``N``).

Canvas (``[BOS]`` + 26 characters)::

    3+4*2-5+7*3=6 | _7 8_ _3 0_ 0_ | N
    question (13)   R (10)          A (1)      (spaces added here for reading only)

* **Question** (given, never masked): start digit, five ``op digit`` pairs with ``op`` in
  ``+ - *`` and a digit 1-9, evaluated left to right modulo 10, then ``=`` and the claimed value.
  75% of claims are true (the claimed value is the real result); a false claim names another
  digit uniformly. The answer therefore has a confident *prior*: ``Y`` with probability 0.75.
* **R** (five steps, two cells each): step ``i`` holds the running value after operation ``i``
  and a filler ``_``, in an order drawn at random per step (``_v`` or ``v_``). The filler stands in
  for what reasoning text has and arithmetic does not: several equally good ways to write the same
  content. It makes every R cell at most 50% certain before anything of R is written, while the
  *value* of each step is exactly determined by the question and the step before.
* **A** (one cell): ``Y`` when the claim equals the final running value, else ``N``.

Why this shows the trap: before R is written, the most certain cell on the canvas is A (about
0.75, the prior, unless the model can compose five operations in one forward, which a small
model learns slowly if at all), so certainty-greedy samplers (confidence, margin, entropy) commit
the answer first and land near the prior. Writing R first (left to right) makes each value a
single table look-up and the final comparison trivial, so a reasoning-first order is near
perfect once the model has learned one step. Why not ``ab*cd=efgh?`` with the product in R: a
trained model is confident about product digits given the factors, so a certainty sampler writes
R first on its own and there is no trap to measure; the trap needs reasoning cells that are
individually uncertain, as natural-language reasoning tokens are.

Held-out items are disjoint from training by construction: a question belongs to the test split
when a hash of its text falls in one bucket of eight; training never draws such questions.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence
from typing import Any

from .synthetic import SyntheticTask, register

N_OPS = 5
OPS = "+-*"
QUESTION_LEN = 1 + 2 * N_OPS + 2  # start, (op digit) x 5, '=', claim
R_START = 1 + QUESTION_LEN + 1  # canvas index of the first R cell ([BOS] + question + '|')
R_LEN = 2 * N_OPS
A_START = R_START + R_LEN + 1  # after the second '|'
A_LEN = 1
TRUE_RATE = 0.75
HELDOUT_BUCKETS = 8


def apply_op(value: int, op: str, operand: int) -> int:
    if op == "+":
        return (value + operand) % 10
    if op == "-":
        return (value - operand) % 10
    if op == "*":
        return (value * operand) % 10
    raise ValueError(f"unknown operation {op!r}")


def chain_values(question: str) -> list[int]:
    """Running values after each operation of a question such as ``3+4*2-5+7*3=6``."""
    value = int(question[0])
    out = []
    for i in range(N_OPS):
        op, operand = question[1 + 2 * i], int(question[2 + 2 * i])
        value = apply_op(value, op, operand)
        out.append(value)
    return out


def claim_of(question: str) -> int:
    return int(question[-1])


def is_heldout(question: str) -> bool:
    """True for questions reserved for evaluation (a fixed one-in-eight split by hash)."""
    return zlib.crc32(question.encode()) % HELDOUT_BUCKETS == 0


def parse_reasoning(r: str) -> list[int] | None:
    """The five running values written in ``r`` (10 cells), or None when a step is malformed
    (each step must be one digit and one ``_`` in either order)."""
    if len(r) != R_LEN:
        return None
    values = []
    for i in range(N_OPS):
        a, b = r[2 * i], r[2 * i + 1]
        if a == "_" and b.isdigit():
            values.append(int(b))
        elif b == "_" and a.isdigit():
            values.append(int(a))
        else:
            return None
    return values


@register("judge")
class JudgeTask(SyntheticTask):
    """Params: ``true_rate`` (share of true claims, default 0.75)."""

    name = "judge"
    alphabet = "0123456789+-*=|_YN"
    answer_alphabet = "0123456789_YN"  # what a decoder may write into R or A
    seq_len = QUESTION_LEN + 1 + R_LEN + 1 + A_LEN
    conditional = True

    def __init__(self, true_rate: float = TRUE_RATE) -> None:
        if not 0.0 < float(true_rate) < 1.0:
            raise ValueError(f"true_rate must be in (0, 1), got {true_rate}")
        super().__init__(true_rate=float(true_rate))
        self.true_rate = float(true_rate)

    # ------------------------------------------------------------------ layout
    def regions(self, item: dict[str, Any] | None = None) -> dict[str, tuple[int, int]]:
        """Canvas spans (``[start, end)``, BOS = index 0) of the reasoning and answer regions."""
        return {"R": (R_START, R_START + R_LEN), "A": (A_START, A_START + A_LEN)}

    def derived_positions(self) -> list[int]:
        return list(range(R_START, R_START + R_LEN)) + list(range(A_START, A_START + A_LEN))

    # ------------------------------------------------------------------ data
    def _question(self, rng: random.Random, heldout: bool) -> tuple[str, bool]:
        while True:
            start = rng.randint(0, 9)
            parts = [str(start)]
            for _ in range(N_OPS):
                parts.append(rng.choice(OPS) + str(rng.randint(1, 9)))
            body = "".join(parts)
            final = chain_values(body + "=0")[-1]
            true = rng.random() < self.true_rate
            claim = final if true else rng.choice([d for d in range(10) if d != final])
            question = f"{body}={claim}"
            if is_heldout(question) == heldout:
                return question, true

    def solution_text(self, question: str, rng: random.Random) -> str:
        """A full canvas text (without BOS) for ``question``; filler sides drawn from ``rng``."""
        values = chain_values(question)
        r = "".join(f"_{v}" if rng.random() < 0.5 else f"{v}_" for v in values)
        answer = "Y" if values[-1] == claim_of(question) else "N"
        return f"{question}|{r}|{answer}"

    def sample(self, rng: random.Random, **difficulty: Any) -> dict[str, Any]:
        question, true = self._question(rng, heldout=True)
        values = chain_values(question)
        return {"question": question, "answer": "Y" if true else "N", "values": values}

    def training_example(self, rng: random.Random) -> tuple[list[int], list[bool]]:
        question, _ = self._question(rng, heldout=False)
        ids = [self.bos_id] + self.encode_text(self.solution_text(question, rng))
        target = [False] * self.canvas_len
        for p in self.derived_positions():
            target[p] = True
        return ids, target

    def prompt_ids(self, item: dict[str, Any], tokenizer=None) -> list[int]:
        bos, mask = self._special_ids(tokenizer)
        sep = self.char_ids["|"]
        return ([bos] + self.encode_text(item["question"]) + [sep] + [mask] * R_LEN + [sep]
                + [mask] * A_LEN)

    # ------------------------------------------------------------------ scoring
    def parse(self, text_or_ids: str | Sequence[int]) -> str:
        return self.answer_text(text_or_ids)

    def split(self, text: str) -> tuple[str, str]:
        """``(R text, A text)`` of a parsed answer string (canvas without BOS)."""
        r0, a0 = R_START - 1, A_START - 1
        return text[r0:r0 + R_LEN], text[a0:a0 + A_LEN]

    def score(self, item: dict[str, Any], answer: str | Sequence[int]) -> dict[str, float]:
        """``correct`` (A right), ``r_correct`` (every running value right and well formed) and
        ``a_consistent`` (A is the right verdict for the final value R wrote, right or wrong)."""
        text = answer if isinstance(answer, str) else self.parse(answer)
        if len(text) != self.seq_len:
            return {"correct": 0.0, "r_correct": 0.0, "a_consistent": 0.0}
        r, a = self.split(text)
        values = parse_reasoning(r)
        truth = chain_values(item["question"])
        claim = claim_of(item["question"])
        out = {"correct": float(a == item["answer"]), "r_correct": float(values == truth)}
        if values is None or a not in ("Y", "N"):
            out["a_consistent"] = 0.0
        else:
            out["a_consistent"] = float(a == ("Y" if values[-1] == claim else "N"))
        return out

    def verify(self, item: dict[str, Any], answer: str | Sequence[int]) -> bool:
        return self.score(item, answer)["correct"] == 1.0
