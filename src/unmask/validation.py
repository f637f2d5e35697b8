"""One rule for every number a user can give: finite, the right kind, inside its range.

Options reach unmask through several doors (command-line flags, the Python API's
``GenerationConfig`` and sampler constructors, sweep YAML files, request bodies). Each door calls
:func:`check_option` (or :func:`check_options`) with the option's *name*; the allowed range lives
once, in :data:`NUMERIC_OPTIONS`, so ``--temperature nan`` on the command line, ``temperature:
.nan`` in a sweep file and ``GenerationConfig(temperature=float("nan"))`` fail with the same
message. Why a table and not checks scattered over the code: a NaN compares False with everything,
so an ad-hoc ``if x < 0`` lets it through, and the failure then shows up far away as silent
garbage (all-zero tokens) or a hang.

Non-numeric values (strings, paths, choices) are checked where they are used; this module only
rules on numbers. ``bool`` is rejected where a number is expected (``True`` is an ``int`` in
Python, but ``limit: yes`` in YAML is a mistake, not 1).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import UnmaskError
from .options import ranges
from .ranges import (  # noqa: F401 - re-exported: the rules' vocabulary
    AT_LEAST_1,
    FINITE,
    MAX_SEED,
    NONNEG,
    NONNEG_INT,
    POS,
    POS_INT,
    UNIT,
    UNIT_OPEN_LO,
    Num,
    _fmt,
)

#: every numeric option of every door, by name. A name means the same thing wherever it appears
#: (``batch_size`` of eval, compare and train is always a positive integer). The run options'
#: ranges come from their rows in :mod:`unmask.options`; the rest are the other commands' numbers.
NUMERIC_OPTIONS: dict[str, Num] = {
    **ranges(),
    "n": AT_LEAST_1,
    "data_seed": Num(lo=0, hi=MAX_SEED, integer=True),
    # the writing task's LLM judge (eval/writing_judge.py)
    "judge_concurrency": Num(lo=1, hi=256, integer=True),
    "judge_timeout": Num(lo=0, hi=3600, lo_open=True, hint="seconds per request"),
    "judge_retries": Num(lo=0, hi=20, integer=True),
    "judge_max_tokens": AT_LEAST_1,
    "merge_timeout": NONNEG,
    # pictures (a huge dpi or frame count asks for gigabytes of pixels)
    "dpi": Num(lo=1, hi=1200, integer=True),
    "columns": Num(lo=1, hi=512, integer=True),
    "max_frames": Num(lo=1, hi=10000, integer=True),
    "frame_ms": Num(lo=1, hi=600000, integer=True),
    # training
    "n_layers": POS_INT,
    "d_model": POS_INT,
    "n_heads": POS_INT,
    "mlp_hidden_size": POS_INT,
    "max_steps": NONNEG_INT,  # 0: export the (initial or --init_from) weights without training
    "lr": POS,
    "weight_decay": NONNEG,
    "warmup_steps": NONNEG_INT,
    "grad_clip": POS,
    "derived_frac": UNIT,
    "eval_every": POS_INT,
    "eval_size": POS_INT,
    "decode_eval": NONNEG_INT,
    "log_every": POS_INT,
    "ckpt_minutes": POS,
    "max_minutes": POS,
    "stop_at_step": NONNEG_INT,
    # model-serving / lm-eval knobs
    "mc_num": POS_INT,
    "mc_batch_size": POS_INT,
    "max_batch_size": AT_LEAST_1,  # engine rows per batch (serve, lm-eval)
    "max_queue": AT_LEAST_1,
    "max_wait_ms": NONNEG,
    "shutdown_timeout": NONNEG,
}


def check_number(name: str, value: Any, rule: Num, label: str | None = None) -> int | float:
    """Return ``value`` as an int/float if it obeys ``rule``, else raise :class:`UnmaskError`
    naming the option (``label`` overrides how it is named, e.g. ``--temperature``)."""
    shown = label or name
    want = rule.describe() + (f" ({rule.hint})" if rule.hint else "")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        # numbers that arrive as text (YAML "1e-3" is a string) are accepted when they parse
        if isinstance(value, str):
            parsed = _parse_text(value, rule)
            if parsed is None:
                raise UnmaskError(f"{shown} must be {want}, got {_show(value)}")
            value = parsed
        else:
            raise UnmaskError(f"{shown} must be {want}, got {_show(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        also = "" if want.startswith("a finite number") else f" {want}"
        raise UnmaskError(f"{shown} must be a finite number{also}, got {value}")
    if rule.integer:
        if isinstance(value, float):
            if not value.is_integer():
                raise UnmaskError(f"{shown} must be {want}, got {value}")
            value = int(value)
    else:
        # a finite int that overflows a float (10**400) is as unusable as inf
        try:
            float(value)
        except OverflowError:
            raise UnmaskError(f"{shown} must be {want}, got a number too large for a float") from None
    if rule.lo is not None and (value <= rule.lo if rule.lo_open else value < rule.lo):
        raise UnmaskError(f"{shown} must be {want}, got {_show(value)}")
    if rule.hi is not None and (value >= rule.hi if rule.hi_open else value > rule.hi):
        raise UnmaskError(f"{shown} must be {want}, got {_show(value)}")
    return value


def _parse_text(text: str, rule: Num) -> int | float | None:
    t = text.strip()
    try:
        return int(t)
    except ValueError:
        pass
    if rule.integer:
        return None
    try:
        return float(t)
    except ValueError:
        return None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_option(name: str, value: Any, label: str | None = None) -> Any:
    """Validate one option by name; ``None`` (= "not given") and non-numeric options pass
    through unchanged. Returns the (possibly converted) value."""
    if value is None:
        return None
    rule = NUMERIC_OPTIONS.get(name)
    if rule is None:
        return value
    if name == "seed" and isinstance(value, (list, tuple)):
        return type(value)(check_number(name, v, rule, label) for v in value)
    return check_number(name, value, rule, label)


def check_options(options: Mapping[str, Any], flag_style: bool = False,
                  skip: Iterable[str] = ()) -> dict[str, Any]:
    """Validate every numeric entry of a mapping; returns a copy with converted values.
    ``flag_style`` names options as ``--name`` (command-line messages)."""
    skipped = set(skip)
    out = dict(options)
    for k, v in options.items():
        if k in skipped:
            continue
        out[k] = check_option(k, v, f"--{k}" if flag_style else None)
    return out


def check_utf8(name: str, value: str) -> str:
    """Text that came from the command line or a file must be valid UTF-8: Python keeps invalid
    bytes of ``argv`` as lone surrogates, which fail later, deep inside a tokenizer."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UnmaskError(f"{name} is not valid UTF-8 text") from None
    if "\x00" in value:
        raise UnmaskError(f"{name} contains a NUL byte (binary data?)")
    return value
