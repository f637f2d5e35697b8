"""9x9 Sudoku: generator, solver and verifier.

Text format: 81 characters, row-major, digits ``1``-``9`` for filled cells and ``0`` or ``.`` for a
blank. The canvas is ``[BOS]`` + the 81 cells (no separators); blanks become mask tokens.

* **Test puzzles** (:meth:`SudokuTask.sample`) have a unique solution: a full grid is filled by
  randomized backtracking, then cells are removed in random order, keeping each removal only while
  a solution counter still finds exactly one solution, until the requested number of givens
  (drawn uniformly from ``givens=(lo, hi)``) is reached. Greedy removal occasionally gets stuck
  above the target (every remaining clue is necessary); then a fresh grid is tried.
* **Training examples** (:meth:`SudokuTask.training_example`) are cheap: a grid from a fixed pool of
  randomly filled grids is pushed through a random validity-preserving symmetry (digit
  relabelling, row swaps inside a band, band swaps, column swaps inside a stack, stack swaps,
  transpose), then 17-80 random cells are kept as givens and every other cell is a target. The
  pool (rather than a single base grid) matters: one grid's symmetry class is a vanishing corner of
  all Sudoku grids and a model trained on it would learn regularities that test grids lack.

The solver keeps one 9-bit candidate mask per row, column and box and always branches on the
empty cell with the fewest candidates, which makes uniqueness checks take about a millisecond.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from ..errors import UnmaskError
from .synthetic import SyntheticTask, register

ROW = [i // 9 for i in range(81)]
COL = [i % 9 for i in range(81)]
BOX = [(i // 27) * 3 + (i % 9) // 3 for i in range(81)]
FULL = 0x1FF
POPCOUNT = [bin(m).count("1") for m in range(512)]
BITS = [[d + 1 for d in range(9) if m >> d & 1] for m in range(512)]  # candidate digits of a mask


def parse_grid(text: str) -> list[int]:
    """81-char text -> list of ints (0 = blank). Accepts ``0`` and ``.`` as blanks."""
    text = text.strip()
    if len(text) != 81:
        raise ValueError(f"a Sudoku grid has 81 cells, got {len(text)} characters")
    out = []
    for ch in text:
        if ch in ".0":
            out.append(0)
        elif ch in "123456789":
            out.append(int(ch))
        else:
            raise ValueError(f"unexpected character {ch!r} in a Sudoku grid")
    return out


def grid_to_text(grid: Sequence[int], blank: str = "0") -> str:
    return "".join(str(v) if v else blank for v in grid)


def _masks(grid: Sequence[int]) -> tuple[list[int], list[int], list[int]] | None:
    """Used-digit masks per row/column/box, or None if the givens already clash."""
    rows, cols, boxes = [0] * 9, [0] * 9, [0] * 9
    for i, v in enumerate(grid):
        if v:
            bit = 1 << (v - 1)
            r, c, b = ROW[i], COL[i], BOX[i]
            if rows[r] & bit or cols[c] & bit or boxes[b] & bit:
                return None
            rows[r] |= bit
            cols[c] |= bit
            boxes[b] |= bit
    return rows, cols, boxes


def _search(grid: list[int], rows: list[int], cols: list[int], boxes: list[int], empties: list[int],
            limit: int, found: list[list[int]], rng: random.Random | None) -> int:
    """Depth-first search with the most-constrained-cell rule; returns solutions found (<= limit).

    The first solution is appended to ``found``. ``rng`` shuffles the digit order (used to fill
    random grids); without it digits are tried in increasing order."""
    if not empties:
        if not found:
            found.append(list(grid))
        return 1
    best_k, best_mask, best_n = -1, 0, 10
    for k, i in enumerate(empties):
        m = FULL & ~(rows[ROW[i]] | cols[COL[i]] | boxes[BOX[i]])
        n = POPCOUNT[m]
        if n < best_n:
            best_k, best_mask, best_n = k, m, n
            if n <= 1:
                break
    if best_n == 0:
        return 0
    cell = empties[best_k]
    rest = empties[:best_k] + empties[best_k + 1:]
    r, c, b = ROW[cell], COL[cell], BOX[cell]
    digits = BITS[best_mask]
    if rng is not None:
        digits = list(digits)
        rng.shuffle(digits)
    total = 0
    for d in digits:
        bit = 1 << (d - 1)
        grid[cell] = d
        rows[r] |= bit
        cols[c] |= bit
        boxes[b] |= bit
        total += _search(grid, rows, cols, boxes, rest, limit - total, found, rng)
        rows[r] ^= bit
        cols[c] ^= bit
        boxes[b] ^= bit
        grid[cell] = 0
        if total >= limit:
            break
    return total


def count_solutions(grid: Sequence[int], limit: int = 2) -> int:
    """Number of completions of ``grid`` (0 = blank), counting stops at ``limit``."""
    masks = _masks(grid)
    if masks is None:
        return 0
    g = list(grid)
    return _search(g, *masks, [i for i in range(81) if not g[i]], limit, [], None)


def solve(grid: Sequence[int]) -> list[int] | None:
    """One completion of ``grid`` (the lexicographically first in search order), or None."""
    masks = _masks(grid)
    if masks is None:
        return None
    g = list(grid)
    found: list[list[int]] = []
    _search(g, *masks, [i for i in range(81) if not g[i]], 1, found, None)
    return found[0] if found else None


def random_full_grid(rng: random.Random) -> list[int]:
    """A uniformly-seeded random complete grid via randomized backtracking."""
    g = [0] * 81
    found: list[list[int]] = []
    _search(g, [0] * 9, [0] * 9, [0] * 9, list(range(81)), 1, found, rng)
    return found[0]


def is_valid_solution(grid: Sequence[int]) -> bool:
    """Complete (no blanks, digits 1-9) and every row, column and box holds 1-9 once."""
    if len(grid) != 81 or any(not (1 <= v <= 9) for v in grid):
        return False
    return _masks(grid) is not None


TECHNIQUES = ("naked_singles", "hidden_singles", "beyond_singles")
"""Difficulty grades, easiest first: what a human-style solver needs to finish a puzzle."""

UNITS = ([[r * 9 + c for c in range(9)] for r in range(9)]
         + [[r * 9 + c for r in range(9)] for c in range(9)]
         + [[(br * 3 + dr) * 9 + bc * 3 + dc for dr in range(3) for dc in range(3)]
            for br in range(3) for bc in range(3)])


def technique_needed(grid: Sequence[int]) -> str:
    """The hardest technique a singles solver needs to finish ``grid`` (one of :data:`TECHNIQUES`).

    The solver always takes the easiest move available: a *naked single* (a blank cell with one
    candidate digit) when there is one, else a *hidden single* (a digit with one possible cell in
    a row, column or box). ``beyond_singles`` means both ran dry before the grid was full (pairs,
    fish, chains or guessing are needed). This grades why a model fails: "the only digit left for
    this cell" and "the only cell left for this digit" are different inferences, and puzzles with
    the same number of clues mix all three grades."""
    masks = _masks(grid)
    if masks is None:
        raise ValueError("the givens of this grid already clash")
    rows, cols, boxes = masks
    g = list(grid)
    used_hidden = False
    while True:
        cand = {i: FULL & ~(rows[ROW[i]] | cols[COL[i]] | boxes[BOX[i]]) for i in range(81) if not g[i]}
        if not cand:
            return "hidden_singles" if used_hidden else "naked_singles"
        if any(m == 0 for m in cand.values()):
            return "beyond_singles"  # a contradiction: only reachable from an unsolvable grid
        move = next(((i, BITS[m][0]) for i, m in cand.items() if POPCOUNT[m] == 1), None)
        if move is None:
            for unit in UNITS:
                for d in range(9):
                    spots = [i for i in unit if i in cand and cand[i] >> d & 1]
                    if len(spots) == 1:
                        move = (spots[0], d + 1)
                        break
                if move is not None:
                    break
            if move is None:
                return "beyond_singles"
            used_hidden = True
        i, v = move
        g[i] = v
        bit = 1 << (v - 1)
        rows[ROW[i]] |= bit
        cols[COL[i]] |= bit
        boxes[BOX[i]] |= bit


def _line_perm(rng: random.Random) -> list[int]:
    """A random row (or column) order that keeps bands (stacks) intact: shuffle the three bands,
    then the three lines inside each."""
    bands = [0, 1, 2]
    rng.shuffle(bands)
    out = []
    for band in bands:
        inner = [0, 1, 2]
        rng.shuffle(inner)
        out.extend(3 * band + j for j in inner)
    return out


def _symmetry_source(rng: random.Random) -> list[int]:
    """For a random geometric symmetry, the source cell of every target cell."""
    rmap, cmap = _line_perm(rng), _line_perm(rng)
    if rng.random() < 0.5:  # transpose
        return [cmap[c] * 9 + rmap[r] for r in range(9) for c in range(9)]
    return [rmap[r] * 9 + cmap[c] for r in range(9) for c in range(9)]


def random_symmetry(grid: Sequence[int], rng: random.Random) -> list[int]:
    """Apply a random validity-preserving transformation (the Sudoku symmetry group)."""
    src = _symmetry_source(rng)
    digits = list(range(1, 10))
    rng.shuffle(digits)
    relabel = [0, *digits]
    return [relabel[grid[s]] for s in src]


def make_puzzle(rng: random.Random, givens: int, max_tries: int = 300) -> tuple[list[int], list[int]]:
    """``(puzzle, solution)`` with exactly ``givens`` clues and a unique solution.

    One removal pass ends at a minimal puzzle of about 21-28 clues (measured over 300 passes: 4%
    reach 22 or fewer, 22% 23 or fewer), so clue counts below 24 need many tries, each about 25 ms,
    and below 21 practically never succeed."""
    for _ in range(max_tries):
        full = random_full_grid(rng)
        puzzle = list(full)
        order = list(range(81))
        rng.shuffle(order)
        left = 81
        for cell in order:
            if left == givens:
                break
            v = puzzle[cell]
            puzzle[cell] = 0
            if count_solutions(puzzle, 2) == 1:
                left -= 1
            else:
                puzzle[cell] = v
        if left == givens:
            return puzzle, full
    raise UnmaskError(f"could not make a unique-solution Sudoku with {givens} givens in {max_tries} tries; "
                      "random clue removal rarely gets below 22 givens, so ask for more givens")


@register("sudoku")
class SudokuTask(SyntheticTask):
    """9x9 Sudoku infilling. Params: ``pool_size`` / ``pool_seed`` (training grid pool),
    ``min_givens`` / ``max_givens`` (training clue count range), ``unique_frac`` (share of training
    examples that are unique-solution puzzles with ``unique_givens`` clues, made on the fly at
    about 7 ms each; default 0)."""

    blank_char = "0"

    name = "sudoku"
    alphabet = "0123456789."
    answer_alphabet = "123456789"  # what a decoder may write into a masked cell
    conditional = True
    seq_len = 81

    def __init__(self, pool_size: int = 2048, pool_seed: int = 0, min_givens: int = 17, max_givens: int = 80,
                 unique_frac: float = 0.0, unique_givens: Sequence[int] = (24, 36)) -> None:
        params: dict[str, Any] = dict(pool_size=pool_size, pool_seed=pool_seed, min_givens=min_givens,
                                      max_givens=max_givens)
        if unique_frac:  # only recorded when used, so older task.json files read back unchanged
            params.update(unique_frac=float(unique_frac), unique_givens=[int(g) for g in unique_givens])
        super().__init__(**params)
        self.pool_size, self.pool_seed = pool_size, pool_seed
        self.min_givens, self.max_givens = min_givens, max_givens
        if not 0.0 <= float(unique_frac) <= 1.0:
            raise UnmaskError(f"unique_frac must be in [0, 1], got {unique_frac}")
        lo, hi = (int(g) for g in unique_givens)
        if not 17 <= lo <= hi <= 81:
            raise UnmaskError(f"unique_givens must satisfy 17 <= lo <= hi <= 81, got {list(unique_givens)}")
        self.unique_frac, self.unique_givens = float(unique_frac), (lo, hi)
        self._pool: list[list[int]] | None = None

    @property
    def pool(self) -> list[list[int]]:
        """Base grids for training, built lazily (about a second) from ``pool_seed``."""
        if self._pool is None:
            rng = random.Random(f"sudoku-pool-{self.pool_seed}")
            self._pool = [random_full_grid(rng) for _ in range(self.pool_size)]
        return self._pool

    def sample(self, rng: random.Random, givens: tuple[int, int] | int = (28, 32),
               technique: str | None = None, max_tries: int = 2000) -> dict[str, Any]:
        """A unique-solution puzzle with a clue count drawn from ``givens``; with ``technique``
        (one of :data:`TECHNIQUES`) puzzles are drawn until one needs exactly that technique.

        Without ``technique`` the random stream is the same as before grading existed, so seeded
        test sets do not change; the item's ``technique`` key is computed, not drawn."""
        if technique is not None and technique not in TECHNIQUES:
            raise UnmaskError(f"unknown technique {technique!r}; choose one of {', '.join(TECHNIQUES)}")
        lo, hi = (givens, givens) if isinstance(givens, int) else givens
        for _ in range(max_tries):
            n = rng.randint(lo, hi)
            puzzle, solution = make_puzzle(rng, n)
            grade = technique_needed(puzzle)
            if technique is None or grade == technique:
                return {"puzzle": grid_to_text(puzzle), "solution": grid_to_text(solution), "givens": n,
                        "technique": grade}
        raise UnmaskError(f"no {technique} puzzle with {lo}-{hi} givens in {max_tries} tries; "
                          "widen the givens range")

    def training_example(self, rng: random.Random) -> tuple[list[int], list[bool]]:
        # inlined random_symmetry with the digit relabelling fused into the id lookup (this runs
        # batch_size times per training step)
        if self.unique_frac and rng.random() < self.unique_frac:
            # a real test-style puzzle (unique solution, made by clue removal): random clue subsets
            # of a full grid are rarely unique below ~35 clues, so their targets are ambiguous and
            # never teach the "only one place left" inferences that unique puzzles require
            puzzle, solution = make_puzzle(rng, rng.randint(*self.unique_givens))
            ids = [self.bos_id] + [self.char_ids[str(v)] for v in solution]
            return ids, [False] + [v == 0 for v in puzzle]
        base = self.pool[rng.randrange(len(self.pool))]
        src = _symmetry_source(rng)
        digits = list(range(1, 10))
        rng.shuffle(digits)
        lut = [0] + [self.char_ids[str(d)] for d in digits]
        ids = [self.bos_id] + [lut[base[s]] for s in src]
        k = rng.randint(self.min_givens, self.max_givens)
        target = [False] + [True] * 81
        for i in rng.sample(range(81), k):
            target[i + 1] = False
        return ids, target

    example_difficulty = {"givens": (28, 32)}

    def item_from_text(self, text: str) -> dict[str, Any]:
        """81 cells, ``0`` or ``.`` = blank."""
        text = text.strip()
        try:
            parse_grid(text)
        except ValueError as e:
            raise UnmaskError(f"not a Sudoku puzzle: {e}") from e
        return {"puzzle": text}

    def item_prompt_ids(self, item: dict[str, Any], tokenizer=None) -> list[int]:
        return self.prompt_ids(item, tokenizer)  # the puzzle is the canvas: nothing to overlay

    def render(self, answer: str) -> str:
        """A 9x9 grid with box rules."""
        if len(answer) != 81:
            return answer
        lines = []
        for r in range(9):
            row = answer[9 * r : 9 * r + 9]
            lines.append(" ".join(row[0:3]) + " | " + " ".join(row[3:6]) + " | " + " ".join(row[6:9]))
            if r in (2, 5):
                lines.append("------+-------+------")
        return "\n".join(lines)

    def prompt_ids(self, item: dict[str, Any], tokenizer=None) -> list[int]:
        bos, mask = self._special_ids(tokenizer)
        grid = parse_grid(item["puzzle"])
        return [bos] + [self.char_ids[str(v)] if v else mask for v in grid]

    def parse(self, text_or_ids: str | Sequence[int]) -> str:
        """The 81 answer characters (unfilled or invalid cells come back as ``?``/``0``)."""
        return self.answer_text(text_or_ids)

    def verify(self, item: dict[str, Any], answer: str | Sequence[int]) -> bool:
        text = self.completion_text(answer)
        if len(text) != 81 or any(ch not in "123456789" for ch in text):
            return False
        grid = [int(ch) for ch in text]
        if not is_valid_solution(grid):
            return False
        puzzle = parse_grid(item["puzzle"])
        return all(p == 0 or p == g for p, g in zip(puzzle, grid))

    def score(self, item: dict[str, Any], answer: str | Sequence[int]) -> dict[str, float]:
        """``correct``; ``cell_accuracy`` on the blanks against the stored solution."""
        text = self.completion_text(answer)
        out = {"correct": float(self.verify(item, text))}
        if "solution" in item and len(text) == 81:
            puzzle = parse_grid(item["puzzle"])
            blanks = [i for i in range(81) if puzzle[i] == 0]
            hits = sum(text[i] == item["solution"][i] for i in blanks)
            out["cell_accuracy"] = hits / max(1, len(blanks))
        return out
