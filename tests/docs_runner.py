"""Docs as tests: every fenced ``bash`` and ``python`` block of README.md and docs/*.md runs, through
Sybil's parsers and lexers (collected by tests/test_docs.py, so the README's test command runs them).

Why a runner and not plain doctests: the docs name 8B checkpoints and real hub folders, and use
sizes (``--n 200``, ``--max_steps 6000``) meant for a user with time. The run keeps the commands as
written and changes only what the tables below say, so a reader can check exactly what was
substituted:

* ``MODEL_STANDINS``: each alias (``llada``, ``dream``, ``sdar``, ``trado``) resolves, through a
  temporary Hugging Face cache (``HF_HUB_CACHE``), to a tiny random-weight checkpoint of the same
  architecture and file layout, laid out at the real repo id's snapshot path.
* ``TEXT_SUBSTITUTIONS``: literal rewrites (a placeholder folder, ``device="cuda"``, the server port).
* ``NOT_RUN``: ``pip install`` commands (the run's environment is already installed).
* ``SHRINK_*``: applied only when ``UNMASK_DOCS_SIZE=small`` (the default; set
  ``UNMASK_DOCS_SIZE=full`` to run the documented sizes): numeric flags above a cap are lowered to
  it, commands without a size get one appended (``--n 4``, ``--limit 4``, ``--max_steps 4``), a
  benchmark eval of a stand-in runs zero-shot with 32 new tokens, and a sweep reads a shrunk copy
  of its YAML. Every change made to a block is recorded (``namespace["log"]``).
* ``unmask serve``: started in the background on a free port; the block waits until ``/health``
  answers, and the server runs until the document's next ``unmask serve`` or its end.

A block opts out with ``<!-- skip: next "reason" -->`` right before it (Sybil's skip directive);
the reason is mandatory and is printed. A fenced ``output`` block right after a command block is
compared with what the command printed (``...`` in a line matches any text; whole lines ``...``
match any number of lines).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

from sybil import Document, Region, Sybil
from sybil.parsers.markdown.lexers import FencedCodeBlockLexer
from sybil.parsers.markdown.skip import SkipParser

ROOT = Path(__file__).resolve().parent.parent

#: alias -> (Hugging Face repo id the alias resolves to, tiny architecture written there)
MODEL_STANDINS = {
    "llada": ("GSAI-ML/LLaDA-8B-Instruct", "llada"),
    "dream": ("Dream-org/Dream-v0-Instruct-7B", "dream"),
    "sdar": ("JetLM/SDAR-8B-Chat", "sdar"),
    "trado": ("Gen-Verse/TraDo-8B-Instruct", "sdar"),
}

#: literal text rewrites applied to every block (what, by what, why); ``{llada}`` is the stand-in folder
TEXT_SUBSTITUTIONS = [
    ("path/to/LLaDA-8B-Instruct", "{llada}", "placeholder folder -> the tiny LLaDA stand-in"),
    ('device="cuda"', 'device="cpu"', "CI has no GPU"),
    ("stop_token_ids=[126081, 126348]", "stop_token_ids=[2]",
     "LLaDA's <|eot_id|>/<|endoftext|> ids -> the stand-in's EOS (a 126k-token head would make every run slow)"),
    (":8000", ":{port}", "a free port, so parallel runs do not collide"),
    ("--port 8000", "--port {port}", "a free port, so parallel runs do not collide"),
]

#: commands never run: the test run's environment is already installed (and CI has no network)
NOT_RUN = [(re.compile(r"\bpython3? -m pip install\b[^&;|]*?(?=\s*(?:&&|;|\||$))"), "true",
            "pip install: already installed")]

#: UNMASK_DOCS_SIZE=small: flag -> largest value run (``--max_steps``: divided by 1500, so an
#: extended run still extends: 6000 -> 4, 12000 -> 8)
SHRINK_CAPS = {"--n": 4, "--limit": 4, "--max_new_tokens": 48, "--steps": 48, "--max_steps": 4,
               "--reasoning_tokens": 24, "--candidate_number": 4}
SHRINK_DIVIDE = {"--max_steps": 1500}
#: UNMASK_DOCS_SIZE=small: (command prefix, flags appended when the command lacks them)
SHRINK_APPEND = [(train, extra) for train in ("unmask train ", "python -m unmask.train ")
                 for extra in ("--max_steps 4", "--eval_size 8", "--decode_eval 2")]
SHRINK_APPEND += [("unmask compare ", "--n 4"), ("unmask eval ", "--limit 4")]
#: UNMASK_DOCS_SIZE=small: a benchmark eval of a stand-in writes short answers without few-shot
#: examples (a 5-shot GSM8K prompt is 3000 characters, i.e. tokens, for the character tokenizer)
SHRINK_STANDIN_EVAL = ("--max_new_tokens 32", "--num_fewshot 0")
#: UNMASK_DOCS_SIZE=small: a sweep reads a copy of its YAML with ``limit`` lowered and at most
#: SHRINK_SWEEP_AXIS entries per list (models, tasks, samplers, each settings axis)
SHRINK_SWEEP = {"limit": 2}
SHRINK_SWEEP_AXIS = 2

BLOCK_TIMEOUT = 600


def size() -> str:
    value = os.environ.get("UNMASK_DOCS_SIZE", "small")
    if value not in ("small", "full"):
        raise ValueError(f"UNMASK_DOCS_SIZE must be small or full, got {value!r}")
    return value


class Stats:
    """Counts for the summary line (tests/conftest.py prints it)."""

    run = 0
    substituted = 0
    skipped: list[str] = []
    compared = 0


# ---------------------------------------------------------------------------------------- fixtures
def write_standins(cache: Path) -> dict[str, Path]:
    """Tiny random-weight checkpoints at the snapshot paths of the real repos (a fake HF cache)."""
    import string

    sys.path.insert(0, str(Path(__file__).parent))
    from tiny import tiny_config

    from unmask.models.loading import build_model, save_model
    from unmask.tokenizer import build_char_tokenizer, build_chatml_char_tokenizer

    alphabet = string.ascii_letters + string.digits + " .,?!=+*-/:;'\"()[]{}<>_|#%&@^~`$\\\n"
    out = {}
    for alias, (repo, arch) in MODEL_STANDINS.items():
        folder = cache / ("models--" + repo.replace("/", "--")) / "snapshots" / "docs-standin"
        if not (folder / "config.json").exists():
            folder.mkdir(parents=True, exist_ok=True)
            tok = build_chatml_char_tokenizer(alphabet) if arch == "sdar" else build_char_tokenizer(alphabet)
            length = {"sdar": "max_position_embeddings", "llada": "max_sequence_length",
                      "dream": "max_position_embeddings"}[arch]
            model = build_model(tiny_config(arch, len(tok), **{length: 8192}), seed=0)
            save_model(model, folder, dtype="float32")
            tok.save_pretrained(str(folder))
        out[alias] = folder
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------- rewriting
def substitute(source: str, ns: dict) -> tuple[str, list[str]]:
    """Apply TEXT_SUBSTITUTIONS; return the new text and the reasons that applied."""
    used = []
    for old, new, why in TEXT_SUBSTITUTIONS:
        if old in source:
            source = source.replace(old, new.format(llada=ns["standins"]["llada"], port=ns["port"]))
            used.append(f"{old} -> {why}")
    return source, used


def _logical_lines(source: str) -> list[str]:
    return source.replace("\\\n", " ").splitlines()


def shrink(line: str) -> tuple[str, list[str]]:
    """UNMASK_DOCS_SIZE=small: cap sizes in one command line."""
    if size() == "full":
        return line, []
    used = []
    code, hash_, comment = line.partition(" #")

    def cap(m):
        flag, value = m.group(1), int(m.group(2))
        limit = SHRINK_CAPS[flag]
        if flag in SHRINK_DIVIDE:
            limit = max(1, -(-value // SHRINK_DIVIDE[flag]))
        if value > limit:
            used.append(f"{flag} {value} -> {limit}")
            return f"{flag} {limit}"
        return m.group(0)

    flags = "|".join(re.escape(f) for f in SHRINK_CAPS)
    code = re.sub(rf"({flags})[ =](\d+)\b", cap, code)
    parts = re.split(r"(\s(?:&&|\|\||;|\||&)\s)", code)  # one command at a time
    for i in range(0, len(parts), 2):
        for prefix, extra in SHRINK_APPEND:
            flag = extra.split()[0]
            if parts[i].strip().startswith(prefix) and not re.search(rf"{flag}[ =]", parts[i]) \
                    and "--help" not in parts[i] and "--list_tasks" not in parts[i]:
                parts[i] = parts[i].rstrip() + " " + extra
                used.append(f"+{extra}")
        if parts[i].strip().startswith(("unmask eval ", "unmask lm-eval ")) and \
                re.search(r"--model_name_or_path[ =](llada|dream|sdar|trado)\b|--preset", parts[i]):
            for extra in SHRINK_STANDIN_EVAL:
                if not re.search(rf"{extra.split()[0]}[ =]", parts[i]):
                    parts[i] = parts[i].rstrip() + " " + extra
                    used.append(f"+{extra}")
    return "".join(parts) + hash_ + comment, used


def shrink_sweep_files(line: str, cwd: Path) -> list[str]:
    """UNMASK_DOCS_SIZE=small: a sweep reads a shrunk copy of its YAML (same path, in the run's folder)."""
    if size() == "full" or not line.strip().startswith("unmask sweep "):
        return []
    import yaml

    used = []
    for word in shlex.split(line.partition(" #")[0])[2:]:
        if word.endswith((".yaml", ".yml")) and (ROOT / word).is_file():
            cfg = yaml.safe_load((ROOT / word).read_text())
            for key, value in SHRINK_SWEEP.items():
                cfg[key] = min(cfg.get(key, value), value)
            for m in cfg.get("models", []):
                if isinstance(m, dict) and "limit" in m:
                    m["limit"] = min(m["limit"], SHRINK_SWEEP["limit"])
            for key in ("models", "tasks", "samplers"):
                if isinstance(cfg.get(key), list):
                    cfg[key] = cfg[key][:SHRINK_SWEEP_AXIS]
            for axis, values in (cfg.get("settings") or {}).items():
                if isinstance(values, list):
                    cfg["settings"][axis] = values[:SHRINK_SWEEP_AXIS]
            dest = cwd / word
            if ROOT in dest.resolve().parents:
                raise RuntimeError(f"the shrunk copy of {word} would overwrite the checkout's file")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(yaml.safe_dump(cfg))
            used.append(f"{word}: limit -> {SHRINK_SWEEP['limit']}, {SHRINK_SWEEP_AXIS} values per axis")
    return used


SERVE = re.compile(r"^(\s*)unmask serve\b(.*?)(&?)\s*(#.*)?$")


def rewrite_bash(source: str, ns: dict) -> tuple[str, list[str]]:
    """The script a block runs: substitutions, size caps, servers started in the background."""
    source, used = substitute(source, ns)
    out = []
    for line in _logical_lines(source):
        for pattern, repl, why in NOT_RUN:
            if pattern.search(line):
                line = pattern.sub(repl, line)
                used.append(why)
        line, u = shrink(line)
        used += u
        used += shrink_sweep_files(line, ns["cwd"])
        m = SERVE.match(line)
        if m:
            # a server runs in the background until the document ends (one at a time, like a user
            # stopping the previous one), on the run's port; the block waits until it answers
            args = m.group(2)
            if "--port" not in args:
                args += f" --port {ns['port']}"
            line = (f"__stop_server; unmask serve{args} > serve.log 2>&1 & echo $! > server.pid; "
                    f"__wait_server {ns['port']}")
            used.append("unmask serve -> background server on a free port")
        out.append(line)
    return "\n".join(out), used


PRELUDE = r"""
set -e -o pipefail
__stop_server() { if [ -f server.pid ]; then kill "$(cat server.pid)" 2>/dev/null || true;
  while kill -0 "$(cat server.pid)" 2>/dev/null; do sleep 0.2; done; rm -f server.pid; fi; }
__wait_server() { for _ in $(seq 600); do
  if curl -sf -o /dev/null "http://127.0.0.1:$1/health";
  then return 0; fi; if ! kill -0 "$(cat server.pid)" 2>/dev/null; then cat serve.log >&2; return 1; fi;
  sleep 0.5; done; return 1; }
"""


# ---------------------------------------------------------------------------------------- evaluators
STANDIN_NAME = re.compile(r"""(?:--model_name_or_path[ =]|["'])(?:llada|dream|sdar|trado)\b""")


def _record(example, used: list[str]) -> None:
    if STANDIN_NAME.search(example.parsed):
        used = [*used, "8B model -> tiny stand-in (MODEL_STANDINS)"]
    Stats.run += 1
    if used:
        Stats.substituted += 1
    example.namespace.setdefault("log", []).append((example.line, used))


def evaluate_bash(example) -> str | None:
    ns = example.namespace
    script, used = rewrite_bash(example.parsed, ns)
    _record(example, used)
    cwd: Path = ns["cwd"]
    with open(cwd / ".stdout", "w+") as out, open(cwd / ".stderr", "w+") as err:
        proc = subprocess.run(["bash", "-c", PRELUDE + script], cwd=cwd, env=ns["env"], stdin=subprocess.DEVNULL,
                              stdout=out, stderr=err, timeout=BLOCK_TIMEOUT)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    ns["last_stdout"], ns["last_end"] = stdout, example.end
    if proc.returncode != 0:
        message = (f"{example.path}:{example.line}: block exited {proc.returncode}\n--- script\n{script}\n"
                   f"--- stdout (end)\n{stdout[-2000:]}\n--- stderr (end)\n{stderr[-3000:]}")
        print(message, file=sys.stderr)  # at once with `pytest -s`, not only in the final report
        return message
    return None


def evaluate_python(example) -> str | None:
    ns = example.namespace
    source, used = substitute(example.parsed, ns)
    _record(example, used)
    old_cwd, old_env = os.getcwd(), dict(os.environ)
    os.chdir(ns["cwd"])
    os.environ.update(ns["env"])
    import contextlib
    import io

    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            exec(compile(source, f"{example.path}:{example.line}", "exec"), ns["python"])
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)
        ns["last_stdout"], ns["last_end"] = buf.getvalue(), example.end
    return None


