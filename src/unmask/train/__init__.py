"""Training tiny masked diffusion models on the synthetic tasks (see :mod:`unmask.train.trainer`).

Lazy (PEP 562): :mod:`.arguments` (the flags) imports without torch."""

from .._lazy import lazy_exports

_EXPORTS = {"add_train_arguments": ".arguments", "run_train": ".trainer"}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
