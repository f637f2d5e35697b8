"""Synthetic puzzle tasks for the tiny CPU-trainable models: a common interface and a registry.

Every task describes a fixed-length *canvas* ``[BOS] + seq_len answer tokens`` over a
character-level tokenizer (:func:`unmask.tokenizer.build_char_tokenizer`). A test item is decoded
by infilling: :meth:`SyntheticTask.prompt_ids` returns the canvas with the tokenizer's mask id at
every position the model must fill, so a decoder is called with ``max_new_tokens=0``.

Training data is generated on the fly by :meth:`SyntheticTask.training_example`, which returns the
token ids of a complete canvas plus a ``target`` flag per position. Only target positions may be
masked by the diffusion objective; givens (Sudoku clues, fixed operator symbols, the BOS) are
always visible, exactly as they are at test time.

The char tokenizer assigns ids deterministically (specials first, then the alphabet in order), so
each task keeps a character -> id table and builds training examples without calling the HF
tokenizer: that keeps data generation cheap next to a training step on two CPU cores.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

from ..errors import UnmaskError
from ..tokenizer import BOS, MASK, build_char_tokenizer


class SyntheticTask:
    """Base class: subclasses set ``name``, ``alphabet``, ``seq_len`` and implement the hooks.

    ``params`` holds everything that defines the task beyond its name (e.g. NAE-SAT's N, P and
    triple seed); it is written to the model folder's ``task.json`` so a trained model is
    self-describing and :func:`get_task` can rebuild the exact same task from it.
    """

    name: str = ""
    alphabet: str = ""
    answer_alphabet: str = ""  # characters a decoder may write into a masked cell ("" = alphabet)
    seq_len: int = 0
    conditional: bool = False  # items carry givens (Sudoku clues, a question): decode by argmax

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = dict(params)

    def derived_positions(self) -> list[int]:
        """Canvas indices (BOS = 0) of tokens that are a function of the other targets, e.g. the
        product digits of ``a*b=c`` or NAE-SAT's observation bits; empty when there are none.

        The trainer's ``--derived_frac`` spends part of each batch on exactly the conditional a
        good decoding order relies on ("the rest is written, now fill these"), which the uniform
        any-order masking visits only rarely."""
        return []

    # ---------------------------------------------------------------- tokenizer & ids
    @cached_property
    def tokenizer(self):
        """The task's char tokenizer (built once; building it costs a few milliseconds)."""
        return build_char_tokenizer(self.alphabet)

    @cached_property
    def char_ids(self) -> dict[str, int]:
        """Character -> token id, taken from the tokenizer itself so the two can never disagree."""
        vocab = self.tokenizer.get_vocab()
        return {c: vocab[c] for c in self.alphabet}

    @cached_property
    def id_chars(self) -> dict[int, str]:
        return {i: c for c, i in self.char_ids.items()}

    @property
    def bos_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(BOS)

    @property
    def mask_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(MASK)

    @property
    def canvas_len(self) -> int:
        """BOS plus the answer tokens: the model's ``max_sequence_length``."""
        return 1 + self.seq_len

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def suppressed_ids(self) -> list[int]:
        """Token ids a decoder must never write into a masked cell: every special token and every
        character outside ``answer_alphabet`` (e.g. Sudoku's blank markers ``0`` and ``.``)."""
        allowed = {self.char_ids[c] for c in (self.answer_alphabet or self.alphabet)}
        return [i for i in range(self.vocab_size) if i not in allowed and i != self.mask_id]

    def encode_text(self, text: str) -> list[int]:
        """Ids of a task text (no BOS). Raises on characters outside the alphabet, since the
        fast tokenizer would otherwise silently map them to ``[PAD]``."""
        try:
            return [self.char_ids[c] for c in text]
        except KeyError as e:
            raise ValueError(f"character {e.args[0]!r} is not in the {self.name} alphabet {self.alphabet!r}") from None

    def decode_ids(self, ids: Sequence[int]) -> str:
        """Text of answer ids; specials (BOS, MASK, ...) become ``?`` so lengths are preserved."""
        return "".join(self.id_chars.get(int(i), "?") for i in ids)

    def answer_text(self, text_or_ids: str | Sequence[int]) -> str:
        """Normalise a model output to the ``seq_len`` answer characters.

        Accepts a decoded string (with or without a leading ``[BOS]`` marker) or token ids of the
        whole canvas (``canvas_len``) or of the answer only (``seq_len``)."""
        if isinstance(text_or_ids, str):
            text = text_or_ids.replace(BOS, "").replace(MASK, "?")
            return text.strip()
        ids = [int(i) for i in text_or_ids]
        if len(ids) == self.canvas_len and ids[0] == self.bos_id:
            ids = ids[1:]
        elif len(ids) != self.seq_len:
            raise UnmaskError(self._not_a_completion(f"{len(ids)} token ids"))
        return self.decode_ids(ids)

    #: what a user's prompt may leave out: the cells after a shorter text are filled with this
    blank_char = "?"

    def canvas_from_text(self, text: str) -> str:
        """The canvas a user's prompt stands for, the one rule of ``unmask sample --prompt`` and of
        the server's prompts: whitespace is dropped (a Sudoku may be sent as 9 lines), a shorter
        text is padded with blanks to fill (``12*34=`` asks for the product), a longer one is an
        error. An empty text returns ``""`` (the caller uses the built-in example)."""
        text = "".join(text.split())
        if len(text) > self.seq_len:
            raise UnmaskError(f"a {self.name} prompt has at most {self.seq_len} characters "
                              f"('{self.blank_char}' = to fill), got {len(text)}")
        return text + self.blank_char * (self.seq_len - len(text)) if text else ""

    def completion_text(self, answer: str | Sequence[int]) -> str:
        """The answer text ``score``/``verify`` grade. A text is taken as given (a wrong one scores
        0); an empty text or ids of the wrong length cannot be a completion of this task and raise,
        because scoring them as a silent 0 hides a caller's mistake (typically ``out.generated``,
        which is empty for a task model: its answer is the canvas, ``out.sequences``)."""
        if isinstance(answer, str):
            if not answer.strip():
                raise UnmaskError(self._not_a_completion("an empty text"))
            return answer
        return self.parse(answer)

    def _not_a_completion(self, got: str) -> str:
        return (f"{self.name}: cannot score {got}: a completion is the whole canvas, {self.canvas_len} ids "
                f"(or the {self.seq_len} answer ids or their text); task models decode with max_new_tokens=0, "
                "so pass out.sequences[i], not out.generated[i] (which is empty)")

    # ---------------------------------------------------------------- hooks
    def sample(self, rng: random.Random, **difficulty: Any) -> dict[str, Any]:
        """One JSON-able test item."""
        raise NotImplementedError

    def training_example(self, rng: random.Random) -> tuple[list[int], list[bool]]:
        """``(ids, target)`` of length ``canvas_len``; ``target[i]`` = may be masked."""
        raise NotImplementedError

    def prompt_ids(self, item: dict[str, Any], tokenizer=None) -> list[int]:
        """The canvas to decode: ``[BOS]`` + answer positions, mask id where the model must fill.

        ``tokenizer`` is accepted for interface symmetry with benchmark tasks; when given, its
        mask/BOS ids are used (they equal ours for any tokenizer built from this alphabet)."""
        raise NotImplementedError

    def parse(self, text_or_ids: str | Sequence[int]) -> Any:
        raise NotImplementedError

    def verify(self, item: dict[str, Any], answer: Any) -> bool:
        raise NotImplementedError

    def score(self, item: dict[str, Any], answer: Any) -> dict[str, float]:
        """Graded metrics; always includes ``correct`` (1.0 / 0.0)."""
        return {"correct": float(self.verify(item, answer))}

    def check_items(self, items: Sequence[dict[str, Any]], source: str) -> None:
        """Refuse items from a user's file that would decode or score wrongly: a puzzle that is
        not text of the canvas length, a solution/reference of the wrong type or length (a short
        solution used to crash the scorer, a numeric one to score as a silent 0)."""

        for i, item in enumerate(items):
            where = f"{source}: item {i}"
            if not isinstance(item, dict):
                raise UnmaskError(f"{where} must be a JSON object")
            for key in ("puzzle", "solution", "reference"):
                if key not in item:
                    continue
                v = item[key]
                if not isinstance(v, str):
                    raise UnmaskError(f"{where}: {key!r} must be a string of {self.seq_len} characters, "
                                      f"got {type(v).__name__}")
                if len(v.strip()) != self.seq_len:
                    raise UnmaskError(f"{where}: {key!r} must have {self.seq_len} characters, got {len(v.strip())}")
            try:
                self.prompt_ids(item)
            except (KeyError, ValueError, TypeError, IndexError) as e:
                raise UnmaskError(f"{where} is not a {self.name} item ({type(e).__name__}: {e})") from None

    # ---------------------------------------------------------------- the CLI's view of a task
    #: the difficulty of the built-in example (``unmask sample`` without a prompt)
    example_difficulty: dict[str, Any] = {}

    def example_item(self, seed: int) -> dict[str, Any]:
        """The built-in example item (what ``unmask sample`` decodes without ``--prompt``)."""
        return self.make_dataset(1, seed=seed, **self.example_difficulty)[0]

    def item_from_text(self, text: str) -> dict[str, Any]:
        """An item from a user's canvas text: the answer's length, ``?`` or ``_`` where the model
        must fill, every other character pinned."""
        from ..errors import UnmaskError

        text = text.strip()
        if len(text) != self.seq_len:
            raise UnmaskError(f"a {self.name} prompt has {self.seq_len} characters ('?' = to fill), got {len(text)}")
        return {"puzzle": text}

    def item_prompt_ids(self, item: dict[str, Any], tokenizer=None) -> list[int]:
        """The canvas of an item, with a user's pinned characters (``item_from_text``) laid on it."""
        ids = list(self.prompt_ids(item, tokenizer))
        if "puzzle" not in item:
            return ids
        from ..errors import UnmaskError

        for i, ch in enumerate(item["puzzle"]):
            if ch in "?_":
                continue
            try:
                ids[1 + i] = self.char_ids[ch]
            except KeyError:
                raise UnmaskError(f"character {ch!r} is not in the {self.name} alphabet") from None
        return ids

    def render(self, answer: str) -> str:
        """The answer as ``unmask sample`` prints it."""
        return answer

    def sample_extras(self, item: dict[str, Any], trace) -> dict[str, Any]:
        """Task-specific figures of one decoded item for ``unmask sample`` (none by default)."""
        return {}

    # ---------------------------------------------------------------- shared helpers
    def make_dataset(self, n: int, seed: int, **difficulty: Any) -> list[dict[str, Any]]:
        """``n`` test items, a pure function of ``(seed, difficulty, task params)``."""
        rng = random.Random(seed)
        items = []
        for i in range(n):
            item = self.sample(rng, **difficulty)
            item["id"] = f"{self.name}-{seed}-{i}"
            items.append(item)
        return items

    def _special_ids(self, tokenizer) -> tuple[int, int]:
        if tokenizer is None:
            return self.bos_id, self.mask_id
        return tokenizer.convert_tokens_to_ids(BOS), tokenizer.mask_token_id

    def task_json(self) -> dict[str, Any]:
        """What ``task.json`` stores: enough to rebuild the task with :func:`get_task`."""
        return {"task": self.name, "params": dict(self.params), "alphabet": self.alphabet,
                "seq_len": self.seq_len, "canvas_len": self.canvas_len}


_REGISTRY: dict[str, Callable[..., SyntheticTask]] = {}


def register(name: str) -> Callable[[type[SyntheticTask]], type[SyntheticTask]]:
    """Class decorator adding a task constructor to the registry under ``name``."""

    def deco(cls: type[SyntheticTask]) -> type[SyntheticTask]:
        _REGISTRY[name] = cls
        return cls

    return deco


def _ensure_loaded() -> None:
    # the task modules register themselves on import; importing here avoids a cycle at load time
    from . import judge, multiply, nae_sat, sudoku  # noqa: F401


def task_names() -> list[str]:
    _ensure_loaded()
    return sorted(_REGISTRY)


def get_task(name: str, **params: Any) -> SyntheticTask:
    """Build a registered synthetic task, e.g. ``get_task("nae_sat", n=12, p=48, seed=0)``."""
    _ensure_loaded()
    if name not in _REGISTRY:
        raise KeyError(f"unknown synthetic task {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**params)


def task_from_json(d: dict[str, Any]) -> SyntheticTask:
    """Inverse of :meth:`SyntheticTask.task_json` (reads a model folder's ``task.json``)."""
    return get_task(d["task"], **d.get("params", {}))
