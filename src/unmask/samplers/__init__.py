"""Decoding policies. ``make_sampler(name, **options)`` builds one by name or alias."""

from . import baselines  # noqa: F401 - registers the baseline samplers
from .base import Action, Sampler, StepView, entropy_from_logits, make_sampler, sampler_names, top_k_stable

__all__ = ["Action", "Sampler", "StepView", "entropy_from_logits", "make_sampler", "sampler_names", "top_k_stable"]
