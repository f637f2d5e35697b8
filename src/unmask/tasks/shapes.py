"""Synthetic shape scenes with GenEval-style captions: the data of the ``tiny-shapes`` text-to-image task.

A scene is a 32x32 RGB image of one to four flat objects (circle, square, triangle, diamond) in
eight colours on a grey background, and its caption comes from templates that mirror GenEval's six
categories (Ghosh et al. 2023, ``djghosh13/geneval``): single object, two objects, counting,
colours, position and colour attribution. Every caption carries its GenEval *metadata* record in
GenEval's own format (``tag``, ``include`` with ``class``/``count``/``color``/``position``,
``exclude``, ``prompt``), so the scorer in :mod:`unmask.tasks.shapes_scorer` applies GenEval's
rules to exactly the records GenEval's script would read.

Why 32x32. The tokenizer downsamples by 4, so an image is 8x8 = 64 tokens: "a few dozen" tokens
for the MDM, as many as a 64x64 image at downsampling 8 would give, but the tokenizer's convolutions
run on a quarter of the pixels, which is what decides whether it trains in CPU hours. The scorer
stays reliable because objects are at least 8 pixels across (a triangle and a diamond of 8 px
still differ in a third of their pixels) and objects never touch (a gap of at least
:data:`GAP` pixels), so colour segmentation separates them. Larger images would buy nothing the
scorer needs.

Differences from GenEval, on purpose: captions drop GenEval's "a photo of" prefix (it carries no
information here); position captions name colours, as in "a red circle left of a blue square"
(the check is GenEval's: colour, then relative position with its margin, on the same record);
scenes hold exactly the objects their caption names.

Held-out compositions. Colour-shape pairs, relation triples (shape, relation, shape), counting
pairs (number, shape) and two-object shape pairs are ranked by a SHA-256 hash of their text and
the lowest-ranked few are held out (:data:`HELD_OUT`). A caption that mentions any held-out
composition is a *test* caption and never occurs in training. Single-object captions contain no
composition; they are all training captions, and the test suite reuses them (GenEval scores them
too). Everything here is deterministic under a seed: ``random.Random(seed)`` drives all draws.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

IMAGE_SIZE = 32
GAP = 2  # free pixels between any two objects' boxes: segmentation never sees two objects touch
BACKGROUND = (128, 128, 128)

SHAPES = ("circle", "square", "triangle", "diamond")
# GenEval's colour words; RGB values chosen far apart (>= 100 in RGB distance, from each other and
# from the background) so a blurred reconstruction still lands on the right one
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "orange": (255, 140, 0),
    "yellow": (240, 240, 40),
    "green": (30, 170, 40),
    "blue": (30, 80, 240),
    "purple": (150, 40, 210),
    "white": (250, 250, 250),
    "black": (10, 10, 10),
}
# the colours a scene can hold, background first (label 0): the scorer and the tokenizer's palette
# loss read each pixel as its nearest entry
PALETTE = (BACKGROUND, *COLOURS.values())
RELATIONS = ("left of", "right of", "above", "below")
NUMBERS = {2: "two", 3: "three", 4: "four"}
CATEGORIES = ("single_object", "two_object", "counting", "colors", "position", "color_attr")

# object side in pixels by the number of objects in the scene: four objects of at most 11 px plus
# gaps still fit a 32x32 canvas by rejection sampling; 8 px is the smallest size the scorer reads
SIZE_RANGE = {1: (10, 16), 2: (9, 14), 3: (8, 12), 4: (8, 11)}

# a position scene is drawn so the relation holds under this margin, more than GenEval's 0.1, so a
# reconstruction that moves an edge by a pixel still reads the same
SCENE_POSITION_MARGIN = 0.2


# ---------------------------------------------------------------------------------------- scenes
@dataclass(frozen=True)
class Obj:
    """One object: its shape, colour name and box (left, top, width, height) in pixels."""

    shape: str
    colour: str
    x: int
    y: int
    w: int
    h: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) with exclusive x1/y1, the box convention of GenEval's detector output."""
        return (self.x, self.y, self.x + self.w, self.y + self.h)


