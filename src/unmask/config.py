"""Presets, config files and ``key=value`` overrides for the run commands.

``unmask sample|eval|compare|sweep --preset NAME`` loads a shipped YAML preset
(``src/unmask/presets/*.yaml``, listed by ``unmask presets``), ``--config FILE.yaml`` a user file of
the same shape, and bare ``group.key=value`` arguments override single keys, in the style of Hydra
(``decode.mode=jacobi decode.tau_r=0.85``). OmegaConf does the loading and merging; this module
maps the merged tree onto the command's flags and checks every key and value, so a typo is one
line naming the key (exit 2), never a silently ignored setting.

Precedence, lowest first: preset, ``--config`` file, ``key=value`` overrides, explicit flags.

The tree (every key optional)::

    model: llada
    sampler:    {name: threshold, threshold: 0.9, candidate_number: 8, ...}   # sampler flags
    generation: {max_new_tokens: 256, steps: 8, block_size: 32, use_cache: dual, compat: fast_dllm, ...}
    decode:     {mode: gauss_seidel, tau_r: 0.9, tau_a: 0.92, max_fill_frac: 0.4, ...}  # lockstep flags
    eval:       {task: gsm8k, num_fewshot: 0, limit: 50, ...}                 # unmask eval flags

``decode.*`` keys map onto the lockstep flags (``--lockstep``, ``--tau_r``, ...). They are checked
lazily: a preset that sets them works on every build whose command has those flags and is an
error naming the key on one that does not.
"""

from __future__ import annotations

import argparse
import re
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import UnmaskError

#: run commands that take --preset / --config / key=value
RUN_COMMANDS = ("sample", "eval", "compare", "sweep")

SAMPLER_KEYS = ("threshold", "factor", "gamma", "kl_threshold", "kl_history", "pc_lambda", "pc_alpha", "pc_freq_file", "variant", "candidate_number",
                "position_temperature", "bypass", "hnext_scope", "cost_reduction", "beam_size", "best_of",
                "max_lookahead_rows", "lookahead_margin")
GENERATION_KEYS = ("max_new_tokens", "steps", "block_size", "tokens_per_step", "schedule", "temperature", "top_p",
                   "top_k", "use_cache", "eos_penalty", "eos_fill", "seed", "compat", "chat_template")
DECODE_KEYS = {"mode": "lockstep", "tau_r": "tau_r", "tau_a": "tau_a", "max_fill_frac": "max_fill_frac",
               "answer_after": "answer_after", "reasoning_tokens": "reasoning_tokens", "answer_tokens": "answer_tokens",
               "answer_separator": "answer_separator"}
EVAL_KEYS = ("task", "limit", "data", "num_fewshot", "batch_size", "output_dir", "exec_timeout", "samplers")

_OVERRIDE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+|model)=")


def key_map() -> dict[str, str]:
    """Config key -> argparse destination."""
    m = {"model": "model_name_or_path", "sampler.name": "sampler"}
    m.update({f"sampler.{k}": k for k in SAMPLER_KEYS})
    m.update({f"generation.{k}": k for k in GENERATION_KEYS})
    m.update({f"decode.{k}": v for k, v in DECODE_KEYS.items()})
    m.update({f"eval.{k}": k for k in EVAL_KEYS})
    return m


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
        if action.option_strings and action.nargs != 0:
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


def merged_tree(preset: str | None, config_file: str | None, overrides: list[str]) -> dict[str, Any]:
    """Preset, then file, then overrides, merged by OmegaConf; every key checked against the schema."""
    OmegaConf = _omegaconf()
    layers = []
    if preset:
        layers.append(OmegaConf.create(load_preset(preset)))
    if config_file:
        layers.append(OmegaConf.create(_load_file(Path(config_file))))
    if overrides:
        try:
            layers.append(OmegaConf.from_dotlist(overrides))
        except Exception as e:
            raise UnmaskError(f"bad override in {' '.join(overrides)}: {str(e).splitlines()[0]}") from e
    if not layers:
        return {}
    tree = OmegaConf.to_container(OmegaConf.merge(*layers), resolve=True)
    known = key_map()
    for key in flatten(tree):
        if key not in known:
            group = key.split(".")[0] + "."
            near = sorted(k for k in known if k.startswith(group)) or sorted({k.split(".")[0] for k in known})
            raise UnmaskError(f"unknown config key {key!r}; known here: {', '.join(near)}")
    return tree


