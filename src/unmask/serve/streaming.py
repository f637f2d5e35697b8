"""Incremental text for streaming: what of an answer may be sent now, and the SSE framing.

A masked diffusion model does not write left to right: any position may be decoded at any step.
A piece of text can therefore be sent only once it can no longer change, i.e. once every position
before it is decoded. :class:`TextStream` receives, after each step, the text of that *final
prefix* and hands out what is new, holding back

* the tail that could still turn out to be the start of a ``stop`` string (the client must never
  see text that a stop string later cuts off), and
* trailing U+FFFD characters, which a byte-level tokenizer produces for a UTF-8 character whose
  remaining bytes are still masked.

The concatenation of all deltas equals the non-streamed answer because both are cut from the same
text by the same rule (:func:`cut_at_stop`).
"""

from __future__ import annotations

import json
from typing import Any

from ..tasks.benchmarks.base import cut_at_stops

REPLACEMENT = "\ufffd"
DONE = b"data: [DONE]\n\n"


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """``text`` up to (excluding) the earliest stop string, and whether one was found: eval's
    rule (:func:`~unmask.tasks.benchmarks.base.cut_at_stops`; requests cannot send empty stops)."""
    cut = cut_at_stops(text, stops)
    return cut, len(cut) < len(text)


def stop_prefix_len(text: str, stops: list[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
    longest = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), longest, -1):
            if text.endswith(s[:k]):
                longest = k
                break
    return longest


class TextStream:
    """Deltas of one answer's text as its final prefix grows (see the module docstring)."""

    def __init__(self, stops: list[str] | None = None) -> None:
        self.stops = list(stops or [])
        self.sent = ""
        self.stopped = False  # a stop string was seen: the answer is complete
        self.diverged = False  # the tokenizer rewrote text already sent (never expected; logged)

    def update(self, text: str, final: bool) -> str:
        """The text to send now, given the current final-prefix ``text``; ``final`` = the whole
        answer is decoded, nothing is held back."""
        if self.stopped:
            return ""
        visible, found = cut_at_stop(text, self.stops)
        if found:
            self.stopped = True
        elif not final:
            keep = len(visible.rstrip(REPLACEMENT))
            keep -= stop_prefix_len(visible[:keep], self.stops)
            visible = visible[:keep]
        if not visible.startswith(self.sent):
            self.diverged = True
            return ""
        delta = visible[len(self.sent):]
        self.sent = visible
        return delta


def sse(obj: dict[str, Any]) -> bytes:
    """One server-sent event carrying a JSON object."""
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"