def _line_matches(pattern: str, line: str) -> bool:
    parts = [re.escape(p) for p in pattern.split("...")]
    return re.fullmatch(r"\s*" + ".*".join(parts).strip() + r"\s*", line) is not None


def match_output(expected: str, got: str) -> bool:
    """Lines of ``expected`` in order; ``...`` inside a line is any text, a ``...`` line any lines."""
    exp = [x.rstrip() for x in expected.strip("\n").splitlines()]
    lines = [x.rstrip() for x in got.strip("\n").splitlines()]

    def go(i, j):
        if i == len(exp):
            return j == len(lines)
        if exp[i].strip() == "...":
            return any(go(i + 1, k) for k in range(j, len(lines) + 1))
        return j < len(lines) and _line_matches(exp[i], lines[j]) and go(i + 1, j + 1)

    return go(0, 0)


def evaluate_output(example) -> str | None:
    Stats.compared += 1
    got = example.namespace.get("last_stdout")
    if got is None or not _follows_a_command(example):
        return f"{example.path}:{example.line}: an output block must follow a command block"
    if not match_output(example.parsed, got):
        return f"{example.path}:{example.line}: output differs\n--- documented\n{example.parsed}\n--- printed\n{got}"
    return None


def _lenient_json(text: str):
    """A documented JSON fragment: ``...`` stands for more entries, a leading ``"key": value`` is
    wrapped in braces."""
    text = re.sub(r",\s*\.\.\.\s*(?=[}\]])", "", text.strip())
    if text.startswith('"'):
        text = "{" + text + "}"
    return json.loads(text)


