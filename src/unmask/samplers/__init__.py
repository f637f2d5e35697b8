"""Decoding policies. ``make_sampler(name, **options)`` builds one by name or alias."""

from . import baselines, info_gain, klass  # noqa: F401 - registers the samplers
from .base import Action, Sampler, StepView, entropy_from_logits, make_sampler, sampler_names, top_k_stable

__all__ = ["Action", "Sampler", "StepView", "entropy_from_logits", "make_sampler", "sampler_names", "top_k_stable"]
