"""The option table (unmask/options.py): every option through every door, precedence at default
values on every command, the help text, and the generated reference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unmask.cli import build_parser, parse_args
from unmask.errors import UnmaskError
from unmask.options import BY_NAME, OPTIONS, RUN_COMMANDS, markdown, options_for, values

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("sample", "chat", "eval", "compare", "serve")
#: arguments a command needs besides the option under test
NEEDS = {"compare": ["--task", "multiply"], "rl": ["--out", "unused"]}


def probe(o) -> object:
    """A value for the option other than its default, valid for its type, range and choices."""
    if o.choices:
        return next(c for c in reversed(o.choices) if c != o.default)
    if o.type is bool:
        return not o.default
    if o.type is int:
        return 3
    if o.type is float:
        return 0.5
    return f"v_{o.name}"


def args_for(command: str, *argv: str):
    return parse_args([command, *NEEDS.get(command, []), *argv])


def engine_value(args, o):
    """Where the command hands the option on: the GenerationConfig overrides, the sampler's
    options, the lockstep options, or the command's own arguments."""
    if o.target in ("generation", "sampler", "lockstep"):
        return values(args, o.target).get(o.name)
    return getattr(args, o.name)


@pytest.mark.parametrize("o", OPTIONS, ids=lambda o: o.name)
def test_every_option_agrees_through_flag_config_key_sweep_key_and_server_field(o, tmp_path):
    value = probe(o)
    text = str(value)
    for command in o.commands:
        seen = []
        via_flag = args_for(command, f"--{o.name}", text)
        seen.append(engine_value(via_flag, o))
        if o.name != o.name.replace("_", "-"):
            seen.append(engine_value(args_for(command, f"--{o.name.replace('_', '-')}", text), o))
        if o.config_key:
            seen.append(engine_value(args_for(command, f"{o.config_key}={text}"), o))
            cfg = tmp_path / "c.yaml"
            group, _, key = o.config_key.rpartition(".")
            cfg.write_text(json.dumps({group: {key: value}} if group else {key: value}))
            seen.append(engine_value(args_for(command, "--config", str(cfg)), o))
        assert seen == [value] * len(seen), (command, seen)
    if o.sweep:
        from unmask.eval.sweep import expand

        for key in {o.name, o.config_key} - {None}:
            cfg = {"models": ["m"], "tasks": ["auto"], "samplers": ["confidence"]}
            if o.target == "model":  # device, dtype: the sweep's top-level run keys
                cfg[key] = value
            else:
                cfg["common"] = {key: value}
                if o.target == "lockstep" and o.name != "lockstep":
                    cfg["common"]["decode.mode"] = "jacobi"  # region settings need a mode
            from unmask.config_schema import normalize_sweep_config

            spec = expand(normalize_sweep_config(cfg))[0][1]
            got = _sweep_value(spec, o)
            assert got == value, (key, got)
    if o.server and "serve" in o.commands:
        from unmask.serve.schema import parse_request

        req = parse_request({"prompt": "a", o.name: value}, "completion")
        got = req.max_tokens if o.name == "max_new_tokens" else req.settings.get(o.name)
        assert got == value


def _sweep_value(spec, o):
    """Where an eval run reads a sweep setting: its GenerationConfig overrides, sampler options,
    lockstep options, or the run spec."""
    if o.target == "generation":
        return spec.overrides.get(o.name)
    if o.target == "sampler":
        return spec.sampler_options.get(o.name)
    if o.target == "lockstep":
        return spec.lockstep.config().get(o.name) if spec.lockstep else None
    return getattr(spec, o.name)


def test_every_numeric_option_has_one_range_everywhere():
    from unmask.validation import NUMERIC_OPTIONS

    for o in OPTIONS:
        if o.type in (int, float) and o.range is not None:
            assert NUMERIC_OPTIONS[o.name] is o.range
    with pytest.raises(UnmaskError, match="--tau_r must be in"):
        parse_args(["sample", "--tau_r", "0"])
    with pytest.raises(UnmaskError, match="--tau_r must be in"):
        parse_args(["sample", "decode.tau_r=1.5"])


def test_generation_rows_are_generation_config_fields():
    from dataclasses import fields

    from unmask.decoding.engine import GenerationConfig

    names = {f.name for f in fields(GenerationConfig)}
    assert {o.name for o in OPTIONS if o.target == "generation"} <= names


# --------------------------------------------------------------------------- precedence
def _config_file(tmp_path, rows, pick) -> Path:
    tree: dict = {}
    for o in rows:
        group, _, key = o.config_key.rpartition(".")
        node = tree.setdefault(group, {}) if group else tree
        node[key] = pick(o)
    f = tmp_path / "run.yaml"
    f.write_text(json.dumps(tree))
    return f


