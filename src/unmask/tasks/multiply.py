"""One-way multiplication: generate a whole equation ``ab*cd=efgh`` unconditionally.

This is the case study of the Info-Gain sampler paper: the model samples two-digit factors
``a, b`` (10-99) and their product zero-padded to four digits. Multiplying is easy once the
factors are on the canvas, but factoring is hard, so a sampler that commits a product digit
before the factors are settled tends to produce invalid equations. The order in which positions
were decoded therefore matters, and :func:`product_before_factors` reports it.

Canvas: ``[BOS] a1 a2 * b1 b2 = p1 p2 p3 p4`` (11 tokens). ``*`` and ``=`` are fixed givens: they
are never targets in training and are pre-filled in :meth:`MultiplyTask.prompt_ids`, so the eight
digit positions are the only ones the model fills. (Keeping the operators fixed removes two
trivial predictions and lets every decoding step be about digits.)
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

from .synthetic import SyntheticTask, register

EQUATION = re.compile(r"^(\d{2})\*(\d{2})=(\d{4})$")
#: answer-string indices (without BOS) of the factor and product digits
FACTOR_POSITIONS = (0, 1, 3, 4)
PRODUCT_POSITIONS = (6, 7, 8, 9)
OPERATOR_POSITIONS = (2, 5)


def equation_text(a: int, b: int) -> str:
    return f"{a:02d}*{b:02d}={a * b:04d}"


def parse_equation(text: str) -> tuple[int, int, int] | None:
    """``(a, b, c)`` of an ``ab*cd=efgh`` string, or None when the format is wrong."""
    m = EQUATION.match(text.strip())
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def is_valid_equation(text: str) -> bool:
    """Right format, both factors two-digit numbers (10-99) and the product correct."""
    parsed = parse_equation(text)
    if parsed is None:
        return False
    a, b, c = parsed
    return 10 <= a <= 99 and 10 <= b <= 99 and a * b == c


def product_before_factors(order: Sequence[int], offset: int = 1) -> bool:
    """True when some product digit was decoded before the last factor digit.

    ``order`` lists canvas positions in the order they were committed (positions never decoded,
    like the fixed operators, may be absent). ``offset`` is the canvas index of the first answer
    token (1 with the BOS). A factor digit that never appears in ``order`` counts as decoded last.
    """
    when = {int(p) - offset: k for k, p in enumerate(order)}
    never = len(order)
    last_factor = max(when.get(p, never) for p in FACTOR_POSITIONS)
    first_product = min(when.get(p, never + 1) for p in PRODUCT_POSITIONS)
    return first_product < last_factor


@register("multiply")
class MultiplyTask(SyntheticTask):
    """Unconditional ``ab*cd=efgh`` generation; an item carries no information besides its id."""

    name = "multiply"
    alphabet = "0123456789*="
    answer_alphabet = "0123456789"  # what a decoder may write into a masked cell
    seq_len = 10

    def __init__(self) -> None:
        super().__init__()

    def derived_positions(self) -> list[int]:
        return [1 + i for i in PRODUCT_POSITIONS]

    def sample(self, rng: random.Random, **difficulty: Any) -> dict[str, Any]:
        # unconditional: the item is an empty canvas; a reference equation is kept for round-trips
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        return {"puzzle": "__*__=____", "reference": equation_text(a, b)}

    def training_example(self, rng: random.Random) -> tuple[list[int], list[bool]]:
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        ids = [self.bos_id] + self.encode_text(equation_text(a, b))
        target = [False] + [i not in OPERATOR_POSITIONS for i in range(self.seq_len)]
        return ids, target

    def sample_extras(self, item: dict[str, Any], trace) -> dict[str, Any]:
        """Whether a product digit was decoded before the last factor digit."""
        return {"product_first": product_before_factors([p for _, p, _ in trace.order])}

    def prompt_ids(self, item: dict[str, Any] | None = None, tokenizer=None) -> list[int]:
        bos, mask = self._special_ids(tokenizer)
        return [bos] + [self.char_ids["*"] if i == 2 else self.char_ids["="] if i == 5 else mask
                        for i in range(self.seq_len)]

    def parse(self, text_or_ids: str | Sequence[int]) -> str:
        return self.answer_text(text_or_ids)

    def verify(self, item: dict[str, Any] | None, answer: str | Sequence[int]) -> bool:
        text = self.completion_text(answer)
        return is_valid_equation(text)
