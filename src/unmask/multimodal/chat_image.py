"""``/image PATH`` in ``unmask chat`` (MMaDA with ``--vq_model_path``): the picture's tokens go in
front of every following prompt, in the reference's understanding layout
(``<|mmu|> <|soi|> codes <|eoi|>`` + the templated conversation), until the next ``/image`` or
``/reset``. Built by subclassing the chat loop, so the text-only chat is untouched."""

from __future__ import annotations

import json
from typing import Any

from ..chat.repl import ChatRepl, Conversation
from ..errors import UnmaskError
from .mmu import image_codes
from .prompting import mmu_prefix, special_ids


class ImageConversation(Conversation):
    def __init__(self, session, vq, **kwargs: Any) -> None:
        self.vq = vq
        self.image: str | None = None
        self.image_prefix: list[int] = []
        super().__init__(session, **kwargs)

    def set_image(self, path: str) -> int:
        codes = image_codes(self.session.model, self.vq, path)
        self.image, self.image_prefix = path, mmu_prefix(codes, self.session.model.config.image_offset,
                                                           special_ids(self.session.model.config))
        return int(codes.numel())

    def reset(self) -> None:
        super().reset()
        self.image, self.image_prefix = None, []

    def prompt_ids(self, user_text: str) -> list[int]:
        return [*self.image_prefix, *super().prompt_ids(user_text)]


class ImageChatRepl(ChatRepl):
    def command(self, text: str) -> bool:
        name, _, rest = text.partition(" ")
        if name.lower() == "/image":
            conv = self.conv
            assert isinstance(conv, ImageConversation)
            try:
                if not rest.strip():
                    raise UnmaskError("/image needs a file: /image PATH")
                n = conv.set_image(rest.strip())
            except UnmaskError as e:
                self.failures += 1
                self._err(f"error: {e}")
                return True
            if self.json_output:
                self._out(json.dumps({"command": "image", "image": conv.image, "tokens": n}))
            elif self.interactive:
                self._out(f"(image {conv.image}: {n} tokens in front of the next messages)")
            return True
        if name.lower() == "/help":
            self._out(f"{'/image':10s} ask about a picture: /image PATH (until the next /image or /reset)")
        return super().command(text)


def cmd_chat_image(args) -> int:
    """``unmask chat --vq_model_path VQ``: the chat loop with ``/image``."""
    from ..cli import config_overrides, resolve_device, sampler_options
    from ..models.magvitv2 import load_magvitv2
    from ..options import lockstep_options
    from ..session import Session
    from .mmu import require_mmada

    if not args.model_name_or_path:
        raise UnmaskError("chat needs --model_name_or_path")
    device = resolve_device(args.device)
    session = Session.load(args.model_name_or_path, device=device, dtype=args.dtype)
    require_mmada(session.model)
    vq = load_magvitv2(args.vq_model_path, device=device)
    conv = ImageConversation(session, vq, sampler=args.sampler, sampler_options=sampler_options(args),
                             overrides=config_overrides(args), chat_template=args.chat_template,
                             system_prompt=args.system_prompt, lockstep=lockstep_options(args))
    return ImageChatRepl(conv, visualize=bool(args.visualize), json_output=args.json).run()
