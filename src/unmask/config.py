"""Presets, config files and ``key=value`` overrides for the run commands.

``unmask sample|eval|compare|sweep --preset NAME`` loads a shipped YAML preset
(``src/unmask/presets/*.yaml``, listed by ``unmask presets``), ``--config FILE.yaml`` a user file of
the same shape, and bare ``group.key=value`` arguments override single keys, in the style of Hydra
(``decode.mode=jacobi decode.tau_r=0.85``). OmegaConf does the loading and merging; this module
maps the merged tree onto the command's flags and checks every key and value, so a typo is one
line naming the key (exit 2), never a silently ignored setting.

Precedence, lowest first: preset, ``--config`` file, ``key=value`` overrides, explicit flags
(:func:`unmask.options.resolve`). The keys, their types and ranges are the rows of
:mod:`unmask.options`; ``docs/options.md`` lists them.

The tree (every key optional)::

    model: llada
    sampler:    {name: threshold, threshold: 0.9, candidate_number: 8, ...}   # sampler flags
    generation: {max_new_tokens: 256, steps: 8, block_size: 32, use_cache: dual, compat: fast_dllm, ...}
    decode:     {mode: gauss_seidel, tau_r: 0.9, tau_a: 0.92, max_fill_frac: 0.4, ...}  # lockstep flags
    eval:       {task: gsm8k, num_fewshot: 0, limit: 50, ...}                 # unmask eval flags
    run:        {chat_template: true, wandb: false, ...}

``decode.*`` keys map onto the lockstep flags (``--lockstep``, ``--tau_r``, ...).
"""

from __future__ import annotations

import argparse
import re
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import UnmaskError
from .options import BY_KEY, check_config_keys, layer

_OVERRIDE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+|model)=")


def _omegaconf():
    try:
        from omegaconf import OmegaConf
    except ImportError as e:  # pragma: no cover - depends on the install
        raise UnmaskError("presets and key=value overrides need omegaconf: pip install omegaconf") from e
    return OmegaConf


def preset_dir() -> Path:
    return Path(str(resources.files("unmask") / "presets"))


def preset_names() -> list[str]:
    return sorted(p.stem for p in preset_dir().glob("*.yaml"))


def load_preset(name: str) -> dict[str, Any]:
    path = preset_dir() / f"{name}.yaml"
    if not path.exists():
        raise UnmaskError(f"unknown preset {name!r}; `unmask presets` lists: {', '.join(preset_names())}")
    return _load_file(path)


def _load_file(path: Path) -> dict[str, Any]:
    OmegaConf = _omegaconf()
    if not path.exists():
        raise UnmaskError(f"config file {path} does not exist")
    try:
        cfg = OmegaConf.load(path)
    except Exception as e:
        raise UnmaskError(f"config file {path}: {str(e).splitlines()[0]}") from e
    data = OmegaConf.to_container(cfg, resolve=True)
    if not isinstance(data, dict):
        raise UnmaskError(f"config file {path}: expected a mapping at the top level")
    return data


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; the descriptive keys ``description``/``source`` are dropped."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if not prefix and k in ("description", "source"):
            continue
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def split_overrides(argv: list[str], parser: argparse.ArgumentParser) -> tuple[list[str], list[str]]:
    """Pull ``group.key=value`` tokens out of ``argv`` (not those that are a flag's value)."""
    takes_value = set()
    for action in _subparser_actions(parser, argv):
        if action.option_strings and action.nargs is None:
            takes_value.update(action.option_strings)
    rest, overrides = [], []
    prev = None
    for tok in argv:
        if _OVERRIDE.match(tok) and prev not in takes_value:
            overrides.append(tok)
        else:
            rest.append(tok)
        prev = tok
    return rest, overrides


def _subparser_actions(parser: argparse.ArgumentParser, argv: list[str]) -> list[argparse.Action]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and argv and argv[0] in action.choices:
            return list(action.choices[argv[0]]._actions)
    return []


def layers(preset: str | None, config_file: str | None, overrides: list[str]) -> dict[str, dict[str, Any]]:
    """The three layers as flat ``{config key: value}`` mappings, every key checked against the
    option table (did-you-mean for a typo)."""
    out: dict[str, dict[str, Any]] = {}
    if preset:
        out["preset"] = flatten(load_preset(preset))
    if config_file:
        out["config"] = flatten(_load_file(Path(config_file)))
    if overrides:
        OmegaConf = _omegaconf()
        try:
            tree = OmegaConf.to_container(OmegaConf.from_dotlist(overrides), resolve=True)
        except Exception as e:
            raise UnmaskError(f"bad override in {' '.join(overrides)}: {str(e).splitlines()[0]}") from e
        out["override"] = flatten(tree)
    for flat in out.values():
        check_config_keys(flat)
    return out


def preset_table() -> list[dict[str, Any]]:
    rows = []
    for name in preset_names():
        data = load_preset(name)
        rows.append({"name": name, "description": data.get("description", ""), "settings": flatten(data)})
    return rows


def sweep_settings(flat: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A preset/override layer as sweep settings: ``(common settings, top-level run keys)``. The
    grid axes (model, task, samplers) stay the sweep YAML's own."""
    common: dict[str, Any] = {}
    top: dict[str, Any] = {}
    for key, value in flat.items():
        o = BY_KEY[key]
        if not o.sweep:
            continue
        if o.target == "run":
            top[o.name] = value
        else:
            common[o.name] = value
    return common, top


def layer_sweep(cfg: dict[str, Any], base: dict[str, Any] | None, over: dict[str, Any] | None) -> dict[str, Any]:
    """preset (``base``, flat config keys) < sweep YAML < ``key=value`` overrides (``over``).
    A value of a higher layer replaces what it excludes in a lower one (``tokens_per_step`` in the
    YAML's ``common`` drops a preset's ``steps``; the grid and the model/task entries do the same
    in :func:`unmask.eval.sweep.expand`)."""
    out = dict(cfg)
    common = dict(cfg.get("common") or {})
    if base:
        below, top = sweep_settings(base)
        common = layer({k: v for k, v in below.items() if v is not None}, common)
        for k, v in top.items():
            if v is not None:
                out.setdefault(k, v)
    if over:  # a null override removes the key (e.g. a preset's max_new_tokens on an infilling task)
        above, top = sweep_settings(over)
        common = layer(common, above)
        for k, v in top.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = v
    out["common"] = {k: v for k, v in common.items() if v is not None}
    # the YAML's values were checked when it was read; the layered ones must be too, before any
    # run starts (a NaN temperature from an override must not become an error row with exit 0)
    from .validation import check_options

    out["common"] = check_options(out["common"])
    for k in ("limit", "batch_size"):
        if k in out:
            out[k] = check_options({k: out[k]})[k]
    return out
