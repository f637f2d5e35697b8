"""Reading and writing the user's files with one-line errors.

A file given on the command line can be missing, a folder, unreadable, binary or not UTF-8, and an
output path can point into a missing folder, at an existing folder or somewhere read-only. Each of
those is the user's to fix, so each becomes an :class:`UnmaskError` naming the file and the
problem, instead of a traceback from deep inside ``open``.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

from .errors import UnmaskError


def _os_reason(e: OSError) -> str:
    return e.strerror or type(e).__name__


def read_text(path: str | Path, what: str = "file") -> str:
    """The UTF-8 text of a user file (a leading BOM is dropped)."""
    p = Path(path)
    if not p.exists():
        raise UnmaskError(f"{what} {p} does not exist")
    if p.is_dir():
        raise UnmaskError(f"{what} {p} is a folder, not a file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise UnmaskError(f"cannot read {what} {p}: {_os_reason(e)}") from None
    return decode_text(data, p, what)


def decode_text(data: bytes, path: str | Path, what: str = "file") -> str:
    if b"\x00" in data[:8192]:
        raise UnmaskError(f"{what} {path} is a binary file, not text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UnmaskError(f"{what} {path} is not valid UTF-8 text (byte {e.start})") from None
    return text[1:] if text.startswith("\ufeff") else text


def parse_jsonl(text: str, source: str | Path) -> list[dict[str, Any]]:
    """The objects of JSONL text, one per non-blank line. Errors name ``source`` and the line, so
    every reader of a user's JSONL (task data, compare items, GenEval metadata) reports alike."""
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UnmaskError(f"{source}:{n}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise UnmaskError(f"{source}:{n}: expected a JSON object per line")
        rows.append(row)
    return rows


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Records of a JSONL data file (``.gz`` allowed); a JSON array file is accepted too, because
    some upstream files (sanitized MBPP) are arrays. An empty file is an error: nothing to run."""
    path = Path(path)
    if not path.exists():
        raise UnmaskError(f"data file {path} does not exist")
    if path.suffix == ".gz":
        try:
            with gzip.open(path, "rb") as f:
                text = decode_text(f.read(), path, "data file")
        except (OSError, EOFError) as e:
            raise UnmaskError(f"data file {path} is not a readable gzip file ({e})") from None
    else:
        text = read_text(path, "data file")
    stripped = text.lstrip()
    if not stripped:
        raise UnmaskError(f"data file {path} is empty: no records to evaluate")
    if stripped.startswith("["):
        try:
            rows = json.loads(stripped)
        except json.JSONDecodeError as e:
            raise UnmaskError(f"{path}: not valid JSON ({e})") from None
        if not all(isinstance(r, dict) for r in rows):
            raise UnmaskError(f"{path}: expected a JSON array of objects")
        return rows
    return parse_jsonl(text, path)


def check_output_file(path: str | Path, what: str = "output file") -> Path:
    """Fail before any work when ``path`` cannot be written: an existing folder, a missing or
    non-folder parent, or a read-only place."""
    p = Path(path)
    if p.is_dir():
        raise UnmaskError(f"{what} {p} is a folder; give a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        raise UnmaskError(f"cannot write {what} {p}: folder {parent} does not exist")
    if not parent.is_dir():
        raise UnmaskError(f"cannot write {what} {p}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise UnmaskError(f"cannot write {what} {p}: permission denied")
    return p


def write_text(path: str | Path, text: str, what: str = "output file") -> None:
    p = check_output_file(path, what)
    try:
        p.write_text(text)
    except OSError as e:
        raise UnmaskError(f"cannot write {what} {p}: {_os_reason(e)}") from None


def ensure_dir(path: str | Path, what: str = "output folder") -> Path:
    """Create an output folder (and its parents), or explain in one line why not."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UnmaskError(f"{what} {p} exists and is not a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UnmaskError(f"{what} {p}: a part of the path is a file, not a folder") from None
    except NotADirectoryError:
        raise UnmaskError(f"{what} {p}: a part of the path is a file, not a folder") from None
    except OSError as e:
        raise UnmaskError(f"cannot create {what} {p}: {_os_reason(e)}") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise UnmaskError(f"cannot write into {what} {p}: permission denied")
    return p


_NETWORK_ERRORS = {"ConnectionError", "ConnectTimeout", "ReadTimeout", "Timeout", "gaierror", "MaxRetryError",
                   "NewConnectionError", "OfflineModeIsEnabled", "ProxyError", "SSLError"}


def network_error_line(e: BaseException) -> str | None:
    """For an error raised because the network is unreachable (a dataset or model download by a
    library such as lm-eval/datasets/requests): one line naming what was tried and what to do
    offline. None for any other error. A bare ``ConnectionError`` told the user nothing."""
    import re

    if not {c.__name__ for c in type(e).__mro__} & _NETWORK_ERRORS:
        return None
    text = str(e)
    url = getattr(getattr(e, "request", None), "url", None)
    m = re.search(r"host='([^']+)'(?:, port=\d+)?\).*?url: (\S+)", text)
    if not url and m:
        url = f"{m.group(1)}{m.group(2)}"
    m = re.search(r"https?://[^\s'\")]+", text)
    if not url and m:
        url = m.group(0)
    tried = f"tried to reach {url}" if url else f"a network request failed ({text.splitlines()[0][:200] if text else '?'})"
    return (f"no network: {tried} ({type(e).__name__}). Offline, use a packaged task "
            "(`unmask eval --list_tasks`) or --data FILE.jsonl; for a lm-eval task or a hub model, put it in "
            "the local Hugging Face cache on a machine with network first, then set HF_HUB_OFFLINE=1 "
            "HF_DATASETS_OFFLINE=1")


def os_error_line(e: OSError) -> str:
    """One line for an I/O error that escaped the checks above (the CLI's safety net)."""
    network = network_error_line(e)
    if network is not None:
        return network
    name = f" {e.filename}" if getattr(e, "filename", None) else ""
    return f"{_os_reason(e)}:{name}".rstrip(":")
