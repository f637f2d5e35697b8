"""``unmask chat``: a multi-turn conversation with a masked diffusion model (:mod:`.repl`)."""

from __future__ import annotations

from .repl import ChatRepl, Conversation, Turn

__all__ = ["ChatRepl", "Conversation", "Turn"]