def apply(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: list[str], tree: dict[str, Any]) -> None:
    """Set the flags the tree names, unless the user gave that flag explicitly. Values go through
    the flag's own type (so ``generation.steps=abc`` fails like ``--steps abc``)."""
    actions = {a.dest: a for a in _subparser_actions(parser, argv)}
    known = key_map()
    for key, value in flatten(tree).items():
        dest = known[key]
        action = actions.get(dest)
        if value is None:  # null resets a key to the flag's default (e.g. drop a preset's value)
            if action is not None and getattr(args, dest, None) == action.default:
                setattr(args, dest, action.default)
            continue
        if action is None:
            if key.startswith("eval."):
                continue  # a benchmark preset's eval settings do not concern sample/compare
            raise UnmaskError(f"config key {key!r} is not supported by `unmask {argv[0]}` in this build")
        if getattr(args, dest, None) != action.default:
            continue  # an explicit flag wins
        conv = action.type
        try:
            if conv is not None:
                value = conv(str(value))
        except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
            raise UnmaskError(f"config key {key!r}: bad value {value!r} ({e})") from e
        if action.choices is not None and value not in action.choices:
            raise UnmaskError(f"config key {key!r}: {value!r} is not one of {', '.join(map(str, action.choices))}")
        setattr(args, dest, value)


def resolved(args: argparse.Namespace, preset: str | None = None, config_file: str | None = None,
             overrides: list[str] | None = None) -> dict[str, Any]:
    """The fully resolved run configuration (every schema key the command has), for result files."""
    tree: dict[str, Any] = {}
    for key, dest in key_map().items():
        if not hasattr(args, dest):
            continue
        node = tree
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        value = getattr(args, dest)
        node[parts[-1]] = value if isinstance(value, (str, int, float, bool, type(None), list)) else str(value)
    tree["_source"] = {"preset": preset, "config": config_file, "overrides": list(overrides or [])}
    return tree


def preset_table() -> list[dict[str, Any]]:
    rows = []
    for name in preset_names():
        data = load_preset(name)
        rows.append({"name": name, "description": data.get("description", ""), "settings": flatten(data)})
    return rows


def sweep_layer(tree: dict[str, Any]) -> dict[str, Any]:
    """A preset/override tree as sweep settings: ``generation.*`` and sampler options become
    ``common`` settings of every grid point, ``eval.*`` run keys the sweep's top-level defaults.
    The grid axes (models, tasks, samplers) stay the sweep YAML's own."""
    flat = flatten(tree)
    common: dict[str, Any] = {}
    top: dict[str, Any] = {}
    for key, value in flat.items():
        group, _, name = key.partition(".")
        if key in ("model", "sampler.name"):
            continue
        if group in ("generation", "sampler", "decode"):
            common[DECODE_KEYS[name] if group == "decode" else name] = value
        elif group == "eval" and name not in ("task", "samplers"):
            top[name] = value
    return {"common": common, **top}


def layer_sweep(cfg: dict[str, Any], base: dict[str, Any] | None, over: dict[str, Any] | None) -> dict[str, Any]:
    """preset (``base``) < sweep YAML < ``key=value`` overrides (``over``)."""
    out = dict(cfg)
    if base:
        b = sweep_layer(base)
        common = {k: v for k, v in b.pop("common").items() if v is not None}
        out["common"] = {**common, **(cfg.get("common") or {})}
        for k, v in b.items():
            if v is not None:
                out.setdefault(k, v)
    if over:  # a null override removes the key (e.g. a preset's max_new_tokens on an infilling task)
        o = sweep_layer(over)
        common = {**(out.get("common") or {}), **o.pop("common")}
        out["common"] = {k: v for k, v in common.items() if v is not None}
        for k, v in o.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = v
    # the YAML's values were checked when it was read; the layered ones must be too, before any
    # run starts (a NaN temperature from an override must not become an error row with exit 0)
    from .validation import check_options

    out["common"] = check_options(out.get("common") or {})
    for k in ("limit", "batch_size"):
        if k in out:
            out[k] = check_options({k: out[k]})[k]
    return out
