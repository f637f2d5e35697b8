"""Image understanding (mmu): the answer is ordinary semi-autoregressive text decoding after an
image prefix, so it runs on the text engine with every sampler and cache mode unchanged.

The prompt is the reference's (``inference_mmu.py``)::

    <|mmu|> <|soi|> codes of the image <|eoi|> chat-template(question, add_generation_prompt=True)

With ``use_cache="prefix"`` the image prefix (1,024 tokens at 512 px, usually most of the
canvas) is encoded once per block instead of at every step.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ..errors import UnmaskError
from .images import load_image, preprocess
from .prompting import mmu_prompt, special_ids


def require_mmada(model) -> None:
    if not hasattr(getattr(model, "config", None), "codebook_size"):
        raise UnmaskError(f"{type(model).__name__} is a text-only model; images need an MMaDA model "
                          "(config.json with codebook_size) and its MAGVIT-v2 tokenizer")


def image_resolution(model, vq) -> int:
    """Pixels per side that give the model's ``num_vq_tokens`` (512 for MMaDA-8B's 1,024)."""
    side = int(round(model.config.num_vq_tokens ** 0.5))
    return side * vq.config.downsample


def image_codes(model, vq, image: str | Path | torch.Tensor, resolution: int | None = None) -> torch.Tensor:
    """Codes ``[N]`` of an image file or PIL image (resized and centre-cropped as the reference
    does), or of a ``[3, R, R]`` / ``[1, 3, R, R]`` tensor in [-1, 1]."""
    from .t2i import check_pair

    require_mmada(model)
    check_pair(model, vq)
    res = resolution or image_resolution(model, vq)
    vq.grid(res, res)
    if isinstance(image, (str, Path)):
        pixels = load_image(image, res)
    elif hasattr(image, "convert"):  # a PIL image (e.g. from a data URL)
        pixels = preprocess(image, res)
    else:
        pixels = image
    if pixels.dim() == 3:
        pixels = pixels[None]
    dev = vq.encoder.conv_in.weight.device
    return vq.encode(pixels.to(dev))[0].cpu()


def mmu_ids(model, vq, image, question_ids: Sequence[int], resolution: int | None = None) -> list[int]:
    """Prompt ids for one image and a tokenised (chat-templated) question."""
    return mmu_prompt(image_codes(model, vq, image, resolution), question_ids, model.config.image_offset,
                      special_ids(model.config))


def mmu(model, vq, tokenizer, images: Sequence, questions: Sequence[str], sampler="confidence",
        resolution: int | None = None, **overrides):
    """Answer ``questions[i]`` about ``images[i]`` with :func:`unmask.generate` (every sampler,
    every cache mode). Returns its :class:`GenerationOutput`."""
    from ..decoding.engine import generate

    if len(images) != len(questions):
        raise UnmaskError(f"{len(images)} images for {len(questions)} questions")
    prompts = []
    for img, q in zip(images, questions):
        text = tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                             add_generation_prompt=True)
        prompts.append(mmu_ids(model, vq, img, tokenizer(text, add_special_tokens=False)["input_ids"], resolution))
    return generate(model, prompts, sampler, **overrides)
