"""The chat loop behind ``unmask chat``.

Two layers, so the conversation logic can be used (and tested) without a terminal:

* :class:`Conversation` keeps the message history and turns one user message into a reply: the
  whole history goes through the tokenizer's chat template (``add_generation_prompt=True``), the
  model fills ``max_new_tokens`` masks after it, and the reply is the generation up to the first
  end-of-turn/stop token. Whatever the engine left after that token (EOS fill) is never shown.
  With ``chat_template=False`` every message is a standalone raw prompt and nothing is kept.
* :class:`ChatRepl` reads messages, handles the slash commands and prints replies. On a terminal
  it prompts and shows a summary line per reply; when stdin is a pipe it reads one message per
  line and prints one reply per message (``--json``: one JSON object per line), so a chat can be
  scripted.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from ..errors import UnmaskError
from ..validation import check_utf8

if TYPE_CHECKING:  # pragma: no cover
    from ..decoding.engine import GenerationOutput
    from ..session import Session

#: slash commands and what they do (shown by /help and in the interactive banner)
COMMANDS = {
    "/reset": "forget the conversation so far",
    "/settings": "show the active sampler and decoding settings",
    "/help": "show this list",
    "/exit": "leave the chat (also /quit or Ctrl-D)",
}


@dataclass
class Turn:
    """One answered message: what was asked, the exact prompt the model saw, and the reply."""

    index: int
    user: str
    reply: str
    prompt_ids: list[int]
    prompt_text: str
    output: GenerationOutput

    @property
    def trace(self):
        return self.output.traces[0]

    def summary_line(self) -> str:
        tr = self.trace
        return (f"[nfe={tr.nfe} cumulative_entropy={tr.cumulative_entropy:.3f} "
                f"tokens={self.output.generated_tokens} seconds={self.output.seconds:.2f}]")

    def to_json(self) -> dict[str, Any]:
        tr = self.trace
        return {
            "turn": self.index,
            "user": self.user,
            "reply": self.reply,
            "prompt": self.prompt_text,
            "prompt_tokens": len(self.prompt_ids),
            "generated_tokens": self.output.generated_tokens,
            "nfe": tr.nfe,
            "forward_rows": tr.forward_rows,
            "forward_tokens": tr.forward_tokens,
            "cumulative_entropy": tr.cumulative_entropy,
            "seconds": self.output.seconds,
        }


class Conversation:
    """Message history plus the decoding settings used for every reply.

    ``chat_template=None`` means: multi-turn through the template when the tokenizer has one,
    otherwise raw single-turn prompting. Settings are validated here, before any input is read,
    so a bad flag fails at once instead of after the user typed a message."""

    def __init__(
        self,
        session: Session,
        sampler: str = "confidence",
        sampler_options: dict[str, Any] | None = None,
        overrides: dict[str, Any] | None = None,
        chat_template: bool | None = None,
        system_prompt: str | None = None,
        lockstep=None,
    ) -> None:
        tok = session.tokenizer
        if tok is None:
            raise UnmaskError(f"{session.folder} has no tokenizer; chat needs one")
        if getattr(session, "task", None) is not None:
            raise UnmaskError(f"{session.folder} is a built-in task model, not a chat model; use `unmask sample`")
        has_template = bool(getattr(tok, "chat_template", None))
        if chat_template is None:
            chat_template = has_template
        if chat_template and not has_template:
            raise UnmaskError("this tokenizer has no chat template; use --chat_template False")
        self.session = session
        self.sampler = sampler
        self.sampler_options = dict(sampler_options or {})
        self.overrides = dict(overrides or {})
        self.multi_turn = bool(chat_template)
        self.system_prompt = system_prompt
        self.lockstep = lockstep if lockstep is not None and lockstep.on else None
        if self.lockstep is not None and self.lockstep.answer_separator is None:
            raise UnmaskError("chat --lockstep puts R and A after each message: give --answer_separator TEXT "
                              "(e.g. '\\nAnswer: ')")
        self.messages: list[dict[str, str]] = []
        self.turns = 0
        self._check_settings()
        self.reset()

    def _check_settings(self) -> None:
        from ..samplers.base import make_sampler

        make_sampler(self.sampler, **self.sampler_options)
        self.session.generation_config(self.overrides).validate()

    def reset(self) -> None:
        """Start over: only the system prompt (if any) stays."""
        self.messages = []
        if self.multi_turn and self.system_prompt:
            self.messages.append({"role": "system", "content": self.system_prompt})

    @property
    def history_turns(self) -> int:
        """Completed user/assistant exchanges currently remembered."""
        return sum(m["role"] == "assistant" for m in self.messages)

    def prompt_ids(self, user_text: str) -> list[int]:
        """Token ids the model sees for the next reply: the templated history + the new message,
        or the raw message alone in single-turn mode."""
        if self.multi_turn:
            return self.session.encode_prompt([*self.messages, {"role": "user", "content": user_text}])
        text = user_text if not self.system_prompt else f"{self.system_prompt}\n{user_text}"
        return self.session.encode_prompt(text, chat_template=False)

    def respond(self, user_text: str, extra_overrides: dict[str, Any] | None = None) -> Turn:
        """Generate the reply to ``user_text`` and (multi-turn) add both to the history.
        ``extra_overrides`` carries per-call config such as a live view's ``tokens_hook``."""
        session = self.session
        ids = self.prompt_ids(user_text)
        if self.lockstep is not None:  # the reply is R, the fixed separator, A
            out, reply = session.lockstep_reply(ids, self.sampler, self.sampler_options,
                                                {**self.overrides, **(extra_overrides or {})}, self.lockstep)
        else:
            out = session.generate_ids([ids], self.sampler, self.sampler_options,
                                       {**self.overrides, **(extra_overrides or {})})
            # ``generated`` already ends before the first stop token; a mask can only survive there
            # if a hook interfered, and must never reach the screen as text
            mask_id = int(session.model.config.mask_token_id)
            reply_ids = [t for t in out.generated[0] if t != mask_id]
            reply = session.decode(reply_ids).strip()
        if self.multi_turn:
            self.messages.append({"role": "user", "content": user_text})
            self.messages.append({"role": "assistant", "content": reply})
        self.turns += 1
        prompt_text = session.tokenizer.decode(ids, skip_special_tokens=False)
        return Turn(index=self.turns, user=user_text, reply=reply, prompt_ids=ids, prompt_text=prompt_text, output=out)

    def settings(self) -> dict[str, Any]:
        """What /settings shows: sampler, its options and the full generation config."""
        cfg = self.session.generation_config(self.overrides).to_dict()
        return {
            "model": str(self.session.folder),
            "sampler": self.sampler,
            "sampler_options": self.sampler_options,
            "chat_template": self.multi_turn,
            "system_prompt": self.system_prompt,
            "turns_in_history": self.history_turns,
            **cfg,
        }


