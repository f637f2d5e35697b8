"""MMaDA's sequence layouts, built as the reference builds them (``training/prompting_utils.py``
with ``use_reserved_token=True``, ``inference_t2i.py``, ``inference_mmu.py``).

Text-to-image, one row per prompt (all rows the same length, so they batch without extra padding)::

    [iPAD] ... [iPAD] <|t2i|> <bos> text ... <eos> <|soi|> image codes ... <|eoi|>
    '--- max_text_len + 1 positions, left-padded ---'        '-- num_vq_tokens --'

The attention mask is 0 on the pads. A text that does not fit keeps its first ``max_text_len``
ids and ends in ``<eos>``. The unconditional row for classifier-free guidance is the same layout
with the empty text (``<|t2i|> <bos> <eos>``).

Understanding (mmu)::

    <|mmu|> <|soi|> image codes <|eoi|> chat-template(question, add_generation_prompt=True)

and the answer is generated after it. Plain text uses LLaDA's chat template unchanged.

The prompt-token ids are MMaDA-8B's reserved LLaDA ids unless the model's config says otherwise
(``special_token_ids`` in ``config.json``, written by a compact-vocabulary export such as
``tiny-shapes``): :func:`special_ids` merges the two, and every builder here takes the result as
``special``. The official folders have no such field, so their layouts are the reference's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import UnmaskError

#: the reserved LLaDA-tokenizer ids the reference uses for its prompt tokens
SPECIAL_IDS: dict[str, int] = {
    "<|soi|>": 126084, "<|eoi|>": 126085, "<|sov|>": 126086, "<|eov|>": 126087, "<|t2i|>": 126088,
    "<|mmu|>": 126089, "<|t2v|>": 126090, "<|v2v|>": 126091, "<|lvg|>": 126092, "[iPAD]": 126093,
    "<|r2i|>": 126094,
}
SOI, EOI, T2I, MMU, IPAD = (SPECIAL_IDS[k] for k in ("<|soi|>", "<|eoi|>", "<|t2i|>", "<|mmu|>", "[iPAD]"))


def special_ids(config: Any = None) -> dict[str, int]:
    """The prompt-token ids of a model: MMaDA-8B's, overridden by ``config.special_token_ids``
    (a mapping name -> id) where the config has one."""
    over = getattr(config, "special_token_ids", None) or {}
    unknown = sorted(set(over) - set(SPECIAL_IDS))
    if unknown:
        raise UnmaskError(f"unknown prompt token(s) {', '.join(unknown)} in special_token_ids "
                          f"(known: {', '.join(SPECIAL_IDS)})")
    return {**SPECIAL_IDS, **{str(k): int(v) for k, v in dict(over).items()}}


def _ids(special: Mapping[str, int] | None) -> Mapping[str, int]:
    return SPECIAL_IDS if special is None else special

#: ``dataset.preprocessing.max_seq_length`` of the demo config: the text part of a t2i row is
#: this plus one (the task token)
DEFAULT_MAX_TEXT_LEN = 512


@dataclass
class T2ILayout:
    """A batch of t2i rows: ``ids``/``mask`` ``[B, T]``; image codes at ``[image_start, image_end)``."""

    ids: torch.Tensor
    mask: torch.Tensor
    text_len: int  # max_text_len + 1: the task token, the text and its padding
    num_image: int

    @property
    def image_start(self) -> int:
        return self.text_len + 1  # after <|soi|>

    @property
    def image_end(self) -> int:
        return self.image_start + self.num_image


def _with_bos(ids: Sequence[int], bos: int) -> list[int]:
    ids = [int(t) for t in ids]
    if not ids:
        return [bos]
    return ids if ids[0] == bos else [bos, *ids]


def t2i_text_part(text_ids: Sequence[int], bos: int, eos: int, max_text_len: int,
                  special: Mapping[str, int] | None = None) -> tuple[list[int], list[int]]:
    """The text part of one row (``max_text_len + 1`` ids) and its mask."""
    sp = _ids(special)
    width = max_text_len + 1
    ids = [sp["<|t2i|>"], *_with_bos(text_ids, bos), eos]
    if len(ids) <= width:
        pad = width - len(ids)
        return [sp["[iPAD]"]] * pad + ids, [0] * pad + [1] * len(ids)
    ids = ids[: width - 1] + [eos]
    return ids, [1] * width


def t2i_layout(
    texts: Sequence[Sequence[int]],
    num_image: int,
    bos: int,
    eos: int,
    mask_id: int,
    max_text_len: int = DEFAULT_MAX_TEXT_LEN,
    image_ids: torch.Tensor | None = None,
    special: Mapping[str, int] | None = None,
) -> T2ILayout:
    """Rows for tokenised prompts with every image token masked (or given as ``image_ids``,
    vocabulary ids ``[B, num_image]``). An empty text gives the unconditional row."""
    sp = _ids(special)
    rows, masks = [], []
    for i, text in enumerate(texts):
        ids, mask = t2i_text_part(text, bos, eos, max_text_len, sp)
        img = [mask_id] * num_image if image_ids is None else [int(t) for t in image_ids[i]]
        rows.append([*ids, sp["<|soi|>"], *img, sp["<|eoi|>"]])
        masks.append(mask + [1] * (num_image + 2))
    return T2ILayout(torch.tensor(rows, dtype=torch.long), torch.tensor(masks, dtype=torch.long),
                     max_text_len + 1, num_image)


def mmu_prefix(codes: torch.Tensor, image_offset: int, special: Mapping[str, int] | None = None) -> list[int]:
    """``<|mmu|> <|soi|> image <|eoi|>`` for one image's codes ``[N]`` (code space)."""
    sp = _ids(special)
    return [sp["<|mmu|>"], sp["<|soi|>"], *(int(c) + image_offset for c in codes), sp["<|eoi|>"]]


def mmu_prompt(codes: torch.Tensor, chat_ids: Sequence[int], image_offset: int,
               special: Mapping[str, int] | None = None) -> list[int]:
    """The understanding prompt: the image prefix, then the chat-templated question (the ids of
    ``tokenizer.apply_chat_template(messages, add_generation_prompt=True)``)."""
    return [*mmu_prefix(codes, image_offset, special), *(int(t) for t in chat_ids)]
