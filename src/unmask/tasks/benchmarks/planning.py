"""Planning puzzles from the Dream evaluation suite: Countdown (3, 4 or 5 numbers) and 4x4 Sudoku.

Data (Apache-2.0, ``DreamLM/Dream`` ``eval/data``): ``countdown/cd{3,4,5}_test.jsonl`` (1000
records each) and ``sudoku/sudoku_4x4_{4..12}.jsonl`` (108 puzzles each, N = number of clues).
As in the upstream evaluation, the **first 8 records of a file are the few-shot exemplars** and
the rest are scored (992 Countdown problems, 100 Sudoku puzzles); ``default_fewshot = 8``. With
``--data`` every record of the given file is scored and the exemplars still come from the
packaged file of the task.

Prompts are one instruction line (our wording) followed by ``Input:``/``Output:`` exemplars
separated by blank lines and the query. With a chat template the same text is sent as one user
message (these are completion-style puzzles); a leading ``Output:`` in the answer is ignored.

**Countdown** (``countdown3`` = ``countdown``, ``countdown4``, ``countdown5``). Record:
``{"input": "n1,...,nK,target", "output": "a<op>b=c,..."}``. The answer is the first line of the
output. It is correct when it is a comma-separated list of equations ``a<op>b=c`` (``op`` in
``+ - * /``, non-negative integers) where every equation is arithmetically exact (division must be
exact; no division by zero), each equation uses two numbers currently available (initially the K
given numbers; each result becomes available once computed; every number is used at most once),
and at the end exactly one number is left, the target: every given number is used. Any valid
solution counts, not only the reference. (Upstream checks the same multiset condition without the
order; we also require an intermediate result to exist before it is used.)

**Sudoku 4x4** (``sudoku4`` = 10 clues, as upstream scores by default; ``sudoku4_N`` for
N = 4..12). Record: ``{"input": "1003\\n0300\\n3210\\n4132", "output": "..."}`` with ``0`` for
blanks. The answer is the text up to the first blank line, spaces removed; its first 19
characters must be a 4x4 grid (four lines of four digits) that keeps every clue and has 1-4 once
in each row, column and 2x2 box. Any valid completion counts.
"""

from __future__ import annotations

import re
from collections import Counter
from fractions import Fraction
from pathlib import Path
from typing import Any

from ...errors import UnmaskError
from .base import EvalTask, assign_ids, data_dir, read_jsonl, require_fields

N_EXEMPLARS = 8
_EQ_RE = re.compile(r"^\s*(\d+)\s*([-+*/])\s*(\d+)\s*=\s*(\d+)\s*$")


def _strip_output_prefix(text: str) -> str:
    t = text.lstrip()
    if t.lower().startswith("output:"):
        t = t[len("output:"):]
    return t


# --------------------------------------------------------------------------- Countdown
def countdown_check(numbers: list[int], target: int, answer: str | None) -> bool:
    """True when ``answer`` reaches ``target`` using each of ``numbers`` exactly once."""
    if not answer or not answer.strip():
        return False
    pool = Counter(numbers)
    last = None
    for part in answer.strip().split(","):
        m = _EQ_RE.match(part)
        if not m:
            return False
        a, op, b, c = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
        if op == "+":
            val = Fraction(a + b)
        elif op == "-":
            val = Fraction(a - b)
        elif op == "*":
            val = Fraction(a * b)
        else:
            if b == 0:
                return False
            val = Fraction(a, b)
        if val != c:
            return False
        for x in (a, b):
            if pool[x] <= 0:
                return False
            pool[x] -= 1
        pool[c] += 1
        last = c
    left = +pool
    return last == target and left == Counter({target: 1})


def parse_countdown_input(text: str) -> tuple[list[int], int]:
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if len(parts) < 3 or not all(p.isdigit() for p in parts):
        raise UnmaskError(f"countdown input must be comma-separated integers 'n1,...,nK,target', got {text!r}")
    vals = [int(p) for p in parts]
    return vals[:-1], vals[-1]


class _FewshotFile(EvalTask):
    """A task whose default file holds exemplars (first 8 records) and test items (the rest)."""

    file: str = ""
    data_format = 'JSONL {"input": str, "output": str}'
    default_fewshot = N_EXEMPLARS

    def default_data_path(self) -> Path:
        return data_dir() / self.file

    def load(self, data_path=None):
        if data_path:
            rows = read_jsonl(data_path)
            require_fields(rows, {"input": str}, data_path, self.data_format)
            return assign_ids(rows, self.name)
        rows = read_jsonl(self.default_data_path())
        items = assign_ids(rows, self.name)[N_EXEMPLARS:]
        return items

    def fewshot(self, n: int) -> list[dict[str, Any]]:
        if n > N_EXEMPLARS:
            raise UnmaskError(f"{self.name} has {N_EXEMPLARS} few-shot exemplars; got --num_fewshot {n}")
        return read_jsonl(self.default_data_path())[:n]

    instruction = ""

    def block(self, row: dict[str, Any], with_answer: bool) -> str:
        raise NotImplementedError

    def prompt(self, item, chat, num_fewshot):
        parts = [self.instruction] + [self.block(s, True) for s in self.fewshot(num_fewshot)]
        text = "\n\n".join(parts) + "\n\n" + self.block(item, False)
        if chat:
            return [{"role": "user", "content": text}]
        return text

    def reference(self, item):
        return item.get("output")

    def settings(self):
        return {**super().settings(), "fewshot_file": self.file}