def shape_mask(shape: str, w: int, h: int) -> np.ndarray:
    """Boolean ``h x w`` raster of ``shape`` filling a ``w x h`` box (pixel centres tested).

    The rules are chosen so that the mask touches all four sides of its box: the tight box of a
    rendered object is the box it was drawn in, which lets the scorer fit templates on the tight
    box of what it segments and get an exact match on ground-truth images.
    """
    ys = (np.arange(h) + 0.5)[:, None]
    xs = (np.arange(w) + 0.5)[None, :]
    dx = np.abs(xs - w / 2) / (w / 2)
    dy = np.abs(ys - h / 2) / (h / 2)
    if shape == "square":
        return np.ones((h, w), dtype=bool)
    if shape == "circle":
        return dx**2 + dy**2 <= 1.0
    if shape == "diamond":
        return dx + dy <= 1.0 + 1e-9
    if shape == "triangle":  # apex up; the row's half width grows to w/2 at its bottom edge
        frac = (np.arange(h) + 1.0)[:, None] / h
        return np.abs(xs - w / 2) <= frac * (w / 2) + 1e-9
    raise ValueError(f"unknown shape {shape!r}")


def render(objects: Sequence[Obj], size: int = IMAGE_SIZE) -> np.ndarray:
    """The scene as a ``size x size x 3`` uint8 array (hard edges, no anti-aliasing)."""
    img = np.empty((size, size, 3), dtype=np.uint8)
    img[:] = BACKGROUND
    for o in objects:
        region = img[o.y : o.y + o.h, o.x : o.x + o.w]
        region[shape_mask(o.shape, o.w, o.h)] = COLOURS[o.colour]
    return img


def relative_position(box_a: Sequence[float], box_b: Sequence[float], margin: float = 0.1) -> set[str]:
    """The relations of box A to box B under GenEval's rule.

    Each centre offset is shrunk by ``margin`` times the sum of the two boxes' sides along that axis
    (GenEval's ``position_threshold``, 0.1); a relation holds when the shrunk offset is more than half
    the length of the full centre offset. Image y grows downwards, so "above" is a negative dy.
    """
    a = np.asarray(box_a[:4], dtype=float).reshape(2, 2)
    b = np.asarray(box_b[:4], dtype=float).reshape(2, 2)
    offset = a.mean(axis=0) - b.mean(axis=0)
    dims = (a[1] - a[0]) + (b[1] - b[0])
    shrunk = np.maximum(np.abs(offset) - margin * dims, 0.0) * np.sign(offset)
    if np.all(np.abs(shrunk) < 1e-3):
        return set()
    dx, dy = shrunk / np.linalg.norm(offset)
    rels = set()
    if dx < -0.5:
        rels.add("left of")
    if dx > 0.5:
        rels.add("right of")
    if dy < -0.5:
        rels.add("above")
    if dy > 0.5:
        rels.add("below")
    return rels


def _apart(a: Obj, b: Obj) -> bool:
    return a.x + a.w + GAP <= b.x or b.x + b.w + GAP <= a.x or a.y + a.h + GAP <= b.y or b.y + b.h + GAP <= a.y


def _place(rng: random.Random, specs: list[tuple[str, str]], size: int) -> list[Obj]:
    lo, hi = SIZE_RANGE[len(specs)]
    objs: list[Obj] = []
    for shape, colour in specs:
        for _ in range(200):
            s = rng.randint(lo, hi)
            o = Obj(shape, colour, rng.randint(0, size - s), rng.randint(0, size - s), s, s)
            if all(_apart(o, p) for p in objs):
                objs.append(o)
                break
        else:
            raise RuntimeError("no room")  # caught by sample_scene, which starts over
    return objs


