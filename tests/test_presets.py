"""Presets, config files and key=value overrides (unmask/config.py via the CLI)."""

from __future__ import annotations

import json

import pytest

from unmask.cli import main
from unmask.config import load_preset, preset_names


def test_presets_lists_every_shipped_preset(capsys):
    assert main(["presets", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = {r["name"] for r in rows}
    assert {"fast_dllm", "dream", "lockstep", "llada_gsm8k", "infogain_gsm8k", "infogain_seed"} <= names
    fast = next(r for r in rows if r["name"] == "fast_dllm")["settings"]
    assert fast["sampler.threshold"] == 0.9 and fast["generation.use_cache"] == "dual"
    assert fast["generation.block_size"] == 32
    seed = load_preset("infogain_seed")
    assert seed["sampler"] == {"name": "info_gain", "candidate_number": 8, "position_temperature": 0.2,
                               "threshold": 0.8}
    assert (seed["generation"]["max_new_tokens"], seed["generation"]["steps"]) == (512, 256)
    assert load_preset("lockstep")["decode"] == {"mode": "gauss_seidel", "tau_r": 0.9, "tau_a": 0.92,
                                                 "max_fill_frac": 0.4}


def test_presets_text(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in preset_names())


def _sample(args, capsys, model_dir):
    rc = main(["sample", "--model_name_or_path", str(model_dir), "--prompt", "ab", "--chat_template", "False",
               "--json", *args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_preset_with_overrides_is_applied_and_recorded(tiny_llada_dir, capsys):
    rc, out, _ = _sample(["--preset", "fast_dllm", "model=null", "generation.max_new_tokens=8",
                          "generation.block_size=4", "generation.steps=2", "sampler.threshold=0.5"],
                         capsys, tiny_llada_dir)
    assert rc == 0
    d = json.loads(out)
    cfg = d["config"]
    assert cfg["sampler"]["name"] == "threshold" and cfg["sampler"]["threshold"] == 0.5
    assert cfg["generation"]["use_cache"] == "dual" and cfg["generation"]["compat"] == "fast_dllm"
    assert cfg["generation"]["max_new_tokens"] == 8
    assert cfg["_source"]["preset"] == "fast_dllm"
    assert len(d["token_ids"]) <= 8


def test_explicit_flag_beats_preset_and_override(tiny_llada_dir, capsys):
    rc, out, _ = _sample(["--preset", "fast_dllm", "model=null", "generation.max_new_tokens=8",
                          "generation.block_size=4", "--threshold", "0.7", "sampler.threshold=0.5"],
                         capsys, tiny_llada_dir)
    assert rc == 0
    assert json.loads(out)["config"]["sampler"]["threshold"] == 0.7


def test_config_file(tiny_llada_dir, tmp_path, capsys):
    f = tmp_path / "run.yaml"
    f.write_text("sampler: {name: margin}\ngeneration: {max_new_tokens: 6, steps: 3}\n")
    rc, out, _ = _sample(["--config", str(f)], capsys, tiny_llada_dir)
    assert rc == 0
    d = json.loads(out)
    assert d["config"]["sampler"]["name"] == "margin" and d["nfe"] == 3


@pytest.mark.parametrize("args,match", [
    (["generation.stepz=3"], "unknown config key 'generation.stepz'"),
    (["generation.steps=abc"], "config key 'generation.steps': bad value 'abc'"),
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["generation.compat=fastdllm"], "unknown compat item 'fastdllm'"),
])
def test_bad_key_or_value_is_one_line_exit_2(args, match, tiny_llada_dir, capsys):
    rc, _, err = _sample(args, capsys, tiny_llada_dir)
    assert rc == 2
    assert match in err and err.count("\n") == 1


def test_bad_config_file_is_one_line(tiny_llada_dir, tmp_path, capsys):
    f = tmp_path / "bad.yaml"
    f.write_text("sampler: [1, 2\n")
    rc, _, err = _sample(["--config", str(f)], capsys, tiny_llada_dir)
    assert rc == 2 and err.startswith("error: config file") and err.count("\n") == 1


def test_eval_records_resolved_config(tmp_path, capsys):
    rc = main(["eval", "--model_name_or_path", "tiny-multiply", "--limit", "2", "--output_dir", str(tmp_path),
               "--json", "sampler.name=margin", "eval.batch_size=2"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["config"]["resolved"]["sampler"]["name"] == "margin"
    assert summary["config"]["resolved"]["_source"]["overrides"] == ["sampler.name=margin", "eval.batch_size=2"]
    run_cfg = json.loads(next(tmp_path.rglob("config.json")).read_text())
    assert run_cfg["resolved_config"]["eval"]["batch_size"] == 2


def test_lockstep_keys_of_a_preset_reach_sample(tiny_dream_dir, capsys):
    """decode.* maps onto the lockstep flags."""
    # lockstep needs its regions: [R]/[A] markers in the prompt (the later --prompt wins)
    rc, out, err = _sample(["--preset", "lockstep", "model=null", "generation.max_new_tokens=8", "--prompt",
                            "a [R] b [A]", "decode.reasoning_tokens=4", "decode.answer_tokens=2"], capsys,
                           tiny_dream_dir)
    assert rc == 0, err
    assert json.loads(out)["config"]["decode"]["mode"] == "gauss_seidel"
    assert json.loads(out)["lockstep"]["mode"] == "gauss_seidel"


def test_sweep_layers_preset_under_yaml_and_overrides_over_it(tmp_path, capsys):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"output_dir: {tmp_path / 'out'}\nlimit: 2\nbatch_size: 2\nmodels: [tiny-multiply]\n"
                     "tasks: [auto]\nsamplers: [confidence]\ncommon: {temperature: 0.3}\n")
    rc = main(["sweep", str(sweep), "--json", "--preset", "fast_dllm", "generation.max_new_tokens=null",
               "generation.block_size=null", "generation.steps=null", "generation.use_cache=none",
               "sampler.threshold=0.7"])
    assert rc == 0
    row = json.loads(capsys.readouterr().out)["rows"][0]
    assert row["status"] == "ran"
    cfg = row["config"]
    assert cfg["generation"]["temperature"] == 0.3  # the YAML beats the preset (0.0)
    assert cfg["generation"]["compat"] == "fast_dllm" and "max_new_tokens" not in cfg["generation"]
    assert cfg["sampler"]["threshold"] == 0.7  # an override beats the preset (0.9)
    assert cfg["_source"]["preset"] == "fast_dllm"
    run_cfg = json.loads(next((tmp_path / "out").rglob("config.json")).read_text())
    assert run_cfg["resolved_config"]["generation"]["use_cache"] == "none"


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_is_valid(name):
    """Each shipped preset passes the key check, names a real sampler, task and compat mode, and
    its decoding settings pass GenerationConfig.validate."""
    from unmask.config import layers
    from unmask.decoding.engine import GenerationConfig
    from unmask.samplers.base import make_sampler
    from unmask.tasks.benchmarks.registry import task_names

    layers(name, None, [])  # every key is a known option
    tree = load_preset(name)
    assert tree["description"]
    sampler = tree["sampler"]
    make_sampler(sampler["name"], **{k: v for k, v in sampler.items() if k != "name"})
    gen = {k: v for k, v in tree.get("generation", {}).items() if k != "chat_template"}
    GenerationConfig(**gen).validate()
    if "eval" in tree:
        assert tree["eval"]["task"] in task_names()
