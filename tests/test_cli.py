import json
import subprocess
import sys

import pytest

from unmask.cli import main


def run_cli(*args):
    proc = subprocess.run([sys.executable, "-m", "unmask.cli", *args], capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def test_sample_json(tiny_llada_dir, capsys):
    rc = main(["sample", "--model_name_or_path", str(tiny_llada_dir), "--prompt", "what is 2+2?",
               "--max-new-tokens", "8", "--steps", "4", "--chat_template", "False", "--json"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    for key in ("text", "token_ids", "nfe", "forward_rows", "forward_tokens", "cumulative_entropy", "seconds", "order"):
        assert key in d
    assert d["nfe"] == 4 and len(d["order"]) <= 8
    assert d["forward_tokens"] % 4 == 0 and d["forward_tokens"] >= 4 * 8  # 4 forwards over the whole canvas
    assert all(len(o) == 3 for o in d["order"])


def test_sample_text_with_chat_template_and_kebab_flags(tiny_dream_dir, capsys):
    rc = main(["sample", "--model-name-or-path", str(tiny_dream_dir), "--prompt", "hi", "--max_new_tokens", "6",
               "--sampler", "threshold", "--threshold", "0.5", "--use-cache", "dual", "--block-size", "3"])
    assert rc == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("[nfe=")


@pytest.mark.parametrize("args,match", [
    (["--sampler", "nope"], "unknown sampler 'nope'"),
    (["--block_size", "0"], "block_size must be > 0"),
    (["--steps", "0"], "steps must be > 0"),
    (["--temperature", "-1"], "temperature must be >= 0"),
    (["--top_p", "1.5"], "top_p must be in (0, 1]"),
    (["--sampler", "threshold", "--threshold", "1.5"], "threshold must be in (0, 1]"),
    (["--max_new_tokens", "5000"], "exceeds the model's context"),
])
def test_bad_input_one_line_exit_2(tiny_llada_dir, capsys, args, match):
    rc = main(["sample", "--model_name_or_path", str(tiny_llada_dir), "--prompt", "hi", *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert match in err and err.count("\n") == 1 and err.startswith("error:")


def test_unknown_alias_and_empty_folder(tmp_path, capsys):
    assert main(["sample", "--model_name_or_path", "not-a-model", "--prompt", "x"]) == 2
    assert "unknown model 'not-a-model'" in capsys.readouterr().err
    assert main(["sample", "--model_name_or_path", str(tmp_path), "--prompt", "x"]) == 2
    assert "has no config.json" in capsys.readouterr().err


def test_argparse_errors_are_one_line():
    rc, out, err = run_cli("sample", "--steps", "abc")
    assert rc == 2 and err.count("\n") == 1 and "invalid int value" in err


def test_info_gain_flags_as_the_seeds_spell_them(tiny_llada_dir, capsys):
    rc = main(["sample", "--model_name_or_path", str(tiny_llada_dir), "--prompt", "abc", "--chat_template", "False",
               "--max_new_tokens", "8", "--sampler", "info_gain", "--variant", "lookum", "--use_cache", "prefix",
               "--threshold", "0.9", "--candidate_number", "4", "--position_temperature", "0.1",
               "--hnext_scope", "block", "--cost_reduction", "mean", "--beam_size", "2", "--json"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert len(d["order"]) >= 1 and d["nfe"] >= 1
    rc = main(["sample", "--model_name_or_path", str(tiny_llada_dir), "--prompt", "abc", "--chat_template", "False",
               "--max_new_tokens", "8", "--sampler", "info_gain", "--candidate_number", "0"])
    assert rc == 2 and "candidate_number must be >= 1" in capsys.readouterr().err


def test_kebab_case_everywhere():
    from unmask.cli import normalize_flags

    assert normalize_flags(["train", "--max-steps", "5", "--task-param=n-x=3", "-1"]) == [
        "train", "--max_steps", "5", "--task_param=n-x=3", "-1"]
