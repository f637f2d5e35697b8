"""Reading and writing checkpoints in the official layout: ``config.json`` plus
``model.safetensors`` or sharded ``model-0000x-of-0000n.safetensors`` with
``model.safetensors.index.json``.

The model is built on the ``meta`` device and the tensors are assigned straight from the files, so
loading an 8B checkpoint needs no second copy in memory. Every key is checked: missing, unexpected
and wrongly shaped tensors are all reported by name in one :class:`UnmaskError`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import UnmaskError
from ..userio import read_text
from .architecture import architecture_of  # noqa: F401 - re-exported
from .base import DiffusionLM
from .dream import Dream, DreamConfig
from .llada import LLaDA, LLaDAConfig
from .mmada import MMaDA, MMaDAConfig
from .sdar import SDAR, SDARConfig

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return None
    if dtype not in _DTYPES:
        raise UnmaskError(f"unknown dtype {dtype!r}; use one of float32, bfloat16, float16, auto")
    return _DTYPES[dtype]


def _class_of(config: LLaDAConfig | DreamConfig | SDARConfig) -> type[DiffusionLM]:
    if isinstance(config, MMaDAConfig):
        return MMaDA
    if isinstance(config, LLaDAConfig):
        return LLaDA
    if isinstance(config, SDARConfig):
        return SDAR
    return Dream


def config_from_dict(config: dict[str, Any]) -> LLaDAConfig | DreamConfig | SDARConfig:
    cls = architecture_of(config)
    if config.get("alibi"):
        # OLMo-style configs can ask for ALiBi; silently building RoPE or a wpe table instead
        # would give wrong logits, so refuse clearly
        raise UnmaskError("config.json asks for ALiBi attention biases (alibi: true), which unmask does not implement")
    return cls.config_class.from_dict(config)


def build_model(config: LLaDAConfig | DreamConfig | SDARConfig | dict[str, Any], seed: int | None = None) -> DiffusionLM:
    """A freshly initialised model (random weights), e.g. for tests or training."""
    if isinstance(config, dict):
        config = config_from_dict(config)
    cls = _class_of(config)
    if seed is not None:
        torch.manual_seed(seed)
    model = cls(config)
    model.reset_parameters()
    return model.eval()


def _weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    single = folder / "model.safetensors"
    if index.exists():
        try:
            weight_map = json.loads(read_text(index, "safetensors index"))["weight_map"]
            files = sorted({folder / str(f) for f in weight_map.values()})
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise UnmaskError(f"{index} is not a valid safetensors index ({type(e).__name__}: {e})") from None
        missing = [f.name for f in files if not f.exists()]
        if missing:
            raise UnmaskError(f"{index} lists shards that are not in {folder}: {', '.join(missing)}")
        return files
    if single.exists():
        return [single]
    found = sorted(p.name for p in folder.glob("*.safetensors"))
    if found:
        return [folder / f for f in found]
    raise UnmaskError(f"no model.safetensors or model.safetensors.index.json in {folder}")


def read_config(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    path = folder / "config.json"
    if not path.exists():
        raise UnmaskError(f"no config.json in {folder}: a model folder needs config.json and model.safetensors")
    try:
        return json.loads(read_text(path, "config file"))
    except json.JSONDecodeError as e:
        raise UnmaskError(f"{path} is not valid JSON ({e})") from None


def load_model(
    folder: str | Path,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> DiffusionLM:
    """Load a native model from a local checkpoint folder (no network, ever).

    ``dtype`` None/"auto" keeps the stored dtype of the weights (on a CPU, half precision is upcast
    to float32, which is much faster there); ``device`` defaults to CPU.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UnmaskError(f"model folder {folder} does not exist")
    from .checkpoint_check import check_config, check_weight_files

    raw = read_config(folder)
    check_config(raw, folder / "config.json")
    config = config_from_dict(raw)
    cls = _class_of(config)
    target_dtype = parse_dtype(dtype)
    device = torch.device(device) if device is not None else torch.device("cpu")
    files = _weight_files(folder)
    check_weight_files(files)

    with torch.device("meta"):
        model = cls(config)
    expected = {k: v.shape for k, v in model.state_dict().items()}

    tensors: dict[str, torch.Tensor] = {}
    for f in files:
        with safe_open(str(f), framework="pt", device="cpu") as fh:
            for key in fh.keys():
                tensors[key] = fh.get_tensor(key)

    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    bad_shape = sorted(
        f"{k} (file {tuple(tensors[k].shape)}, config {tuple(expected[k])})"
        for k in set(expected) & set(tensors)
        if tuple(tensors[k].shape) != tuple(expected[k])
    )
    if missing or unexpected or bad_shape:
        parts = []
        if missing:
            parts.append(f"missing keys: {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_short(unexpected)}")
        if bad_shape:
            parts.append(f"shape mismatches: {_short(bad_shape)}")
        raise UnmaskError(f"checkpoint in {folder} does not match its config.json ({cls.__name__}): " + "; ".join(parts))

    if target_dtype is None:
        target_dtype = next(iter(tensors.values())).dtype
        # "auto" on a CPU: half-precision matmuls are many times slower than fp32 there (no
        # tensor cores), so half-precision checkpoints are upcast; GPUs keep the stored dtype
        if not target_dtype.is_floating_point or (device.type == "cpu" and target_dtype.itemsize < 4):
            target_dtype = torch.float32
    state = {k: v.to(device=device, dtype=target_dtype if v.is_floating_point() else v.dtype) for k, v in tensors.items()}
    model.load_state_dict(state, strict=True, assign=True)
    model.name_or_path = str(folder)
    return model.eval()


def _short(items: list[str], limit: int = 8) -> str:
    head = ", ".join(items[:limit])
    return head + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _save_weights(state: dict[str, torch.Tensor], path: Path, like: Path) -> None:
    """``save_file``, then the permissions of ``like`` (a file just written the ordinary way):
    safetensors creates its file with mode 0600 whatever the umask, which left a model folder
    whose weights other users cannot read while its config and tokenizer are 0644."""
    save_file(state, str(path), metadata={"format": "pt"})
    os.chmod(path, like.stat().st_mode & 0o777)


def save_model(
    model: DiffusionLM,
    folder: str | Path,
    dtype: str | torch.dtype | None = None,
    max_shard_bytes: int | None = None,
) -> Path:
    """Write ``config.json`` and safetensors weights in the official layout (sharded when the
    weights exceed ``max_shard_bytes``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = parse_dtype(dtype)
    state = {k: v.detach().to("cpu", dtype=target or v.dtype).contiguous() for k, v in model.state_dict().items()}
    cfg = model.config.to_dict()
    cfg["torch_dtype"] = str(next(iter(state.values())).dtype).replace("torch.", "")
    (folder / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    total = sum(t.numel() * t.element_size() for t in state.values())
    if max_shard_bytes is None or total <= max_shard_bytes:
        _save_weights(state, folder / "model.safetensors", folder / "config.json")
        return folder
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k, t in state.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][k] = t
        size += nbytes
    n = len(shards)
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{n:05d}.safetensors"
        _save_weights(shard, folder / name, folder / "config.json")
        weight_map.update({k: name for k in shard})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return folder
