"""Image files in and out: reading a user's picture as the reference preprocesses it, parsing a
size, and writing one image or a grid of them."""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from ..errors import UnmaskError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")


def parse_size(value: str | int, multiple: int) -> int:
    """``"512"``, ``"512x512"`` or 512 -> 512. Images are square and a multiple of the tokenizer's
    downsampling factor."""
    text = str(value).strip().lower()
    m = re.fullmatch(r"(\d+)(?:x(\d+))?", text)
    if not m:
        raise UnmaskError(f"image size {value!r} is not N or NxN pixels")
    w, h = int(m.group(1)), int(m.group(2) or m.group(1))
    if w != h:
        raise UnmaskError(f"image size {value!r}: only square images are supported")
    if w <= 0 or w % multiple:
        raise UnmaskError(f"image size {w} must be a positive multiple of the tokenizer's downsampling {multiple}")
    return w


def load_image(path: str | Path, resolution: int) -> torch.Tensor:
    """``[1, 3, R, R]`` in [-1, 1]: the shorter side resized to ``R`` (bicubic), centre crop, as the
    reference's ``image_transform``. A file that is not an image is an :class:`UnmaskError`."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise UnmaskError(f"image {p} does not exist")
    try:
        with Image.open(p) as im:
            im = im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise UnmaskError(f"{p} is not a readable image ({type(e).__name__})") from None
    return preprocess(im, resolution)


def preprocess(im, resolution: int) -> torch.Tensor:
    """A PIL RGB image -> ``[1, 3, R, R]`` in [-1, 1] (bicubic shorter-side resize, centre crop)."""
    w, h = im.size
    if w < 1 or h < 1:
        raise UnmaskError(f"the image is empty ({w}x{h})")
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(resolution * long / short)
    size = (resolution, new_long) if w <= h else (new_long, resolution)
    from PIL import Image

    im = im.convert("RGB").resize(size, Image.BICUBIC)
    left = int(round((im.size[0] - resolution) / 2.0))
    top = int(round((im.size[1] - resolution) / 2.0))
    im = im.crop((left, top, left + resolution, top + resolution))
    x = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(resolution, resolution, 3)
    x = x.permute(2, 0, 1).float() / 255.0
    return ((x - 0.5) / 0.5)[None]


def grid(images: torch.Tensor, columns: int | None = None) -> torch.Tensor:
    """Tile ``[B, H, W, 3]`` uint8 images into one ``[rows*H, cols*W, 3]`` picture."""
    b, h, w, c = images.shape
    cols = columns or math.ceil(math.sqrt(b))
    rows = math.ceil(b / cols)
    out = torch.zeros(rows * h, cols * w, c, dtype=images.dtype)
    for i in range(b):
        r, q = divmod(i, cols)
        out[r * h : (r + 1) * h, q * w : (q + 1) * w] = images[i]
    return out


def check_image_path(path: str | Path) -> Path:
    p = Path(path)
    if p.suffix.lower() not in IMAGE_SUFFIXES:
        raise UnmaskError(f"--out {p}: use an image file name ({', '.join(IMAGE_SUFFIXES)})")
    return p


def save_image(picture: torch.Tensor, path: str | Path) -> Path:
    from PIL import Image

    p = check_image_path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture.cpu().numpy()).save(p)
    return p
