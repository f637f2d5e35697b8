"""``unmask chat``: wires the chat loop into the main CLI (same model and sampler flags as
``unmask sample``)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import add_flag, add_sampling_flags, parse_bool

    p = sub.add_parser(
        "chat",
        help="multi-turn chat through the tokenizer's chat template (reads one message per line from a pipe)",
        description="Chat with a masked diffusion model. Commands: /reset, /settings, /help, /exit. "
                    "When stdin is not a terminal, every line is one message and every reply is printed.",
    )
    add_flag(p, "system_prompt", default=None, help="system message placed before the conversation")
    add_flag(p, "visualize", type=parse_bool, nargs="?", const=True, default=False,
             help="redraw the canvas live while each reply is decoded (terminal only)")
    add_flag(p, "json", action="store_true", help="print one JSON object per reply (prompt, reply, nfe, ...)")
    add_sampling_flags(p, "chat")
    p.set_defaults(func=cmd_chat)


def cmd_chat(args: argparse.Namespace) -> int:
    from ..cli import config_overrides, resolve_device, sampler_options
    from ..errors import UnmaskError
    from ..options import lockstep_options
    from ..session import Session
    from .repl import ChatRepl, Conversation

    if not args.model_name_or_path:
        raise UnmaskError("chat needs --model_name_or_path (a chat model such as llada or dream, or a folder)")
    lockstep_options(args)  # bad lockstep flags fail before the model loads
    session = Session.load(args.model_name_or_path, device=resolve_device(args.device), dtype=args.dtype)
    conversation = Conversation(
        session,
        sampler=args.sampler,
        sampler_options=sampler_options(args),
        overrides=config_overrides(args),
        chat_template=args.chat_template,
        system_prompt=args.system_prompt,
        lockstep=lockstep_options(args),
    )
    return ChatRepl(conversation, visualize=bool(args.visualize), json_output=args.json).run()
