"""The one exception type users see.

Every mistake a user can make (a bad flag value, a missing checkpoint, a prompt that does not fit)
raises :class:`UnmaskError` with a message that says what to change. The CLI prints the message on
one line and exits with status 2, so scripts can tell bad input from crashes.
"""

from __future__ import annotations


class UnmaskError(ValueError):
    """A problem with the user's input, configuration or files (never an internal bug)."""

    def __init__(self, message: str) -> None:
        # Keep it on one line: the CLI prints str(err) as is.
        super().__init__(" ".join(str(message).split()))