def sample_scene(meta: dict[str, Any], rng: random.Random, size: int = IMAGE_SIZE) -> list[Obj]:
    """Objects that satisfy a metadata record: the ``include`` counts exactly (so ``exclude`` holds),
    its colours (random where none is named) and its position clauses with
    :data:`SCENE_POSITION_MARGIN`."""
    colours = list(COLOURS)
    specs: list[tuple[str, str]] = []
    owner: list[int] = []  # which include clause each object belongs to
    for k, req in enumerate(meta["include"]):
        for _ in range(req["count"]):
            specs.append((req["class"], req.get("color") or rng.choice(colours)))
            owner.append(k)
    for _ in range(1000):
        try:
            objs = _place(rng, specs, size)
        except RuntimeError:
            continue
        if _positions_hold(meta, objs, owner):
            return objs
    raise RuntimeError(f"could not lay out a scene for {meta['prompt']!r}")


def _positions_hold(meta: dict[str, Any], objs: list[Obj], owner: list[int]) -> bool:
    for k, req in enumerate(meta["include"]):
        if "position" not in req:
            continue
        rel, target = req["position"]
        mine = [o for o, w in zip(objs, owner) if w == k]
        theirs = [o for o, w in zip(objs, owner) if w == target]
        for a in mine:
            for b in theirs:
                if rel not in relative_position(a.box, b.box, SCENE_POSITION_MARGIN):
                    return False
    return True


# ------------------------------------------------------------------------------------ captions
def with_article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def plural(shape: str) -> str:
    return shape + "s"


def _colour_shape(colour: str, shape: str) -> str:
    return f"{colour} {shape}"


def _all_records() -> Iterator[dict[str, Any]]:
    """Every caption of every category with its GenEval metadata, in a fixed order."""
    for s in SHAPES:
        yield {"tag": "single_object", "include": [{"class": s, "count": 1}], "prompt": with_article(s)}
    for a, b in itertools.permutations(SHAPES, 2):
        yield {
            "tag": "two_object",
            "include": [{"class": a, "count": 1}, {"class": b, "count": 1}],
            "prompt": f"{with_article(a)} and {with_article(b)}",
        }
    for n, s in itertools.product(NUMBERS, SHAPES):
        yield {
            "tag": "counting",
            "include": [{"class": s, "count": n}],
            "exclude": [{"class": s, "count": n + 1}],
            "prompt": f"{NUMBERS[n]} {plural(s)}",
        }
    for c, s in itertools.product(COLOURS, SHAPES):
        yield {"tag": "colors", "include": [{"class": s, "count": 1, "color": c}], "prompt": with_article(f"{c} {s}")}
    for (s1, s2), rel, c1, c2 in itertools.product(itertools.permutations(SHAPES, 2), RELATIONS, COLOURS, COLOURS):
        yield {
            "tag": "position",
            "include": [
                {"class": s2, "count": 1, "color": c2},
                {"class": s1, "count": 1, "color": c1, "position": [rel, 0]},
            ],
            "prompt": f"{with_article(_colour_shape(c1, s1))} {rel} {with_article(_colour_shape(c2, s2))}",
        }
    for (s1, s2), (c1, c2) in itertools.product(itertools.permutations(SHAPES, 2), itertools.permutations(COLOURS, 2)):
        yield {
            "tag": "color_attr",
            "include": [{"class": s1, "count": 1, "color": c1}, {"class": s2, "count": 1, "color": c2}],
            "prompt": f"{with_article(_colour_shape(c1, s1))} and {with_article(_colour_shape(c2, s2))}",
        }


# ---------------------------------------------------------------------------------- held out
def _hash_rank(keys: Sequence[str], kind: str, k: int) -> frozenset[str]:
    digest = {key: hashlib.sha256(f"tiny-shapes/{kind}/{key}".encode()).hexdigest() for key in keys}
    return frozenset(sorted(keys, key=digest.__getitem__)[:k])


