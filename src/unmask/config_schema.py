"""The schema of settings files (sweep YAML today; presets and ``key=value`` overrides reuse it).

A misspelt key in a settings file is the worst kind of bad input: ``limt: 10`` or ``temprature:
0.7`` used to be dropped (or passed to a sampler that ignored it), and the run went ahead with
the default, which looks like a result. Here every key must be one the program knows, every
sampler must exist and every number obeys :mod:`unmask.validation`; the message names the key,
where it is, and the closest known key.

Reusable pieces:

* :func:`setting_keys` - every key a *setting* may have (decoding, sampler options, run keys);
* :func:`check_settings` - validate one mapping of settings (e.g. a preset, or parsed
  ``key=value`` overrides);
* :func:`validate_sweep_config` - the whole sweep file.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any

from .errors import UnmaskError
from .options import OPTIONS, sweep_key
from .validation import check_option

#: per-run settings that are not decoding settings (see unmask.eval.sweep): the option table's
#: ``run`` rows that a sweep may set
RUN_KEYS = tuple(o.name for o in OPTIONS if o.target == "run" and o.sweep)
#: lockstep settings (``decode.*`` in presets; either spelling in a sweep file)
LOCKSTEP_KEYS = tuple(o.name for o in OPTIONS if o.target == "lockstep")
#: top-level keys of a sweep file besides the run-spec fields
SWEEP_SECTIONS = ("output_dir", "models", "tasks", "samplers", "settings", "common")
#: EvalSpec fields a sweep file may set at the top level (defaults for every run)
SWEEP_SPEC_KEYS = ("limit", "data", "batch_size", "chat_template", "num_fewshot", "device", "dtype",
                   "exec_timeout", "wandb", "wandb_project", "merge_timeout", "threads")
#: GenerationConfig fields that are Python objects, not settings a file can give
_NOT_SETTINGS = ("logits_hook", "tokens_hook")


def generation_fields() -> set[str]:
    """Every ``GenerationConfig`` field, the Python-object hooks included (the Python API's view)."""
    from .decoding.engine import GenerationConfig

    return {f.name for f in fields(GenerationConfig)}


def generation_keys() -> set[str]:
    """The ``GenerationConfig`` fields a settings file may give (no hooks)."""
    return generation_fields() - set(_NOT_SETTINGS)


def setting_keys() -> set[str]:
    """Keys a settings mapping may hold: decoding fields, run keys and any sampler's options."""
    from .samplers.base import all_sampler_options

    return generation_keys() | set(RUN_KEYS) | set(LOCKSTEP_KEYS) | all_sampler_options()


def unknown_key_error(key: Any, allowed: Iterable[str], where: str) -> UnmaskError:
    allowed = sorted(allowed)
    close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(allowed)}"
    return UnmaskError(f"{where}: unknown key {key!r}{hint}")