def json_subset(doc, got, where: str = "") -> list[str]:
    """Where ``got`` disagrees with the documented ``doc``: every documented key must be there,
    strings and booleans equal, numbers of the same kind (figures depend on the stand-in model),
    ``null`` where the docs say ``null``."""
    if isinstance(doc, dict):
        if not isinstance(got, dict):
            return [f"{where or '.'}: documented an object, got {got!r}"]
        return [e for k, v in doc.items()
                for e in ([f"{where}.{k}: documented, missing"] if k not in got else json_subset(v, got[k], f"{where}.{k}"))]
    if isinstance(doc, list):
        if not isinstance(got, list) or len(got) < len(doc):
            return [f"{where}: documented a list of {len(doc)}, got {got!r}"]
        return [e for i, v in enumerate(doc) for e in json_subset(v, got[i], f"{where}[{i}]")]
    if doc is None or isinstance(doc, (str, bool)):
        return [] if doc == got and type(doc) is type(got) else [f"{where}: documented {doc!r}, got {got!r}"]
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        return [f"{where}: documented a number, got {got!r}"]
    return []


def _follows_a_command(example) -> bool:
    last = example.namespace.get("last_end")
    return last is not None and not example.document.text[last:example.start].strip()


def evaluate_json(example) -> str | None:
    """A ``json`` block right after a command block is compared with the JSON the command printed
    (json_subset); one elsewhere is an illustration and only has to parse."""
    try:
        doc = _lenient_json(example.parsed)
    except json.JSONDecodeError as e:
        return f"{example.path}:{example.line}: the JSON example does not parse ({e})"
    if not _follows_a_command(example):
        return None
    Stats.compared += 1
    try:
        got = json.loads(example.namespace["last_stdout"])
    except json.JSONDecodeError:
        return f"{example.path}:{example.line}: the command before did not print JSON:\n{example.namespace['last_stdout']}"
    errors = json_subset(doc, got)
    return f"{example.path}:{example.line}: " + "; ".join(errors) if errors else None


