"""Native model implementations and checkpoint loading."""

from .base import DiffusionLM, ModelOutput
from .cache import KVCache
from .dream import Dream, DreamConfig
from .llada import LLaDA, LLaDAConfig
from .loading import build_model, load_model, save_model
from .registry import from_pretrained, resolve_model_path
from .sdar import SDAR, SDARConfig

__all__ = [
    "DiffusionLM", "Dream", "DreamConfig", "KVCache", "LLaDA", "LLaDAConfig", "ModelOutput", "SDAR", "SDARConfig",
    "build_model", "from_pretrained", "load_model", "resolve_model_path", "save_model",
]
