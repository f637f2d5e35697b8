"""Model aliases and where their checkpoints are found on disk. Nothing here touches the network.

``resolve_model_path(name)`` accepts:

* a local folder (``config.json`` + safetensors),
* a built-in tiny model alias (``tiny-sudoku``, ...), shipped inside the package,
* a known alias (``llada``, ``llada1.5``, ``dream``, ``diffucoder``, ``sdar``, ``trado``, ...) or a hub id
  (``GSAI-ML/LLaDA-8B-Instruct``), looked up in the local Hugging Face cache
  (``$HF_HUB_CACHE``, ``$HF_HOME/hub`` or ``~/.cache/huggingface/hub``, folders
  ``models--ORG--NAME/snapshots/*``).

When the weights are not on disk it fails at once, saying where it looked and how to download.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UnmaskError

#: alias -> Hugging Face repo id
ALIASES: dict[str, str] = {
    "llada": "GSAI-ML/LLaDA-8B-Instruct",
    "llada-instruct": "GSAI-ML/LLaDA-8B-Instruct",
    "llada-base": "GSAI-ML/LLaDA-8B-Base",
    "llada1.5": "GSAI-ML/LLaDA-1.5",
    "llada-1.5": "GSAI-ML/LLaDA-1.5",
    "dream": "Dream-org/Dream-v0-Instruct-7B",
    "dream-instruct": "Dream-org/Dream-v0-Instruct-7B",
    "dream-base": "Dream-org/Dream-v0-Base-7B",
    "diffucoder": "apple/DiffuCoder-7B-cpGRPO",
    "diffucoder-instruct": "apple/DiffuCoder-7B-Instruct",
    "diffucoder-base": "apple/DiffuCoder-7B-Base",
    "sdar": "JetLM/SDAR-8B-Chat",
    "sdar-8b": "JetLM/SDAR-8B-Chat",
    "sdar-4b": "JetLM/SDAR-4B-Chat",
    "sdar-1.7b": "JetLM/SDAR-1.7B-Chat",
    "trado": "Gen-Verse/TraDo-8B-Instruct",
    "trado-8b": "Gen-Verse/TraDo-8B-Instruct",
    "trado-4b": "Gen-Verse/TraDo-4B-Instruct",
    "trado-thinking": "Gen-Verse/TraDo-8B-Thinking",
    "mmada": "Gen-Verse/MMaDA-8B-MixCoT",
    "mmada-mixcot": "Gen-Verse/MMaDA-8B-MixCoT",
    "mmada-base": "Gen-Verse/MMaDA-8B-Base",
}

#: built-in tiny models shipped under ``unmask/assets/<alias>/``
BUILTIN = ("tiny-sudoku", "tiny-multiply", "tiny-nae-sat", "tiny-judge", "tiny-shapes", "tiny-judge-rl")


def assets_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "assets"


def hf_cache_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("HF_HUB_CACHE"):
        dirs.append(Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        dirs.append(Path(os.environ["HF_HOME"]) / "hub")
    dirs.append(Path.home() / ".cache" / "huggingface" / "hub")
    seen, out = set(), []
    for d in dirs:
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


def _has_weights(folder: Path) -> bool:
    return (folder / "config.json").exists() and (
        (folder / "model.safetensors").exists() or (folder / "model.safetensors.index.json").exists()
    )


def find_in_hf_cache(repo_id: str) -> Path | None:
    """Newest complete snapshot of ``repo_id`` in any local HF cache, or None."""
    org_name = "models--" + repo_id.replace("/", "--")
    best: Path | None = None
    for cache in hf_cache_dirs():
        snaps = cache / org_name / "snapshots"
        if not snaps.is_dir():
            continue
        for snap in sorted(snaps.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
            if _has_weights(snap):
                best = best or snap
    return best


def known_aliases() -> list[str]:
    return sorted([*ALIASES, *BUILTIN])


def resolve_model_path(name_or_path: str) -> Path:
    """Turn a folder, alias or hub id into a local checkpoint folder, or raise UnmaskError."""
    if isinstance(name_or_path, os.PathLike):
        name_or_path = os.fspath(name_or_path)
    if not isinstance(name_or_path, str) or not name_or_path:
        raise UnmaskError("no model given: pass --model_name_or_path (a folder or one of: " + ", ".join(known_aliases()) + ")")
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        if not (p / "config.json").exists():
            raise UnmaskError(f"{p} is a folder but has no config.json (expected config.json + model.safetensors)")
        return p
    if p.exists():
        raise UnmaskError(f"{p} is a file; --model_name_or_path wants a checkpoint folder (config.json + model.safetensors)")
    if name_or_path.startswith(("/", "./", "../", "~")) or name_or_path.count("/") > 1:
        raise UnmaskError(f"model folder {p} does not exist")
    key = name_or_path.strip().lower()
    if key in BUILTIN:
        folder = assets_dir() / key
        if not _has_weights(folder):
            raise UnmaskError(f"built-in model {key} is missing from this install ({folder}); reinstall unmask")
        return folder
    repo_id = ALIASES.get(key)
    if repo_id is None and name_or_path.count("/") == 1 and not p.exists():
        repo_id = name_or_path  # a hub id like ORG/NAME
    if repo_id is None:
        raise UnmaskError(
            f"unknown model {name_or_path!r}: not a folder and not an alias ({', '.join(known_aliases())})"
        )
    found = find_in_hf_cache(repo_id)
    if found is not None:
        return found
    looked = ", ".join(str(d / ("models--" + repo_id.replace("/", "--"))) for d in hf_cache_dirs())
    raise UnmaskError(
        f"weights for {repo_id} are not on this machine (looked in {looked}); download them with "
        f"`huggingface-cli download {repo_id} --local-dir DIR` and pass --model_name_or_path DIR"
    )


def from_pretrained(name_or_path: str, dtype=None, device=None):
    """Load model and tokenizer (tokenizer is None when the folder has none)."""
    from ..tokenizer import load_tokenizer
    from .loading import load_model

    folder = resolve_model_path(name_or_path)
    model = load_model(folder, dtype=dtype, device=device)
    tokenizer = None
    if any((folder / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
        tokenizer = load_tokenizer(folder)
    return model, tokenizer
