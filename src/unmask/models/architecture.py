"""Which native class a config.json describes (apart from :mod:`.loading`, so that
:mod:`.checkpoint_check` and :mod:`.loading` both use it without importing each other)."""

from __future__ import annotations

from typing import Any

from ..errors import UnmaskError
from .base import DiffusionLM
from .dream import Dream
from .llada import LLaDA
from .mmada import MMaDA, is_mmada
from .sdar import SDAR


def architecture_of(config: dict[str, Any]) -> type[DiffusionLM]:
    """Pick the native class from ``model_type`` / ``architectures`` in config.json."""
    if not isinstance(config, dict):
        raise UnmaskError(f"config.json must hold a JSON object, not a {type(config).__name__}")
    if not isinstance(config.get("architectures") or [], list):
        raise UnmaskError(f"config.json: architectures must be a list of names, got {config.get('architectures')!r}")
    mt = str(config.get("model_type", "")).lower()
    archs = [str(a).lower() for a in config.get("architectures") or []]
    if is_mmada(config):
        return MMaDA
    if mt == "llada" or any("llada" in a for a in archs) or "d_model" in config:
        return LLaDA
    if mt == "dream" or any("dream" in a for a in archs):
        return Dream
    if mt in ("sdar", "trado") or any("sdar" in a or "trado" in a for a in archs):
        return SDAR
    raise UnmaskError(
        f"config.json has model_type={config.get('model_type')!r}, architectures={config.get('architectures')!r}: "
        "unmask knows LLaDA (model_type 'llada'), MMaDA ('mmada'), Dream (model_type 'Dream') and SDAR/TraDo (model_type 'sdar')"
    )
