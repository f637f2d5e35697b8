"""GenEval's scoring rules on shape scenes: a programmatic detector plus GenEval's per-category checks.

GenEval (Ghosh et al. 2023; ``evaluation/evaluate_images.py`` of ``djghosh13/geneval``) runs an
object detector, keeps per class the detections above a confidence threshold (0.3; 0.9 for
counting prompts) in order of confidence, at most 16, and checks the prompt's metadata record:

* every ``include`` clause needs at least ``count`` detections of its class; only the ``count``
  most confident ones are looked at further;
* a ``color`` clause needs at least ``count`` of those to have that colour (GenEval asks CLIP; here
  the colour is read off the pixels);
* a ``position`` clause ``[relation, k]`` needs the relation to hold between each of those objects
  and each object matched by include clause ``k`` (which must itself have matched), with GenEval's
  margin (:func:`unmask.tasks.shapes.relative_position`, 0.1);
* an ``exclude`` clause fails the image when ``count`` or more detections of its class exist
  (a counting prompt "three circles" excludes 4: exactly three);
* a category's score is the fraction of its images judged correct; the overall score is the mean
  of the category scores.

:func:`check` implements exactly these rules on GenEval-format records, so it would give GenEval's
verdict on GenEval's own metadata given the same detections. Only the detector is ours
(:func:`detect`): the scenes are flat colours on a grey background with objects that never touch,
so colour segmentation finds the objects, and a shape is classified by fitting each shape's
template to the object's tight box (intersection over union). The detection confidence is the
softmax of those fits (temperature :data:`FIT_TEMPERATURE`) against a "no shape" option that
scores :data:`FIT_FLOOR`: a clean object is near 1, a blob that fits no template is near 0, and
an object between two shapes is in between, so GenEval's stricter counting threshold keeps its
meaning. Non-maximum suppression is not needed (GenEval's default overlap limit of 1.0 turns it
off too).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import shapes as S

THRESHOLD = 0.3  # GenEval's detection confidence threshold
COUNTING_THRESHOLD = 0.9  # ... for counting prompts
MAX_OBJECTS = 16  # detections kept per class
POSITION_MARGIN = 0.1  # GenEval's position_threshold

MIN_AREA = 12  # pixels; smaller foreground fragments (blur at edges) are not objects
FIT_TEMPERATURE = 0.05
FIT_FLOOR = 0.6

_PALETTE = np.array(S.PALETTE, dtype=np.float64)  # label 0 = background
_COLOUR_NAMES = list(S.COLOURS)


@dataclass(frozen=True)
class Detection:
    """One object found in an image: shape class, colour name, box (x0, y0, x1, y1), confidence."""

    shape: str
    colour: str
    box: tuple[int, int, int, int]
    score: float
    area: int


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """4-connected components of a boolean mask, each as an array of (y, x) pixel indices."""
    h, w = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    comps = []
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        stack, pix = [(y0, x0)], []
        seen[y0, x0] = True
        while stack:
            y, x = stack.pop()
            pix.append((y, x))
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
        comps.append(np.array(pix))
    return comps


def _classify(pix: np.ndarray) -> tuple[str, float, tuple[int, int, int, int]]:
    y0, x0 = pix.min(0)
    y1, x1 = pix.max(0) + 1
    mask = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    mask[pix[:, 0] - y0, pix[:, 1] - x0] = True
    fits = []
    for shape in S.SHAPES:
        t = S.shape_mask(shape, x1 - x0, y1 - y0)
        fits.append((t & mask).sum() / (t | mask).sum())
    logits = np.array([*fits, FIT_FLOOR]) / FIT_TEMPERATURE
    p = np.exp(logits - logits.max())
    p /= p.sum()
    best = int(np.argmax(fits))
    return S.SHAPES[best], float(p[best]), (int(x0), int(y0), int(x1), int(y1))


def detect(image: np.ndarray) -> list[Detection]:
    """Objects of a ``H x W x 3`` uint8 scene, most confident first.

    Each pixel takes the nearest palette colour (background included); foreground pixels form
    4-connected components, and a component is one object of its majority colour. A component in
    which a second colour also holds a sizeable region (two objects that touch, which generated
    images may contain) is split by colour first."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 image, got shape {img.shape}")
    labels = np.argmin(((img[:, :, None, :] - _PALETTE[None, None]) ** 2).sum(-1), axis=-1)
    dets = []
    for comp in _components(labels > 0):
        if len(comp) < MIN_AREA:
            continue
        labs = labels[comp[:, 0], comp[:, 1]]
        counts = np.bincount(labs, minlength=len(_PALETTE))
        big = [c for c in np.argsort(-counts) if counts[c] >= max(MIN_AREA, 0.25 * len(comp))]
        if len(big) <= 1:
            parts = [(comp, int(np.argmax(counts)))]
        else:  # split by colour; the pixels of minor colours (edge blur) stay out
            parts = []
            for c in big:
                sub = np.zeros(labels.shape, dtype=bool)
                sel = comp[labs == c]
                sub[sel[:, 0], sel[:, 1]] = True
                parts += [(p, int(c)) for p in _components(sub) if len(p) >= MIN_AREA]
        for pix, lab in parts:
            shape, score, box = _classify(pix)
            dets.append(Detection(shape, _COLOUR_NAMES[lab - 1], box, score, len(pix)))
    return sorted(dets, key=lambda d: -d.score)


