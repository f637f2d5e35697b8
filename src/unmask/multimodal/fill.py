"""Pictures of an image's decoding order: the canvas after every step, masked tokens grey.

A partial canvas cannot be decoded as it is (a mask is not a code), so the masked positions are
given code 0, the whole grid is decoded, and each masked position's patch (``downsample`` pixels
square) is painted grey afterwards. The convolutional decoder lets committed codes bleed a little
into their grey neighbours' context, which is what the model would see too.
"""

from __future__ import annotations

from pathlib import Path

import torch

GREY = 128


def fill_frames(vq, steps: list[dict], side: int) -> list[torch.Tensor]:
    """One uint8 ``[H, W, 3]`` frame per step of one image's trace (``t2i`` output ``traces[i]``)."""
    from .t2i import codes_to_images

    f = vq.config.downsample
    codes = torch.zeros(side * side, dtype=torch.long)
    known = torch.zeros(side * side, dtype=torch.bool)
    frames = []
    for rec in steps:
        codes[rec["positions"]] = torch.tensor(rec["codes"], dtype=torch.long)
        known[rec["positions"]] = True
        img = codes_to_images(vq, codes[None])[0].clone()
        for p in (~known).nonzero().flatten().tolist():
            r, c = divmod(p, side)
            img[r * f : (r + 1) * f, c * f : (c + 1) * f] = GREY
        frames.append(img)
    return frames


def save_gif(frames: list[torch.Tensor], path: str | Path, frame_ms: int = 300, scale: int = 1) -> Path:
    from PIL import Image

    pics = [Image.fromarray(fr.numpy()) for fr in frames]
    if scale > 1:
        pics = [p.resize((p.width * scale, p.height * scale), Image.NEAREST) for p in pics]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    durations = [frame_ms] * (len(pics) - 1) + [2000]
    pics[0].save(path, save_all=True, append_images=pics[1:], duration=durations, loop=0)
    return path
