"""Judge a claim about where a walk over a lookup table ends: reasoning region R, answer region A.

This is the reasoning/answer trap of the Info-Gain paper's judgment tasks, made small enough to
train on a CPU. A question gives a table ``f`` over the states 0..7 and a claimed end state; the
model writes the walk ``0 -> f(0) -> f(f(0)) -> ...`` for twelve hops (R) and then judges the
claim (A = ``Y``/``N``).

Canvas (``[BOS]`` + 37 characters)::

    47165342=6 | _4 5_ 3_ _6 _4 5_ 3_ _6 4_ _5 3_ _6 | Y
    question     R (24)                              A     (spaces for reading only)

* **Question** (given, never masked): the table (``f(k)`` is the ``k``-th digit), ``=`` and the
  claimed state after twelve hops. 75% of claims are true, so the answer has a confident *prior*:
  ``Y`` with probability 0.75. A false claim is another state the walk visits (or failing that
  another value of the table), so it cannot be refuted by noticing that it never occurs.
* **R** (twelve steps, two cells each): step ``i`` holds ``s_i = f(s_{i-1})`` (``s_0 = 0``) and a
  filler ``_``, in an order drawn at random per step (``_v`` or ``v_``). The filler stands in for
  what reasoning text has and a bare computation does not: several equally good ways to write the
  same content. It makes every R cell at most 50% certain before it is written, while the *value*
  of each step is one lookup from the step before.
* **A** (one cell): ``Y`` when the claim equals ``s_12``, else ``N``.

Why this shows the trap: before R is written, A is the most certain cell on the canvas (about
0.75, the prior), because twelve chained lookups do not fit in one forward of a four-layer model
(each layer can follow at most a hop or two), so certainty-greedy samplers (confidence, margin,
entropy) commit the answer first and land near the prior. Writing R first (left to right) makes
each step a single lookup and the verdict a comparison of two cells, so a reasoning-first order
is near perfect once the model has learned one hop.

Three designs were tried first and dropped (docs/tiny_models.md has the runs):

* twelve bits with a claimed parity and the running parity in R: the trap by construction, but
  one step (XOR of a bit and the step before) has no first-order signal and no run left the
  plateau (up to 3,000 steps, two layouts, RoPE and learned positions);
* the same question with the running *count* of ones in R: learned in about 1,000 steps, but the
  model then judged the parity claim correctly in one forward (a count is an average, which
  attention computes directly), so confidence decoding was as good as left to right: no trap;
* ``ab*cd=efgh?`` with the product in R (a trained model is confident about product digits given
  the factors, so certainty samplers write R first on their own) and a five-step ``+ - *`` chain
  modulo 10 (not learned in 2,300 steps).

Held-out items are disjoint from training by construction: a question belongs to the test split
when a hash of its table falls in one bucket of eight; training never draws those tables, and a
test set never repeats a table.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence
from typing import Any

from ..errors import UnmaskError
from .synthetic import SyntheticTask, register

N_STATES = 8  # states 0..7; the table maps each state to the next
N_STEPS = 12  # hops written in R
QUESTION_LEN = N_STATES + 2  # table, '=', claim
R_START = 1 + QUESTION_LEN + 1  # canvas index of the first R cell ([BOS] + question + '|')
R_LEN = 2 * N_STEPS
A_START = R_START + R_LEN + 1  # after the second '|'
A_LEN = 1
TRUE_RATE = 0.75
HELDOUT_BUCKETS = 8
DIGITS = "01234567"


def trajectory(question: str) -> list[int]:
    """States ``s_1..s_12`` of a question ``TTTTTTTT=c`` (or its table alone): ``s_0 = 0`` and
    ``s_i = table[s_{i-1}]``."""
    table = [int(ch) for ch in question[:N_STATES]]
    state, out = 0, []
    for _ in range(N_STEPS):
        state = table[state]
        out.append(state)
    return out


def is_question(question: str) -> bool:
    return (len(question) == QUESTION_LEN and all(c in DIGITS for c in question[:N_STATES])
            and question[N_STATES] == "=" and question[-1] in DIGITS)


def question_of(item: dict[str, Any]) -> str:
    """The question of an item: its ``question``, or the start of a user's canvas (``puzzle``, from
    ``unmask sample --prompt`` or a request), which must give the question in full."""
    question = item.get("question")
    if question is None:
        question = str(item.get("puzzle", ""))[:QUESTION_LEN]
    if not is_question(question):
        raise UnmaskError("a judge prompt starts with the whole question: eight digits 0-7 (the table), "
                          f"'=' and the claimed end state 0-7, e.g. 47165342=6; got {question!r}")
    return question


def claim_of(question: str) -> int:
    return int(question[-1])


def is_heldout(question: str) -> bool:
    """True for questions reserved for evaluation: a fixed one-in-eight split of the tables by
    hash (the claim does not enter, so a test table is never seen in training at all)."""
    return zlib.crc32(question[:N_STATES].encode()) % HELDOUT_BUCKETS == 0


def parse_reasoning(r: str) -> list[int] | None:
    """The twelve states written in ``r`` (24 cells), or None when a step is malformed (each
    step must be one state digit and one ``_``, in either order)."""
    if len(r) != R_LEN:
        return None
    values = []
    for i in range(N_STEPS):
        a, b = r[2 * i], r[2 * i + 1]
        if a == "_" and b in DIGITS:
            values.append(int(b))
        elif b == "_" and a in DIGITS:
            values.append(int(a))
        else:
            return None
    return values


def false_claim(table: list[int], states: list[int], rng: random.Random) -> int:
    """A wrong final state that cannot be ruled out at a glance: another state the walk visits
    when there is one, else another value of the table, else any other state. (A claim that never
    appears in the table would be refuted by one look, without following the walk.)"""
    last = states[-1]
    for pool in (set(states), set(table), set(range(N_STATES))):
        options = sorted(pool - {last})
        if options:
            return rng.choice(options)
    raise AssertionError("unreachable: eight states")


@register("judge")
class JudgeTask(SyntheticTask):
    """Params: ``true_rate`` (share of true claims, default 0.75) and ``prefix_frac`` (share of
    training rows whose R is given up to a random step, so only the rest of R and A are targets:
    the states a reasoning-first order visits; default 0)."""

    name = "judge"
    alphabet = "01234567=|_YN"
    answer_alphabet = "01234567_YN"  # what a decoder may write into R or A
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
            table = [rng.randrange(N_STATES) for _ in range(N_STATES)]
            text = "".join(DIGITS[v] for v in table)
            if is_heldout(text) != heldout:
                continue
            states = trajectory(text)
            true = rng.random() < self.true_rate
            claim = states[-1] if true else false_claim(table, states, rng)
            return f"{text}={claim}", true

    def solution_text(self, question: str, rng: random.Random) -> str:
        """A full canvas text (without BOS) for ``question``; filler sides drawn from ``rng``."""
        values = trajectory(question)
        r = "".join(f"_{v}" if rng.random() < 0.5 else f"{v}_" for v in values)
        answer = "Y" if values[-1] == claim_of(question) else "N"
        return f"{question}|{r}|{answer}"

    def sample(self, rng: random.Random, **difficulty: Any) -> dict[str, Any]:
        question, true = self._question(rng, heldout=True)
        return {"question": question, "answer": "Y" if true else "N", "values": trajectory(question)}

    def make_dataset(self, n: int, seed: int, **difficulty: Any) -> list[dict[str, Any]]:
        """``n`` held-out items with distinct tables (about two million exist), a pure function of
        the seed."""
        rng = random.Random(seed)
        items: list[dict[str, Any]] = []
        seen: set[str] = set()
        while len(items) < n:
            item = self.sample(rng, **difficulty)
            if item["question"][:N_STATES] in seen:
                continue
            seen.add(item["question"][:N_STATES])
            item["id"] = f"{self.name}-{seed}-{len(items)}"
            items.append(item)
        return items

    def training_example(self, rng: random.Random) -> tuple[list[int], list[bool]]:
        question, _ = self._question(rng, heldout=False)
        ids = [self.bos_id] + self.encode_text(self.solution_text(question, rng))
        target = [False] * self.canvas_len
        first = R_START
        if self.prefix_frac and rng.random() < self.prefix_frac:
            first = R_START + 2 * rng.randrange(N_STEPS)  # R given up to a random step
        for p in self.derived_positions():
            target[p] = p >= first
        return ids, target

    def prompt_ids(self, item: dict[str, Any], tokenizer=None) -> list[int]:
        bos, mask = self._special_ids(tokenizer)
        sep = self.char_ids["|"]
        return ([bos] + self.encode_text(question_of(item)) + [sep] + [mask] * R_LEN + [sep]
                + [mask] * A_LEN)

    def check_items(self, items: Sequence[dict[str, Any]], source: str) -> None:
        """Also refuse items from a user's file whose question is not a judge question (it would
        otherwise fail only when the item is scored)."""
        for i, item in enumerate(items):
            if not isinstance(item, dict) or "puzzle" in item:
                continue  # the base check words these
            if "question" not in item:
                raise UnmaskError(f"{source}: item {i} has no 'question' (e.g. {{\"question\": \"47165342=6\"}})")
            if not (isinstance(item["question"], str) and is_question(item["question"])):
                raise UnmaskError(f"{source}: item {i}: 'question' must be eight digits 0-7, '=' and a digit 0-7 "
                                  f"(e.g. 47165342=6), got {item['question']!r}")
        super().check_items(items, source)

    # ------------------------------------------------------------------ scoring
    def parse(self, text_or_ids: str | Sequence[int]) -> str:
        return self.answer_text(text_or_ids)

    def split(self, text: str) -> tuple[str, str]:
        """``(R text, A text)`` of a parsed answer string (canvas without BOS)."""
        r0, a0 = R_START - 1, A_START - 1
        return text[r0:r0 + R_LEN], text[a0:a0 + A_LEN]

    def score(self, item: dict[str, Any], answer: str | Sequence[int]) -> dict[str, float]:
        """``correct`` (A right), ``r_correct`` (every state of the walk right and well formed) and
        ``a_consistent`` (A is the right verdict for the final state R wrote, right or wrong)."""
        text = self.completion_text(answer)
        if len(text) != self.seq_len:
            return {"correct": 0.0, "r_correct": 0.0, "a_consistent": 0.0}
        r, a = self.split(text)
        values = parse_reasoning(r)
        question = question_of(item)
        truth = trajectory(question)
        claim = claim_of(question)
        verdict = "Y" if truth[-1] == claim else "N"
        out = {"correct": float(a == verdict), "r_correct": float(values == truth)}
        if values is None or a not in ("Y", "N"):
            out["a_consistent"] = 0.0
        else:
            out["a_consistent"] = float(a == ("Y" if values[-1] == claim else "N"))
        return out

    def verify(self, item: dict[str, Any], answer: str | Sequence[int]) -> bool:
        return self.score(item, answer)["correct"] == 1.0