@pytest.mark.parametrize("command", COMMANDS)
def test_an_explicit_flag_wins_even_at_its_default_value(command, tmp_path):
    """Every default-valued flag given explicitly beats a --config file (and key=value) that
    sets another value: "given" is known from argparse, not guessed from the value."""
    rows = [o for o in options_for(command) if o.config_key and o.default is not None]
    assert rows
    f = _config_file(tmp_path, rows, probe)
    argv = ["--config", str(f)]
    for o in rows:
        argv += [f"--{o.name}", str(o.default)]
    args = args_for(command, *argv)
    assert {o.name: getattr(args, o.name) for o in rows} == {o.name: o.default for o in rows}
    assert all(args.option_sources[o.name] == "flag" for o in rows)
    # and key=value over the config, for every key
    over = args_for(command, "--config", str(f), *[f"{o.config_key}={o.default}" for o in rows])
    assert {o.name: getattr(over, o.name) for o in rows} == {o.name: o.default for o in rows}


@pytest.mark.parametrize("command", COMMANDS)
def test_precedence_flag_override_config_preset_default(command, tmp_path):
    o_flag, o_over, o_cfg, o_preset = (BY_NAME[n] for n in ("temperature", "seed", "use_cache", "sampler"))
    f = tmp_path / "c.yaml"
    f.write_text("generation: {temperature: 0.3, seed: 5, use_cache: prefix}\nsampler: {threshold: 0.8}\n")
    args = args_for(command, "--preset", "fast_dllm", "--config", str(f), "generation.temperature=0.4",
                    "generation.seed=7", "--temperature", "0.0")
    assert args.temperature == 0.0 and args.option_sources[o_flag.name] == "flag"
    assert args.seed == 7 and args.option_sources[o_over.name] == "override"
    assert args.use_cache == "prefix" and args.option_sources[o_cfg.name] == "config"
    assert args.sampler == "threshold" and args.option_sources[o_preset.name] == "preset"  # fast_dllm's
    assert args.threshold == 0.8  # the config file over the preset's 0.9
    assert args.top_p is None and args.option_sources["top_p"] == "default"


def test_the_issue_example_runs_confidence_without_cache(tiny_llada_dir, capsys):
    from unmask.cli import main

    rc = main(["sample", "--model_name_or_path", str(tiny_llada_dir), "--prompt", "ab", "--chat_template", "False",
               "--preset", "fast_dllm", "model=null", "generation.max_new_tokens=8", "generation.block_size=4",
               "--sampler", "confidence", "--use_cache", "none", "--json"])
    assert rc == 0
    cfg = json.loads(capsys.readouterr().out)["config"]
    assert cfg["sampler"]["name"] == "confidence" and cfg["generation"]["use_cache"] == "none"


def test_a_higher_source_steps_or_tokens_per_step_replaces_the_other():
    args = args_for("sample", "--preset", "fast_dllm", "--tokens_per_step", "2")
    assert args.tokens_per_step == 2 and args.steps is None
    args = args_for("sample", "--preset", "fast_dllm", "generation.tokens_per_step=2")
    assert args.tokens_per_step == 2 and args.steps is None
    # from the same source both are kept, and the engine refuses the pair
    both = args_for("sample", "--steps", "2", "--tokens_per_step", "2")
    from unmask.decoding.engine import GenerationConfig

    with pytest.raises(UnmaskError, match="either steps or tokens_per_step"):
        GenerationConfig(**values(both, "generation")).validate()


def test_unknown_key_gets_a_did_you_mean():
    with pytest.raises(UnmaskError, match="did you mean 'generation.steps'"):
        parse_args(["sample", "generation.stepz=3"])
    with pytest.raises(UnmaskError, match="did you mean 'decode.tau_r'"):
        parse_args(["eval", "decode.tau_rr=0.5"])


# --------------------------------------------------------------------------- help
@pytest.mark.parametrize("command", RUN_COMMANDS)
def test_help_shows_presets_config_overrides_and_defaults(command):
    sub = next(a for a in build_parser()._actions if getattr(a, "choices", None) and command in a.choices)
    text = " ".join(sub.choices[command].format_help().split())
    assert "--preset" in text and "group.key=value" in text
    if command != "sweep":
        assert "--config" in text and "[default: confidence]" in text
    if command == "compare":
        assert "[default: 200]" in text


# --------------------------------------------------------------------------- docs
def test_the_options_reference_is_up_to_date():
    assert (ROOT / "docs" / "options.md").read_text() == markdown(), \
        "regenerate: python -m unmask.options > docs/options.md"



def test_a_command_added_the_old_way_gets_the_rows_and_the_precedence():
    """A subcommand module that calls add_model_flags + add_sampling_flags(p) (as before the
    table) still builds, and its flags resolve like sample's."""
    from unmask.cli import _Parser, add_model_flags, add_sampling_flags
    from unmask.config import layers
    from unmask.options import resolve

    root = _Parser(prog="unmask")
    p = root.add_subparsers(dest="command", parser_class=_Parser).add_parser("newcmd")
    add_model_flags(p)
    add_sampling_flags(p)
    args = root.parse_args(["newcmd", "--model_name_or_path", "m", "--temperature", "0.0"])
    resolve(args, "newcmd", layers("fast_dllm", None, ["generation.seed=4"]))
    assert (args.model_name_or_path, args.temperature, args.seed, args.sampler) == ("m", 0.0, 4, "threshold")