def by_class(dets: Sequence[Detection], tag: str, threshold: float | None = None) -> dict[str, list[Detection]]:
    """GenEval's filtering: per class, detections above the tag's threshold, most confident first,
    at most :data:`MAX_OBJECTS`. ``threshold`` overrides GenEval's for diagnostics only (how much
    of a counting failure is the strict 0.9 confidence); scores always use GenEval's."""
    thr = threshold if threshold is not None else COUNTING_THRESHOLD if tag == "counting" else THRESHOLD
    out: dict[str, list[Detection]] = {}
    for d in sorted(dets, key=lambda d: -d.score):
        if d.score > thr and len(out.setdefault(d.shape, [])) < MAX_OBJECTS:
            out[d.shape].append(d)
    return {k: v for k, v in out.items() if v}


def check(meta: dict[str, Any], objects: dict[str, list[Detection]]) -> tuple[bool, str]:
    """GenEval's verdict on one image: ``(correct, reason)``; see the module docstring for the rules."""
    correct = True
    reasons: list[str] = []
    groups: list[list[Detection] | None] = []
    for req in meta.get("include", []):
        cls, n = req["class"], req["count"]
        found = objects.get(cls, [])[:n]
        ok = len(found) >= n
        if not ok:
            reasons.append(f"expected {cls}>={n}, found {len(found)}")
        else:
            if "color" in req:
                hits = sum(d.colour == req["color"] for d in found)
                if hits < n:
                    ok = False
                    reasons.append(f"expected {req['color']} {cls}>={n}, found {hits} {req['color']}; and "
                                   + ", ".join(f"{d.colour}" for d in found))
            if "position" in req and ok:
                rel, k = req["position"]
                if groups[k] is None:
                    ok = False
                    reasons.append(f"no target for {cls} to be {rel}")
                else:
                    for a in found:
                        for b in groups[k]:
                            rels = S.relative_position(a.box, b.box, POSITION_MARGIN)
                            if rel not in rels:
                                ok = False
                                reasons.append(f"expected {cls} {rel} target, found {' and '.join(sorted(rels))} target")
                                break
                        if not ok:
                            break
        correct &= ok
        groups.append(found if ok else None)
    for req in meta.get("exclude", []):
        have = len(objects.get(req["class"], []))
        if have >= req["count"]:
            correct = False
            reasons.append(f"expected {req['class']}<{req['count']}, found {have}")
    return correct, "\n".join(reasons)


def score_image(image: np.ndarray, meta: dict[str, Any]) -> dict[str, Any]:
    """Detect and check one image against its metadata record: a row like GenEval's results.jsonl
    (``tag``, ``prompt``, ``correct``, ``reason``, ``details`` = boxes per class)."""
    objects = by_class(detect(image), meta["tag"])
    correct, reason = check(meta, objects)
    return {"tag": meta["tag"], "prompt": meta["prompt"], "correct": bool(correct), "reason": reason,
            "details": {k: [[*d.box, round(d.score, 4), d.colour] for d in v] for k, v in objects.items()}}


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """GenEval's summary: fraction correct per category (in first-seen order) and their mean."""
    per: dict[str, list[bool]] = {}
    for r in rows:
        per.setdefault(r["tag"], []).append(bool(r["correct"]))
    cats = {t: {"correct": sum(v), "n": len(v), "accuracy": sum(v) / len(v)} for t, v in per.items()}
    overall = float(np.mean([c["accuracy"] for c in cats.values()])) if cats else float("nan")
    return {"categories": cats, "overall": overall, "images": len(rows)}


def score_folder(folder: str | Path) -> list[dict[str, Any]]:
    """Score a folder in GenEval's layout (``NNNNN/metadata.jsonl`` + ``NNNNN/samples/KKKKK.png``, as
    :func:`unmask.eval.geneval.write_folder` writes it) with this scorer: one row per image, the
    columns of GenEval's ``results.jsonl`` plus ``filename``. Folders are read as GenEval's script
    reads them: numeric subfolders only, images named by digits."""
    from PIL import Image

    rows = []
    for sub in sorted(p for p in Path(folder).iterdir() if p.is_dir() and p.name.isdigit()):
        meta = json.loads((sub / "metadata.jsonl").read_text())
        for img in sorted((sub / "samples").iterdir()):
            if img.is_file() and re.fullmatch(r"\d+\.png", img.name):
                row = score_image(np.asarray(Image.open(img).convert("RGB")), meta)
                rows.append({"filename": str(img), **row, "metadata": json.dumps(meta)})
    return rows