class Countdown(_FewshotFile):
    name = "countdown3"
    k = 3
    description = "Countdown with 3 numbers (992 problems): exact equation check; 8-shot"
    file = "countdown/cd3_test.jsonl"
    defaults = {"max_new_tokens": 48, "steps": 48, "block_size": 48}
    stop_sequences = ("\n",)

    @property
    def instruction(self) -> str:  # type: ignore[override]
        return (f"Each input lists {self.k} numbers and then a target. Combine the {self.k} numbers with "
                "+, -, * and / so the result is the target, using every number exactly once. Write one "
                "equation per operation, separated by commas.")

    def block(self, row, with_answer):
        ans = f" {row['output']}" if with_answer else ""
        return f"Input: {row['input']}\nOutput:{ans}"

    def output_text(self, session, output, row, chat):
        text = _strip_output_prefix(session.decode(output.generated[row]))
        return text.split("\n", 1)[0]

    def extract(self, text, item):
        ans = _strip_output_prefix(text).split("\n", 1)[0].strip()
        return ans or None

    def score(self, item, answer, text):
        numbers, target = parse_countdown_input(item["input"])
        return {"correct": float(countdown_check(numbers, target, answer))}


class Countdown4(Countdown):
    name = "countdown4"
    k = 4
    description = "Countdown with 4 numbers (992 problems): exact equation check; 8-shot"
    file = "countdown/cd4_test.jsonl"
    defaults = {"max_new_tokens": 48, "steps": 48, "block_size": 48}


class Countdown5(Countdown):
    name = "countdown5"
    k = 5
    description = "Countdown with 5 numbers (992 problems): exact equation check; 8-shot"
    file = "countdown/cd5_test.jsonl"
    defaults = {"max_new_tokens": 64, "steps": 64, "block_size": 64}


# --------------------------------------------------------------------------- Sudoku 4x4
def parse_grid4(text: str) -> list[list[int]] | None:
    """A 4x4 grid from ``"1234\\n3412\\n..."`` (19 characters); None when malformed."""
    t = text[:19]
    lines = t.split("\n")
    if len(lines) != 4 or any(len(line) != 4 or not line.isdigit() for line in lines):
        return None
    return [[int(c) for c in line] for line in lines]


def sudoku4_valid(grid: list[list[int]]) -> bool:
    """Every row, column and 2x2 box holds 1, 2, 3, 4 exactly once."""
    full = {1, 2, 3, 4}
    rows = all(set(r) == full for r in grid)
    cols = all({grid[i][j] for i in range(4)} == full for j in range(4))
    boxes = all({grid[bi + i][bj + j] for i in range(2) for j in range(2)} == full
                for bi in (0, 2) for bj in (0, 2))
    return rows and cols and boxes


def sudoku4_check(puzzle: str, answer: str | None) -> bool:
    if not answer:
        return False
    grid = parse_grid4(answer)
    given = parse_grid4(puzzle.strip())
    if grid is None or given is None:
        return False
    keeps = all(given[i][j] in (0, grid[i][j]) for i in range(4) for j in range(4))
    return keeps and sudoku4_valid(grid)


class Sudoku4(_FewshotFile):
    name = "sudoku4"
    clues = 10
    description = "4x4 Sudoku with 10 clues (100 puzzles): validity + agreement with the clues; 8-shot"
    defaults = {"max_new_tokens": 32, "steps": 32, "block_size": 32}
    stop_sequences = ("\n\n",)
    instruction = ("Fill in the 0 cells of the 4x4 grid with digits 1-4 so that every row, every column "
                   "and each of the four 2x2 boxes contains 1, 2, 3 and 4 exactly once.")

    @property
    def file(self) -> str:  # type: ignore[override]
        return f"sudoku/sudoku_4x4_{self.clues}.jsonl"

    def block(self, row, with_answer):
        ans = f"\n{row['output']}" if with_answer else ""
        return f"Input:\n{row['input']}\nOutput:{ans}"

    def prompt(self, item, chat, num_fewshot):
        p = super().prompt(item, chat, num_fewshot)
        return p if chat else p + "\n"

    def output_text(self, session, output, row, chat):
        text = session.decode(output.generated[row])
        return _strip_output_prefix(text).lstrip("\n").split("\n\n", 1)[0]

    def extract(self, text, item):
        ans = _strip_output_prefix(text).lstrip(" \n").split("\n\n", 1)[0].replace(" ", "")
        return ans or None

    def score(self, item, answer, text):
        return {"correct": float(sudoku4_check(item["input"], answer))}


def sudoku4_variant(clues: int) -> type[Sudoku4]:
    """The ``sudoku4_N`` task class for the file with N clues."""
    return type(f"Sudoku4_{clues}", (Sudoku4,), {
        "name": f"sudoku4_{clues}", "clues": clues,
        "description": f"4x4 Sudoku with {clues} clues (100 puzzles); 8-shot",
    })
