"""Image metrics for text-to-image outputs: FID, IS and KID (torchmetrics), precision, recall, density
and coverage (prdc), CLIP score (torchmetrics over a transformers CLIP).

``unmask image-metrics --real REF_DIR_OR_STATS.npz --fake IMAGE_DIR --inception_weights FILE``
``  [--clip_model CLIP_DIR --captions captions.txt] [--save_stats OUT.npz]``

Why these libraries. The usual ones, torch-fidelity, clean-fid and open_clip, all import
torchvision, and the torchvision wheels on PyPI are built against CUDA torch: with a CPU-only torch
their import fails ("operator torchvision::nms does not exist"), so they would force the CUDA torch
download (gigabytes) on every CPU install and on CI. torchmetrics (Lightning-AI) computes FID, IS
and KID from any feature network given as an ``nn.Module`` and needs no torchvision; CLIP score
uses its ``CLIPScore`` over a transformers CLIP, which unmask already depends on; prdc (the
reference code of Naeem et al. 2020, a few kB) gives k-nearest-neighbour precision and recall
(Kynkäänniemi et al. 2019) with density and coverage on the same features.

Weights. Nothing is downloaded. The standard FID/IS network is the TF-ported Inception v3 that
torch-fidelity packages; torchmetrics builds it from a local file given as ``--inception_weights``
(torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth``). That path imports torch-fidelity,
so it needs ``pip install torch-fidelity`` and a torchvision that loads with your torch (true on a
CUDA machine). CLIP score reads a local Hugging Face CLIP folder (e.g. a download of
``openai/clip-vit-large-patch14``, GenEval's CLIP) given as ``--clip_model``. When either is
missing the command stops with one ``error:`` line that says which file to point at. Any other
feature network plugs in through :func:`compute_metrics` (``feature_net``/``logits_net``), which is
how the tests check the wiring with small random-weight networks.

Reference statistics. ``--real`` may be a folder of images or an ``.npz`` file with ``mu`` and
``sigma`` (the pytorch-fid / clean-fid layout) and optionally ``n`` and ``features``; FID only needs
``mu``/``sigma``, the other reference-side metrics need ``features``. ``--save_stats`` writes such a
file from a folder.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UnmaskError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
INCEPTION_WEIGHTS_NAME = "weights-inception-2015-12-05-6726825d.pth"


def read_folder(folder: str | Path) -> Any:
    """All images of a folder (sorted by name, recursively) as a ``[N, 3, H, W]`` uint8 tensor."""
    import torch
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise UnmaskError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UnmaskError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in files]
    sizes = {a.shape for a in arrays}
    if len(sizes) > 1:
        raise UnmaskError(f"images in {folder} differ in size ({sorted(sizes)[:3]}...); resize them to one size first")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def inception(weights: str | Path | None, output: str = "2048") -> Any:
    """The standard FID (``"2048"``) or IS (``"logits_unbiased"``) Inception v3, built from a local file."""
    if weights is None:
        raise UnmaskError(f"FID/IS/KID need the Inception v3 weights; pass --inception_weights FILE "
                          f"(torch-fidelity's {INCEPTION_WEIGHTS_NAME}); nothing is downloaded")
    if not Path(weights).is_file():
        raise UnmaskError(f"Inception weights file {weights} does not exist")
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3

        return NoTrainInceptionV3(name="inception-v3-compat", features_list=[output],
                                  feature_extractor_weights_path=str(weights))
    except (ImportError, ModuleNotFoundError, RuntimeError) as e:
        raise UnmaskError(f"the standard Inception network needs torchmetrics and torch-fidelity with a "
                          f"torchvision that loads with this torch ({type(e).__name__}: {e})") from None


def load_stats(path: str | Path) -> dict[str, np.ndarray]:
    """Reference statistics: ``mu``, ``sigma`` and optionally ``n`` and ``features``."""
    try:
        with np.load(path) as f:
            stats = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise UnmaskError(f"cannot read reference statistics {path}: {e}") from None
    if "mu" not in stats or "sigma" not in stats:
        raise UnmaskError(f"reference statistics {path} need arrays 'mu' and 'sigma' (found {sorted(stats)})")
    return stats


def features_of(net: Callable[[Any], Any], images: Any, batch_size: int = 64) -> np.ndarray:
    import torch

    with torch.no_grad():
        return np.concatenate([net(images[i : i + batch_size]).double().cpu().numpy()
                               for i in range(0, len(images), batch_size)])


def stats_of(features: np.ndarray) -> dict[str, np.ndarray]:
    return {"mu": features.mean(0), "sigma": np.cov(features, rowvar=False), "n": np.array(len(features)),
            "features": features}


def _fid(real: dict[str, np.ndarray], fake_features: np.ndarray) -> float:
    """FID through torchmetrics, its sums filled from the reference statistics (so a statistics file
    works as well as a folder): sum = n mu, cov_sum = (n - 1) sigma + n mu mu^T."""
    import torch
    from torchmetrics.image.fid import FrechetInceptionDistance

    d = fake_features.shape[1]
    if real["mu"].shape != (d,):
        raise UnmaskError(f"reference statistics have {real['mu'].shape[0]} features, the network gives {d}")

    metric = FrechetInceptionDistance(feature=_passthrough(d), normalize=True)
    metric.set_dtype(torch.float64)
    n = int(real.get("n", 2))
    mu = torch.from_numpy(np.asarray(real["mu"], dtype=np.float64))
    sigma = torch.from_numpy(np.asarray(real["sigma"], dtype=np.float64))
    metric.real_features_sum = mu * n
    metric.real_features_cov_sum = sigma * (n - 1) + n * torch.outer(mu, mu)
    metric.real_features_num_samples = torch.tensor(n)
    metric.update(torch.from_numpy(fake_features), real=False)
    return float(metric.compute())


def compute_metrics(real: Any, fake: Any, feature_net: Callable[[Any], Any],
                    logits_net: Callable[[Any], Any] | None = None, *, nearest_k: int = 5,
                    kid_subset_size: int = 1000, is_splits: int = 10) -> dict[str, float]:
    """FID, KID, precision/recall/density/coverage and (with ``logits_net``) IS of ``fake``.

    ``real`` is a ``[N, 3, H, W]`` uint8 tensor or a statistics dict (:func:`load_stats`); ``fake``
    a uint8 tensor. ``feature_net`` maps uint8 images to ``[B, D]`` features, ``logits_net`` to
    class logits (both as the standard Inception does)."""
    import torch
    from prdc import compute_prdc
    from torchmetrics.image.inception import InceptionScore
    from torchmetrics.image.kid import KernelInceptionDistance

    # torchmetrics warns that KID and IS keep their features in memory: that is the intent here
    warnings.filterwarnings("ignore", message=".*will save all extracted features in buffer.*")
    fake_f = features_of(feature_net, fake)
    real_stats = real if isinstance(real, dict) else stats_of(features_of(feature_net, real))
    out: dict[str, float] = {"fid": _fid(real_stats, fake_f), "n_fake": float(len(fake_f))}
    real_f = real_stats.get("features")
    if real_f is not None:
        kid = KernelInceptionDistance(feature=_passthrough(fake_f.shape[1]),
                                      subset_size=min(kid_subset_size, len(real_f), len(fake_f)))
        kid.update(torch.from_numpy(real_f).float(), real=True)
        kid.update(torch.from_numpy(fake_f).float(), real=False)
        kid_mean, kid_std = kid.compute()
        out.update(kid_mean=float(kid_mean), kid_std=float(kid_std))
        k = min(nearest_k, len(real_f) - 1, len(fake_f) - 1)
        with contextlib.redirect_stdout(sys.stderr):  # prdc prints the set sizes; keep stdout for the JSON
            prdc = compute_prdc(real_f, fake_f, nearest_k=k)
        out.update({name: float(v) for name, v in prdc.items()})
    if logits_net is not None:
        isc = InceptionScore(feature=_passthrough(None), splits=min(is_splits, len(fake)))
        isc.update(torch.from_numpy(features_of(logits_net, fake)).float())
        m, s = isc.compute()
        out.update(isc_mean=float(m), isc_std=float(s))
    return out


def _passthrough(d: int | None) -> Any:
    """A feature "network" for features computed already: torchmetrics takes any module."""
    import torch

    class Passthrough(torch.nn.Module):
        num_features = d

        def forward(self, x):
            return x

    return Passthrough()


def load_clip(folder: str | Path | None) -> tuple[Any, Any]:
    """A local Hugging Face CLIP folder as ``(model, processor)``; never downloads."""
    if folder is None:
        raise UnmaskError("CLIP score needs a local CLIP model; pass --clip_model DIR (a Hugging Face CLIP "
                          "folder such as a download of openai/clip-vit-large-patch14); nothing is downloaded")
    if not Path(folder, "config.json").is_file():
        raise UnmaskError(f"{folder} is not a Hugging Face CLIP folder (no config.json)")
    from transformers import CLIPModel, CLIPProcessor

    return (CLIPModel.from_pretrained(folder, local_files_only=True).eval(),
            CLIPProcessor.from_pretrained(folder, local_files_only=True))


def clip_score(images: Any, captions: Sequence[str], clip: tuple[Any, Any]) -> float:
    """Mean CLIP score (100 x cosine, floored at 0, as torchmetrics defines it) of image-caption pairs."""
    from torchmetrics.multimodal.clip_score import CLIPScore

    if len(images) != len(captions):
        raise UnmaskError(f"{len(images)} images but {len(captions)} captions")
    model, processor = clip
    metric = CLIPScore(model_name_or_path=lambda: (_embedding_outputs(model), processor))
    for i in range(0, len(images), 32):
        metric.update(list(images[i : i + 32]), list(captions[i : i + 32]))
    return float(metric.compute())


def _embedding_outputs(model: Any) -> Any:
    """The CLIP model with ``get_image_features``/``get_text_features`` returning the projected
    embeddings as tensors: transformers 5 returns output objects (embeddings in ``pooler_output``)
    where torchmetrics 1.9 expects tensors."""
    import torch

    def embeds(out: Any) -> Any:
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    class TensorFeatures(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.config = model.config

        def get_image_features(self, *args: Any, **kw: Any) -> Any:
            return embeds(self.model.get_image_features(*args, **kw))

        def get_text_features(self, *args: Any, **kw: Any) -> Any:
            return embeds(self.model.get_text_features(*args, **kw))

    return TensorFeatures()


# ------------------------------------------------------------------------------------------ CLI
def cmd_image_metrics(args: argparse.Namespace) -> int:
    fake = read_folder(args.fake)
    out: dict[str, Any] = {}
    if args.clip_model is not None or args.captions is not None:
        if args.captions is None:
            raise UnmaskError("--clip_model needs --captions FILE (one caption per image, in file-name order)")
        if not Path(args.captions).is_file():
            raise UnmaskError(f"captions file {args.captions} does not exist")
        captions = [ln.rstrip("\n") for ln in Path(args.captions).read_text().splitlines() if ln.strip()]
        out["clip_score"] = clip_score(fake, captions, load_clip(args.clip_model))
    if not args.clip_only:
        if args.real is None:
            raise UnmaskError("--real REF_DIR_OR_STATS.npz is needed for FID (or pass --clip_only)")
        feat = inception(args.inception_weights, "2048")
        real = load_stats(args.real) if str(args.real).endswith(".npz") else read_folder(args.real)
        if args.save_stats and not isinstance(real, dict):
            np.savez(args.save_stats, **stats_of(features_of(feat, real)))
        out.update(compute_metrics(real, fake, feat, inception(args.inception_weights, "logits_unbiased")))
    print(json.dumps({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("image-metrics", help="FID / IS / KID / precision-recall / CLIP score of an image folder")
    p.add_argument("--fake", required=True, help="folder of generated images")
    p.add_argument("--real", default=None, help="folder of reference images, or an .npz with mu and sigma")
    p.add_argument("--inception_weights", default=None, help=f"local Inception v3 weights ({INCEPTION_WEIGHTS_NAME})")
    p.add_argument("--save_stats", default=None, help="write the reference folder's statistics to this .npz")
    p.add_argument("--clip_model", default=None, help="local Hugging Face CLIP folder for CLIP score")
    p.add_argument("--captions", default=None, help="text file, one caption per generated image (name order)")
    p.add_argument("--clip_only", action="store_true", help="CLIP score only (no reference set needed)")
    p.set_defaults(func=cmd_image_metrics)
