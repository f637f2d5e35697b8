"""The decoding loop (engine), step schedules and traces."""

from .engine import CACHE_MODES, Engine, GenerationConfig, GenerationOutput, generate
from .schedule import (
    block_schedule,
    dream_schedule,
    fixed_schedule,
    linear_round_schedule,
    linear_schedule,
    split_steps,
)
from .trace import StepRecord, TokenRecord, Trace

__all__ = [
    "CACHE_MODES", "Engine", "GenerationConfig", "GenerationOutput", "StepRecord", "TokenRecord", "Trace",
    "block_schedule", "dream_schedule", "fixed_schedule", "generate", "linear_round_schedule", "linear_schedule",
    "split_steps",
]
