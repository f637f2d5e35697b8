"""GenEval for real text-to-image models: the official prompts, images laid out for GenEval's scorer.

GenEval (Ghosh et al. 2023, ``djghosh13/geneval``) scores images with its own detector
(Mask2Former through mmdetection, colours through CLIP). We do not reimplement that detector: this
module writes the images where GenEval's ``evaluation/evaluate_images.py`` reads them and prints the
command that scores them, the same way the reference's ``generation/diffusers_generate.py`` lays
them out::

    OUT/00000/metadata.jsonl     the prompt's line of evaluation_metadata.jsonl
    OUT/00000/samples/00000.png  four images per prompt by default
    ...

The 553 prompts ship as ``unmask/data/geneval/evaluation_metadata.jsonl``, a byte copy of the
upstream file (source and SHA-256 in :data:`SOURCE` / :data:`SHA256`; MIT licence alongside), and
are checked against the checksum on load. Writing is resumable: prompts whose images are all on
disk are skipped, and each image is drawn from a seed fixed by (seed, prompt index, sample), so
a resumed run writes what an uninterrupted one would.

``unmask eval --task geneval --model_name_or_path M`` drives it through a text-to-image backend
(:data:`T2I_BACKENDS`); :func:`summarize_results` reads GenEval's ``results.jsonl`` back into the
same per-category table as the tiny-shapes scorer.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import UnmaskError
from ..userio import decode_text, parse_jsonl, read_text

SOURCE = "djghosh13/geneval @ af4902f24d3ca90ebbb446dd9891a59e0f82725f, prompts/evaluation_metadata.jsonl"
SHA256 = "5c48e0813e812e3c373fa5c8ed07a8f0a483be30272b4427b0559c8048e67c13"
N_SAMPLES = 4  # images per prompt, GenEval's default

#: a generator draws images for one prompt: ``generate(prompt, seeds) -> list of PIL images``
Generator = Callable[[str, Sequence[int]], list]

#: functions ``backend(args) -> Generator | None``, asked in order for ``--model_name_or_path``; the
#: text-to-image model code (MMaDA, issue 28) appends its backend here
T2I_BACKENDS: list[Callable[[argparse.Namespace], Generator | None]] = []


def _mmada(args: argparse.Namespace) -> Generator | None:
    from .shapes_geneval import mmada_backend

    return mmada_backend(args)


T2I_BACKENDS.append(_mmada)


def shipped_metadata_path() -> Path:
    return Path(str(resources.files("unmask") / "data" / "geneval" / "evaluation_metadata.jsonl"))


def load_metadata(path: str | Path | None = None) -> list[dict[str, Any]]:
    """GenEval's metadata records; the shipped file is checked against :data:`SHA256`."""
    p = Path(path) if path is not None else shipped_metadata_path()
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise UnmaskError(f"cannot read GenEval metadata {p}: {e.strerror}") from None
    if path is None and hashlib.sha256(raw).hexdigest() != SHA256:
        raise UnmaskError(f"{p} does not match its SHA-256 ({SHA256}); reinstall unmask")
    records = parse_jsonl(decode_text(raw, p, "GenEval metadata"), p)
    for n, rec in enumerate(records, 1):
        if not {"tag", "include", "prompt"} <= rec.keys():
            raise UnmaskError(f"{p}: record {n}: a GenEval record needs 'tag', 'include' and 'prompt'")
    if not records:
        raise UnmaskError(f"{p} holds no GenEval records")
    return records


def sample_seed(seed: int, index: int, sample: int) -> int:
    return (seed * 1_000_003 + index * 101 + sample) % 2**31


def write_folder(out: str | Path, records: Sequence[dict[str, Any]], generate: Generator, *,
                 n_samples: int = N_SAMPLES, seed: int = 0, progress: Callable[[int, int], None] | None = None) -> int:
    """Write ``out/NNNNN/metadata.jsonl`` and ``out/NNNNN/samples/KKKKK.png`` for every record;
    returns how many images were generated (images already on disk are kept)."""
    out = Path(out)
    made = 0
    for i, rec in enumerate(records):
        folder = out / f"{i:05}"
        samples = folder / "samples"
        samples.mkdir(parents=True, exist_ok=True)
        meta = folder / "metadata.jsonl"
        text = json.dumps(rec)
        if not meta.exists() or meta.read_text() != text:
            meta.write_text(text)
        todo = [k for k in range(n_samples) if not (samples / f"{k:05}.png").exists()]
        if todo:
            images = generate(rec["prompt"], [sample_seed(seed, i, k) for k in todo])
            if len(images) != len(todo):
                raise RuntimeError(f"the generator returned {len(images)} images for {len(todo)} seeds")
            for k, img in zip(todo, images):
                tmp = samples / f"{k:05}.png.tmp"
                img.save(tmp, format="PNG")
                tmp.replace(samples / f"{k:05}.png")
            made += len(todo)
        if progress is not None:
            progress(i + 1, len(records))
    return made


def scoring_command(out: str | Path) -> str:
    """The command, run in a GenEval checkout with its detector downloaded, that scores ``out``."""
    out = Path(out).resolve()
    return (f'python evaluation/evaluate_images.py "{out}" --outfile "{out}/results.jsonl" '
            f'--model-path "<OBJECT_DETECTOR_FOLDER>" && python evaluation/summary_scores.py "{out}/results.jsonl"')


def summarize_results(path: str | Path) -> dict[str, Any]:
    """GenEval's summary of its ``results.jsonl``: accuracy per tag and their mean."""
    from ..tasks.shapes_scorer import summarize

    return summarize(parse_jsonl(read_text(path, "GenEval results"), path))


def cmd_geneval(args: argparse.Namespace) -> int:
    """``unmask eval --task geneval``: generate GenEval's images with a text-to-image backend."""
    records = load_metadata(args.data)
    if args.limit is not None:
        records = records[: args.limit]
    for backend in T2I_BACKENDS:
        generate = backend(args)
        if generate is not None:
            break
    else:
        raise UnmaskError(f"no text-to-image backend can load {args.model_name_or_path!r} (known backends: "
                          f"{len(T2I_BACKENDS)}); GenEval needs a text-to-image model such as MMaDA")
    name = Path(str(args.model_name_or_path)).name or "model"
    out = Path(args.output_dir) / f"geneval-{name}"
    made = write_folder(out, records, generate, seed=getattr(args, "seed", None) or 0)
    print(f"wrote {made} images for {len(records)} GenEval prompts to {out}")
    print("score them in a GenEval checkout with:")
    print(scoring_command(out))
    return 0