class BlockParser:
    """Sybil parser: fenced blocks of one language, evaluated by ``evaluator``."""

    def __init__(self, language: str, evaluator):
        self.lexer = FencedCodeBlockLexer(language)
        self.evaluator = evaluator

    def __call__(self, document: Document):
        for lexed in self.lexer(document):
            yield Region(lexed.start, lexed.end, str(lexed.lexemes["source"]), self.evaluator)


def make_sybil() -> Sybil:
    return Sybil(parsers=[SkipParser(), BlockParser("bash|sh|console", evaluate_bash),
                          BlockParser("python", evaluate_python), BlockParser("output", evaluate_output),
                          BlockParser("json", evaluate_json)],
                 path=str(ROOT), patterns=["README.md", "docs/*.md"])


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


SKIP_MARKER = re.compile(r"^[ \t]*<!--+\s*skip:\s*(\w+)(.*?)--+>", re.MULTILINE)


def skip_markers(path: Path) -> list[tuple[int, str, str]]:
    """(line, directive, reason) of every skip marker: an opt-out must say why."""
    text = path.read_text()
    return [(text[: m.start()].count("\n") + 1, m.group(1), m.group(2).strip().strip('"'))
            for m in SKIP_MARKER.finditer(text)]


def document_namespace(standins: dict[str, Path], cache: Path, workdir: Path) -> dict:
    """What every block of one document shares: a working folder (files written by one block are
    read by the next), the environment, the stand-ins and a port."""
    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / "benchmarks").exists():  # a copy: a shrunk sweep YAML is written over it
        shutil.copytree(ROOT / "benchmarks", workdir / "benchmarks")
    bindir = workdir / ".bin"
    bindir.mkdir(exist_ok=True)
    # `unmask`, `python`, `python3` run this checkout with the test run's interpreter
    for name, body in (("unmask", f'exec "{sys.executable}" -m unmask "$@"'),
                       ("python", f'exec "{sys.executable}" "$@"'), ("python3", f'exec "{sys.executable}" "$@"')):
        (bindir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bindir / name).chmod(0o755)
    env = dict(os.environ)
    env.update({"PATH": f"{bindir}{os.pathsep}{env.get('PATH', '')}", "HF_HUB_CACHE": str(cache),
                "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]),
                "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"})
    return {"cwd": workdir, "env": env, "standins": standins, "port": free_port(), "python": {"__name__": "__docs__"}}


def stop_server(ns: dict) -> None:
    pid_file = ns["cwd"] / "server.pid"
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass
        pid_file.unlink()


