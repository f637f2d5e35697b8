"""unmask: decoding toolkit for masked diffusion language models.

    from unmask import from_pretrained, generate
    model, tok = from_pretrained("tiny-sudoku")

The public names are imported on first use (PEP 562), so ``import unmask`` and the CLI's
``--help`` do not import torch.
"""

from ._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "GenerationConfig": ".decoding", "GenerationOutput": ".decoding", "Trace": ".decoding", "generate": ".decoding",
    "LockstepPlan": ".decoding.lockstep", "UnmaskError": ".errors",
    "Dream": ".models", "LLaDA": ".models", "from_pretrained": ".models", "load_model": ".models",
    "make_sampler": ".samplers", "sampler_names": ".samplers",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted([*_EXPORTS, "__version__"])
