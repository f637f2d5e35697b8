"""OpenAI wire shapes: response bodies and streaming chunks, plus unmask's extra ``unmask`` field.

Standard clients ignore fields they do not know, so the figures of a masked diffusion decode
(NFE, forward rows/tokens, cumulative entropy, the batch it ran in, the effective settings) ride
along in an ``unmask`` object: on the response, on each choice's last stream chunk, and on the
``stream_canvas`` chunks (which carry the whole canvas after a step).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from .batcher import RowResult

OBJECT = {"chat": "chat.completion", "completion": "text_completion"}
CHUNK_OBJECT = {"chat": "chat.completion.chunk", "completion": "text_completion"}


def new_id(kind: str) -> str:
    return ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex[:24]


def now() -> int:
    return int(time.time())


def usage(results: list[RowResult], prompt_tokens: int) -> dict[str, int]:
    completion = sum(r.completion_tokens for r in results)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": prompt_tokens + completion}


def totals(results: list[RowResult], settings: dict[str, Any]) -> dict[str, Any]:
    """The ``unmask`` object of a whole response: sums over its choices, and each choice's own."""
    fwd = [r.stats["forward_tokens"] for r in results]
    return {
        "nfe": sum(r.stats["nfe"] for r in results),
        "forward_rows": sum(r.stats["forward_rows"] for r in results),
        "forward_tokens": None if any(f is None for f in fwd) else sum(fwd),
        "cumulative_entropy": round(sum(r.stats["cumulative_entropy"] for r in results), 6),
        "batch_size": max(r.stats["batch_size"] for r in results),
        "queue_seconds": max(r.stats["queue_seconds"] for r in results),
        "decode_seconds": max(r.stats["decode_seconds"] for r in results),
        "settings": settings,
        "choices": [{"index": i, **r.stats} for i, r in enumerate(results)],
    }


def response(kind: str, rid: str, created: int, model: str, results: list[RowResult], prompt_tokens: int,
             settings: dict[str, Any]) -> dict[str, Any]:
    """A non-streamed chat.completion / text_completion body."""
    choices = []
    for i, r in enumerate(results):
        if kind == "chat":
            choices.append({"index": i, "message": {"role": "assistant", "content": r.text},
                            "logprobs": None, "finish_reason": r.finish_reason})
        else:
            choices.append({"index": i, "text": r.text, "logprobs": None, "finish_reason": r.finish_reason})
    return {"id": rid, "object": OBJECT[kind], "created": created, "model": model, "choices": choices,
            "usage": usage(results, prompt_tokens), "unmask": totals(results, settings)}


def chunk(kind: str, rid: str, created: int, model: str, index: int, text: str | None = None,
          role: bool = False, finish: str | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One streaming chunk for choice ``index``: new text, the opening role (chat), or the end."""
    if kind == "chat":
        delta: dict[str, Any] = {}
        if role:
            delta = {"role": "assistant", "content": ""}
        elif text is not None:
            delta = {"content": text}
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
    else:
        choice = {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish}
    out = {"id": rid, "object": CHUNK_OBJECT[kind], "created": created, "model": model, "choices": [choice]}
    if extra is not None:
        out["unmask"] = extra
    return out


def usage_chunk(kind: str, rid: str, created: int, model: str, results: list[RowResult], prompt_tokens: int,
                settings: dict[str, Any]) -> dict[str, Any]:
    """The last chunk when ``stream_options.include_usage`` is set: no choices, the usage."""
    return {"id": rid, "object": CHUNK_OBJECT[kind], "created": created, "model": model, "choices": [],
            "usage": usage(results, prompt_tokens), "unmask": totals(results, settings)}