def check_keys(mapping: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    allowed = set(allowed)
    for k in mapping:
        if not isinstance(k, str) or k not in allowed:
            raise unknown_key_error(k, allowed, where)


def check_settings(mapping: Any, where: str) -> dict[str, Any]:
    """Validate a mapping of settings: known keys only, numbers finite and in range. Returns a
    copy with numbers converted (``"1e-3"`` -> ``0.001``)."""
    if not isinstance(mapping, Mapping):
        raise UnmaskError(f"{where} must be a mapping of setting: value, got {type(mapping).__name__}")
    check_keys(mapping, setting_keys(), where)
    return {k: _check_value(k, v, where) for k, v in mapping.items()}


def _check_value(key: str, value: Any, where: str) -> Any:
    if isinstance(value, (list, tuple)) and key in ("stop_token_ids", "suppress_token_ids", "seed"):
        return value
    try:
        return check_option(key, value)
    except UnmaskError as e:
        raise UnmaskError(f"{where}: {e}") from None


def _check_sampler(name: Any, options: Mapping[str, Any], where: str) -> None:
    from .samplers.base import make_sampler

    try:
        make_sampler(name, **options)
    except UnmaskError as e:
        raise UnmaskError(f"{where}: {e}") from None


def normalize_keys(mapping: Any) -> Any:
    """Config-key spellings as option names (``decode.mode`` -> ``lockstep``,
    ``generation.steps`` -> ``steps``), so a sweep file takes every key a preset takes."""
    if not isinstance(mapping, Mapping):
        return mapping
    return {sweep_key(k) if isinstance(k, str) else k: v for k, v in mapping.items()}


def normalize_sweep_config(cfg: dict[str, Any]) -> dict[str, Any]:
    out = normalize_keys(cfg)
    for section in ("common", "settings"):
        if isinstance(out.get(section), Mapping):
            out[section] = normalize_keys(out[section])
    for axis in ("models", "tasks"):
        if isinstance(out.get(axis), list):
            out[axis] = [normalize_keys(e) for e in out[axis]]
    return out


def validate_sweep_config(cfg: Any, source: str = "sweep config") -> dict[str, Any]:
    """Check a parsed sweep file against the schema; returns it with keys normalized and
    numbers converted."""
    if not isinstance(cfg, dict):
        raise UnmaskError(f"{source}: expected a mapping at the top level")
    cfg = normalize_sweep_config(cfg)
    check_keys(cfg, set(SWEEP_SECTIONS) | set(SWEEP_SPEC_KEYS), source)
    for key in ("models", "tasks", "samplers"):
        if not cfg.get(key):
            raise UnmaskError(f"{source}: '{key}' must be a non-empty list")
    out = dict(cfg)
    for k in SWEEP_SPEC_KEYS:
        if k in cfg:
            out[k] = _check_value(k, cfg[k], source)
    if "output_dir" in cfg and not isinstance(cfg["output_dir"], str):
        raise UnmaskError(f"{source}: output_dir must be a folder name, got {cfg['output_dir']!r}")
    if cfg.get("common") is not None:
        out["common"] = check_settings(cfg["common"], f"{source}: common")
    grid = cfg.get("settings")
    if grid is not None:
        if not isinstance(grid, Mapping):
            raise UnmaskError(f"{source}: 'settings' must map a setting name to a list of values")
        check_keys(grid, setting_keys(), f"{source}: settings")
        for k, vals in grid.items():
            vals = vals if isinstance(vals, list) else [vals]
            if not vals:
                raise UnmaskError(f"{source}: settings: {k} has an empty list of values")
            for v in vals:
                _check_value(k, v, f"{source}: settings")
    for i, m in enumerate(_as_list(cfg["models"])):
        if isinstance(m, Mapping):
            where = f"{source}: models[{i}]"
            if not (m.get("path") or m.get("name")):
                raise UnmaskError(f"{where} needs a 'name' or 'path'")
            check_settings({k: v for k, v in m.items() if k not in ("name", "path")}, where)
        elif not isinstance(m, str):
            raise UnmaskError(f"{source}: models[{i}] must be a name, a path or a mapping, got {m!r}")
    for i, t in enumerate(_as_list(cfg["tasks"])):
        if isinstance(t, Mapping):
            where = f"{source}: tasks[{i}]"
            if "name" not in t:
                raise UnmaskError(f"{where} needs a 'name'")
            check_settings({k: v for k, v in t.items() if k != "name"}, where)
        elif not isinstance(t, str):
            raise UnmaskError(f"{source}: tasks[{i}] must be a name or a mapping, got {t!r}")
    shared = {k: v for k, v in (cfg.get("common") or {}).items()
              if k not in generation_keys() and k not in RUN_KEYS and k not in LOCKSTEP_KEYS}
    for i, s in enumerate(_as_list(cfg["samplers"])):
        where = f"{source}: samplers[{i}]"
        if isinstance(s, Mapping):
            check_keys(s, ("name", "options"), where)
            if "name" not in s:
                raise UnmaskError(f"{where} needs a 'name'")
            opts = s.get("options") or {}
            if not isinstance(opts, Mapping):
                raise UnmaskError(f"{where}: options must be a mapping")
            _check_sampler(s["name"], {**shared, **opts}, where)
        elif isinstance(s, str):
            _check_sampler(s, shared, where)
        else:
            raise UnmaskError(f"{where} must be a sampler name or a mapping, got {s!r}")
    return out


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]
