"""The interface every evaluation task implements, plus data-file helpers.

An evaluation task is four pure pieces, kept separate so each can be unit-tested on real data
without a model:

1. ``load(data_path)``: the items (JSON-able dicts with a stable ``id``);
2. ``prompt(item, chat, num_fewshot)``: the prompt, as plain text (base models) or as a list of
   chat messages (instruct models, rendered with the tokenizer's chat template);
3. ``extract(text, item)``: the answer found in the model output, or ``None`` when there is none
   (no fallback answer is ever substituted: an empty or unparsable output scores 0);
4. ``score(item, answer, text)``: metrics, always including ``correct`` (1.0 or 0.0).

The runner (:mod:`unmask.eval.runner`) owns batching, decoding, resuming and aggregation, so a
task never touches the model except through :meth:`EvalTask.encode` and
:meth:`EvalTask.output_text`, which default to the generic text path of
:class:`unmask.session.Session`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ...errors import UnmaskError
from ...userio import read_jsonl  # noqa: F401  (the tasks' data reader, imported from here by each task)

Prompt = str | list[dict[str, str]]


def data_dir() -> Path:
    """Folder of the benchmark files shipped inside the package (``unmask/data``)."""
    return Path(__file__).resolve().parent.parent.parent / "data"


def sha256_file(path: str | Path) -> str:
    """Hex digest of a file's bytes: part of the results key, so editing a data file never
    resumes from results computed on the old contents."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


#: JSON type names used in messages
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "an object"}


def require_fields(rows: Sequence[dict[str, Any]], fields: Sequence[str] | Mapping[str, Any], path: str | Path,
                   fmt: str) -> None:
    """Fail early, naming the first bad record, when a user data file lacks a field or (when
    ``fields`` maps names to types) holds a value of the wrong type: a number where the question
    text belongs would otherwise be scored as a silent 0."""
    types = dict(fields) if isinstance(fields, Mapping) else {}
    if not rows:
        raise UnmaskError(f"{path} has no records; expected {fmt}")
    for i, row in enumerate(rows):
        missing = [f for f in fields if f not in row]
        if missing:
            raise UnmaskError(f"{path}: record {i} lacks field(s) {', '.join(missing)}; expected {fmt}")
        for name, want in types.items():
            if want is None:
                continue
            v = row[name]
            if isinstance(v, bool) or not isinstance(v, want):
                allowed = want if isinstance(want, tuple) else (want,)
                what = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in allowed)
                raise UnmaskError(f"{path}: record {i} field {name!r} must be {what}, got {type(v).__name__}")


def assign_ids(rows: list[dict[str, Any]], prefix: str, id_field: str | None = None) -> list[dict[str, Any]]:
    """Give every item a unique string ``id`` (the resume key): the record's own id field when it
    has one, else ``prefix/index``. Duplicates get ``#n`` suffixes so keys never collide."""
    seen: dict[str, int] = {}
    out = []
    for i, row in enumerate(rows):
        raw = row.get(id_field) if id_field else row.get("id")
        base = str(raw) if raw is not None else f"{prefix}/{i}"
        n = seen.get(base, 0)
        seen[base] = n + 1
        item = dict(row)
        item["id"] = base if n == 0 else f"{base}#{n}"
        out.append(item)
    return out


def cut_at_stops(text: str, stops: Sequence[str]) -> str:
    """Text up to the earliest stop sequence (diffusion models write the whole canvas at once, so
    stop strings are applied to the decoded text after generation)."""
    cut = len(text)
    for s in stops:
        if s:
            i = text.find(s)
            if i != -1:
                cut = min(cut, i)
    return text[:cut]


class EvalTask:
    """Base class of benchmark and synthetic evaluation tasks (see the module docstring)."""

    #: registry name (``--task``)
    name: ClassVar[str] = ""
    #: one line for ``unmask eval --help`` and the docs
    description: ClassVar[str] = ""
    #: in-prompt examples used unless ``--num_fewshot`` says otherwise
    default_fewshot: ClassVar[int] = 0
    #: decoding defaults applied when the user gives no value (max_new_tokens, steps, block_size)
    defaults: ClassVar[dict[str, Any]] = {}
    #: strings that end the answer; applied to the decoded text
    stop_sequences: ClassVar[tuple[str, ...]] = ()
    #: the ``--data`` JSONL format, for error messages and docs
    data_format: ClassVar[str] = ""
    #: bump when prompts or scoring change, so old results are not resumed into new runs
    version: ClassVar[str] = "1"
    #: True for tasks that run generated code (HumanEval, MBPP)
    runs_code: ClassVar[bool] = False
    #: False for infilling tasks whose prompt is a canvas with masks (no chat template)
    uses_chat: ClassVar[bool] = True

    # ---------------------------------------------------------------- data
    def default_data_path(self) -> Path | None:
        return None

    def load(self, data_path: str | Path | None = None) -> list[dict[str, Any]]:
        raise NotImplementedError

    def data_fingerprint(self, data_path: str | Path | None = None) -> str:
        path = Path(data_path) if data_path else self.default_data_path()
        if path is None:
            raise NotImplementedError
        return sha256_file(path)

    # ---------------------------------------------------------------- prompts
    def prompt(self, item: dict[str, Any], chat: bool, num_fewshot: int) -> Prompt:
        raise NotImplementedError

    def encode(self, session, item: dict[str, Any], chat: bool, num_fewshot: int) -> list[int]:
        """Token ids of the prompt: chat messages go through the tokenizer's template, plain text
        is tokenized with the tokenizer's special tokens (e.g. BOS) as a base model expects."""
        p = self.prompt(item, chat, num_fewshot)
        if isinstance(p, list):
            return session.encode_prompt(p)
        return session.encode_prompt(p, chat_template=False)

    def generation_defaults(self) -> dict[str, Any]:
        return dict(self.defaults)

    # ---------------------------------------------------------------- outputs
    def stops(self, chat: bool) -> tuple[str, ...]:
        """Stop strings for a prompt style (completion-style prompts usually need more)."""
        return self.stop_sequences

    def output_text(self, session, output, row: int, chat: bool) -> str:
        """The answer text of one row, cut at the task's stop sequences."""
        return cut_at_stops(session.decode(output.generated[row]), self.stops(chat))

    def generated_tokens(self, output, row: int, prompt_ids: Sequence[int]) -> int:
        """Real generated tokens of a row: up to (excluding) the first stop token."""
        return len(output.generated[row])

    def extract(self, text: str, item: dict[str, Any]) -> Any:
        raise NotImplementedError

    def score(self, item: dict[str, Any], answer: Any, text: str) -> dict[str, float]:
        raise NotImplementedError

    def reference(self, item: dict[str, Any]) -> Any:
        """What the record stores as the expected answer (for reading results by eye)."""
        return None

    def settings(self) -> dict[str, Any]:
        """Everything besides the data that defines this task's prompts and scoring (results key)."""
        return {"task": self.name, "version": self.version}