class ChatRepl:
    """Reads messages and slash commands, prints replies.

    ``interactive`` defaults to whether stdin is a terminal. ``visualize`` draws each reply live
    (:class:`unmask.viz.live.LiveView`) when stdout is a terminal; otherwise output stays plain."""

    def __init__(
        self,
        conversation: Conversation,
        stdin: IO[str] | None = None,
        stdout: IO[str] | None = None,
        stderr: IO[str] | None = None,
        interactive: bool | None = None,
        visualize: bool = False,
        json_output: bool = False,
    ) -> None:
        self.conv = conversation
        self.stdin = stdin if stdin is not None else sys.stdin
        self.stdout = stdout if stdout is not None else sys.stdout
        self.stderr = stderr if stderr is not None else sys.stderr
        if interactive is None:
            interactive = bool(getattr(self.stdin, "isatty", lambda: False)())
        self.interactive = interactive
        self.json_output = json_output
        self.failures = 0
        self.view = None
        if visualize:
            from rich.console import Console

            from ..viz.live import LiveView

            self.view = LiveView(conversation.session, console=Console(file=self.stdout), title="assistant")

    # ------------------------------------------------------------------ output
    def _out(self, text: str = "") -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def _err(self, text: str) -> None:
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def banner(self) -> None:
        conv = self.conv
        mode = "multi-turn (chat template)" if conv.multi_turn else "single-turn (raw prompts)"
        self._out(f"unmask chat: {conv.session.folder} | sampler {conv.sampler} | {mode}")
        self._out("commands: " + "  ".join(COMMANDS))

    # ------------------------------------------------------------------ input
    def _lines(self):
        if not self.interactive:
            for raw in self.stdin:
                yield raw.rstrip("\r\n")
            return
        while True:
            try:
                yield input("you> ")
            except EOFError:
                self._out()
                return
            except KeyboardInterrupt:
                self._out()
                return

    # ------------------------------------------------------------------ loop
    def run(self) -> int:
        """Chat until /exit or end of input. Exit status 2 when a piped message failed."""
        if self.interactive:
            self.banner()
        for line in self._lines():
            if not self.handle(line):
                break
        return 2 if self.failures and not self.interactive else 0

    def handle(self, line: str) -> bool:
        """Process one input line; False means stop."""
        text = line.strip()
        if not text:
            return True
        if text.startswith("/") and not text.startswith("//"):
            return self.command(text)
        if text.startswith("//"):  # escape: a message that really starts with "/"
            text = text[1:]
        self.answer(text)
        return True

    def command(self, text: str) -> bool:
        name = text.split()[0].lower()
        if name in ("/exit", "/quit"):
            return False
        if name == "/reset":
            self.conv.reset()
            if self.json_output:
                self._out(json.dumps({"command": "reset"}))
            elif self.interactive:
                self._out("(history cleared)")
        elif name == "/settings":
            settings = self.conv.settings()
            if self.json_output:
                self._out(json.dumps({"command": "settings", "settings": settings}))
            else:
                width = max(len(k) for k in settings)
                for k, v in settings.items():
                    self._out(f"{k.ljust(width)}  {v}")
        elif name == "/help":
            for k, v in COMMANDS.items():
                self._out(f"{k:10s} {v}")
        else:
            self._err(f"error: unknown command {name}; commands: {', '.join(COMMANDS)} (start a message with // to send a leading /)")
        return True

    def answer(self, text: str) -> None:
        try:
            check_utf8("the message", text)
            if self.view is not None:
                with self.view as view:
                    turn = self.conv.respond(text, view.overrides)
            else:
                turn = self.conv.respond(text)
        except UnmaskError as e:
            self.failures += 1
            hint = " (type /reset to clear the history)" if self.conv.multi_turn and self.conv.history_turns else ""
            self._err(f"error: {e}{hint}")
            return
        except KeyboardInterrupt:
            if not self.interactive:
                raise
            self._out("(interrupted)")
            return
        if self.json_output:
            self._out(json.dumps(turn.to_json()))
        else:
            self._out(turn.reply)
            if self.interactive:
                self._out(turn.summary_line())
