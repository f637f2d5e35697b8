"""Judge a claim about the parity of a bit string: reasoning region R, answer region A.

This is the reasoning/answer trap of the Info-Gain paper's judgment tasks, made small enough to
train on a CPU. A question states twelve bits and a claimed parity; the model writes the running
parities (R) and then judges the claim (A = ``Y``/``N``).

Canvas (``[BOS]`` + 42 characters)::

    101100101110=0 | 1_ _1 0_ 1_ _1 _1 0_ _1 _0 1_ 0_ _0 | N
    question (14)    R (24)                                A (1)   (spaces for reading only)

* **Question** (given, never masked): twelve bits, ``=`` and the claimed parity (XOR of all
  bits). 75% of claims are true, so the answer has a confident *prior*: ``Y`` with probability
  0.75.
* **R** (twelve steps, two cells each): step ``i`` holds the parity of the first ``i`` bits and a
  filler ``_``, in an order drawn at random per step (``_v`` or ``v_``). The filler stands in for
  what reasoning text has and a bare computation does not: several equally good ways to write the
  same content. It makes every R cell at most 50% certain before R is written, while the *value*
  of each step is the XOR of the step before and one question bit.
* **A** (one cell): ``Y`` when the claim equals the final running parity, else ``N``.

Why this shows the trap: before R is written, the most certain cell on the canvas is A (about
0.75, the prior: the parity of twelve bits in one forward is the textbook function a small
transformer does not learn), so certainty-greedy samplers (confidence, margin, entropy) commit the
answer first and land near the prior. Writing R first (left to right) turns each step into a
two-bit XOR and the final comparison into a copy, so a reasoning-first order is near perfect once
the model has learned one step. Two designs were tried and dropped: ``ab*cd=efgh?`` with the
product in R (a trained model is confident about product digits given the factors, so certainty
samplers write R first on their own and there is no trap), and a five-step chain of ``+ - *``
modulo 10 (the trap by construction, but a 1.3M-parameter model had not learned one step of the
arithmetic after 2,300 CPU steps, so left-to-right decoding could not be good).

Held-out items are disjoint from training by construction: a question belongs to the test split
when a hash of its bit string falls in one bucket of eight (512 of the 4,096 bit strings);
training never draws them, and a test set never repeats a bit string.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence
from typing import Any

from .synthetic import SyntheticTask, register

N_BITS = 12
QUESTION_LEN = N_BITS + 2  # bits, '=', claim
R_START = 1 + QUESTION_LEN + 1  # canvas index of the first R cell ([BOS] + question + '|')
R_LEN = 2 * N_BITS
A_START = R_START + R_LEN + 1  # after the second '|'
A_LEN = 1
TRUE_RATE = 0.75
HELDOUT_BUCKETS = 8


def running_parities(question: str) -> list[int]:
    """Parity of the first ``i`` bits, for ``i = 1..12``, of a question such as ``1011...=0``."""
    value, out = 0, []
    for ch in question[:N_BITS]:
        value ^= int(ch)
        out.append(value)
    return out


def claim_of(question: str) -> int:
    return int(question[-1])


def is_heldout(question: str) -> bool:
    """True for questions reserved for evaluation: a fixed one-in-eight split of the bit strings
    by hash (the claim does not enter, so a test bit string is never seen in training at all)."""
    return zlib.crc32(question[:N_BITS].encode()) % HELDOUT_BUCKETS == 0


def parse_reasoning(r: str) -> list[int] | None:
    """The twelve running parities written in ``r`` (24 cells), or None when a step is
    malformed (each step must be one bit and one ``_`` in either order)."""
    if len(r) != R_LEN:
        return None
    values = []
    for i in range(N_BITS):
        a, b = r[2 * i], r[2 * i + 1]
        if a == "_" and b in "01":
            values.append(int(b))
        elif b == "_" and a in "01":
            values.append(int(a))
        else:
            return None
    return values


@register("judge")
class JudgeTask(SyntheticTask):
    """Params: ``true_rate`` (share of true claims, default 0.75) and ``prefix_frac`` (share of
    training rows whose R is given up to a random step, so only the rest of R and A are targets:
    the states a reasoning-first order visits; default 0)."""

    name = "judge"
    alphabet = "01=|_YN"
    answer_alphabet = "01_YN"  # what a decoder may write into R or A
    seq_len = QUESTION_LEN + 1 + R_LEN + 1 + A_LEN
    conditional = True

    def __init__(self, true_rate: float = TRUE_RATE, prefix_frac: float = 0.0) -> None:
        if not 0.0 < float(true_rate) < 1.0:
            raise ValueError(f"true_rate must be in (0, 1), got {true_rate}")
        if not 0.0 <= float(prefix_frac) <= 1.0:
            raise ValueError(f"prefix_frac must be in [0, 1], got {prefix_frac}")
        params: dict[str, Any] = {"true_rate": float(true_rate)}
        if prefix_frac:
            params["prefix_frac"] = float(prefix_frac)
        super().__init__(**params)
        self.true_rate = float(true_rate)
        self.prefix_frac = float(prefix_frac)

    # ------------------------------------------------------------------ layout
    def regions(self, item: dict[str, Any] | None = None) -> dict[str, tuple[int, int]]:
        """Canvas spans (``[start, end)``, BOS = index 0) of the reasoning and answer regions."""
        return {"R": (R_START, R_START + R_LEN), "A": (A_START, A_START + A_LEN)}

    def derived_positions(self) -> list[int]:
        return list(range(R_START, R_START + R_LEN)) + list(range(A_START, A_START + A_LEN))

    # ------------------------------------------------------------------ data
    def _question(self, rng: random.Random, heldout: bool) -> tuple[str, bool]:
        while True:
            bits = "".join(str(rng.randint(0, 1)) for _ in range(N_BITS))
            parity = sum(map(int, bits)) % 2
            true = rng.random() < self.true_rate
            question = f"{bits}={parity if true else 1 - parity}"
            if is_heldout(question) == heldout:
                return question, true

    def solution_text(self, question: str, rng: random.Random) -> str:
        """A full canvas text (without BOS) for ``question``; filler sides drawn from ``rng``."""
        values = running_parities(question)
        r = "".join(f"_{v}" if rng.random() < 0.5 else f"{v}_" for v in values)
        answer = "Y" if values[-1] == claim_of(question) else "N"
        return f"{question}|{r}|{answer}"

    def sample(self, rng: random.Random, **difficulty: Any) -> dict[str, Any]:
        question, true = self._question(rng, heldout=True)
        return {"question": question, "answer": "Y" if true else "N", "values": running_parities(question)}

    def make_dataset(self, n: int, seed: int, **difficulty: Any) -> list[dict[str, Any]]:
        """``n`` held-out items with distinct bit strings (512 exist), a pure function of the seed."""
        if n > 512:
            raise ValueError(f"the judge test split has 512 distinct bit strings; asked for {n} items")
        rng = random.Random(seed)
        items: list[dict[str, Any]] = []
        seen: set[str] = set()
        while len(items) < n:
            item = self.sample(rng, **difficulty)
            if item["question"][:N_BITS] in seen:
                continue
            seen.add(item["question"][:N_BITS])
            item["id"] = f"{self.name}-{seed}-{len(items)}"
            items.append(item)
        return items

    def training_example(self, rng: random.Random) -> tuple[list[int], list[bool]]:
        question, _ = self._question(rng, heldout=False)
        ids = [self.bos_id] + self.encode_text(self.solution_text(question, rng))
        target = [False] * self.canvas_len
        first = R_START
        if self.prefix_frac and rng.random() < self.prefix_frac:
            first = R_START + 2 * rng.randrange(N_BITS)  # R given up to a random step
        for p in self.derived_positions():
            target[p] = p >= first
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
        """``correct`` (A right), ``r_correct`` (every running parity right and well formed) and
        ``a_consistent`` (A is the right verdict for the final parity R wrote, right or wrong)."""
        text = answer if isinstance(answer, str) else self.parse(answer)
        if len(text) != self.seq_len:
            return {"correct": 0.0, "r_correct": 0.0, "a_consistent": 0.0}
        r, a = self.split(text)
        values = parse_reasoning(r)
        truth = running_parities(item["question"])
        claim = claim_of(item["question"])
        out = {"correct": float(a == item["answer"]), "r_correct": float(values == truth)}
        if values is None or a not in ("Y", "N"):
            out["a_consistent"] = 0.0
        else:
            out["a_consistent"] = float(a == ("Y" if values[-1] == claim else "N"))
        return out

    def verify(self, item: dict[str, Any], answer: str | Sequence[int]) -> bool:
        return self.score(item, answer)["correct"] == 1.0
