"""unmask: decoding toolkit for masked diffusion language models.

    from unmask import from_pretrained, generate
    model, tok = from_pretrained("tiny-sudoku")
"""

from .decoding import GenerationConfig, GenerationOutput, Trace, generate
from .decoding.lockstep import LockstepPlan
from .errors import UnmaskError
from .models import Dream, LLaDA, from_pretrained, load_model
from .samplers import make_sampler, sampler_names

__version__ = "0.1.0"

__all__ = [
    "Dream", "GenerationConfig", "GenerationOutput", "LLaDA", "LockstepPlan", "Trace", "UnmaskError", "__version__",
    "from_pretrained", "generate", "load_model", "make_sampler", "sampler_names",
]