HELD_OUT: dict[str, frozenset[str]] = {
    "colour_shape": _hash_rank([_colour_shape(c, s) for c in COLOURS for s in SHAPES], "colour_shape", 6),
    "relation": _hash_rank(
        [f"{a} {r} {b}" for a, b in itertools.permutations(SHAPES, 2) for r in RELATIONS], "relation", 8
    ),
    "count": _hash_rank([f"{NUMBERS[n]} {plural(s)}" for n in NUMBERS for s in SHAPES], "count", 3),
    "shape_pair": _hash_rank([" and ".join(p) for p in itertools.combinations(SHAPES, 2)], "shape_pair", 1),
}
"""The held-out compositions by kind: 6 of 32 colour-shape pairs, 8 of 48 relation triples, 3 of 12
counts and 1 of 6 unordered shape pairs."""


def compositions(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """The (kind, key) compositions a caption mentions, the units the held-out split is made of."""
    inc = meta["include"]
    out = [("colour_shape", _colour_shape(r["color"], r["class"])) for r in inc if "color" in r]
    tag = meta["tag"]
    if tag == "two_object":
        out.append(("shape_pair", " and ".join(sorted((inc[0]["class"], inc[1]["class"]), key=SHAPES.index))))
    elif tag == "counting":
        out.append(("count", f"{NUMBERS[inc[0]['count']]} {plural(inc[0]['class'])}"))
    elif tag == "position":
        out.append(("relation", f"{inc[1]['class']} {inc[1]['position'][0]} {inc[0]['class']}"))
    return out


def split_of(meta: dict[str, Any]) -> str:
    """``"test"`` when the caption mentions a held-out composition, else ``"train"``."""
    return "test" if any(key in HELD_OUT[kind] for kind, key in compositions(meta)) else "train"


@cache
def records(split: str, tag: str | None = None) -> tuple[dict[str, Any], ...]:
    """All captions of a split (``train`` or ``test``; single-object captions are in both), optionally
    one category only, in a fixed order. Treat the returned records as read-only."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    if tag is not None and tag not in CATEGORIES:
        raise ValueError(f"unknown category {tag!r}; known: {', '.join(CATEGORIES)}")
    out = []
    for m in _all_records():
        if tag is not None and m["tag"] != tag:
            continue
        if split_of(m) == split or (split == "test" and m["tag"] == "single_object"):
            out.append(m)
    return tuple(out)


def eval_suite(n_per_category: int, seed: int = 1234) -> list[dict[str, Any]]:
    """``n_per_category`` test items per category, each a copy of its metadata record plus an
    ``index`` and a per-item ``seed``.

    Items cycle through the category's distinct held-out captions in a seeded order, so every
    caption is used before any repeats; a category with fewer captions than items (counting has 3)
    repeats each caption under different seeds, as GenEval draws several images per prompt.
    """
    rng = random.Random(seed)
    items: list[dict[str, Any]] = []
    for tag in CATEGORIES:
        pool = list(records("test", tag))
        rng.shuffle(pool)
        for i in range(n_per_category):
            items.append(dict(pool[i % len(pool)], index=len(items), seed=rng.randrange(2**31)))
    return items


def training_stream(seed: int, size: int = IMAGE_SIZE) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
    """Endless (metadata, image) pairs from the training captions: a category uniformly, then a
    caption of it uniformly, then a scene; the same seed gives the same stream."""
    rng = random.Random(seed)
    pools = {tag: records("train", tag) for tag in CATEGORIES}
    while True:
        meta = rng.choice(pools[rng.choice(CATEGORIES)])
        yield meta, render(sample_scene(meta, rng, size), size)


def ground_truth(item: dict[str, Any], size: int = IMAGE_SIZE) -> np.ndarray:
    """A rendered scene for a test item, drawn with the item's own seed (for scorer validation and
    for the reference images of FID)."""
    return render(sample_scene(item, random.Random(item["seed"]), size), size)
