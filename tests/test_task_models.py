"""Task models (built-in tiny-* layout) through `unmask sample`: built-in example, user puzzles,
answer checking. Uses random-weight stand-ins so the test does not depend on training."""

import json

import pytest
from tiny import write_task_model

from unmask.cli import main

PUZZLE = "530070000600195000098000060800060003400803001700020006060000280000419005000080079"


@pytest.mark.parametrize("task", ["sudoku", "multiply", "nae_sat"])
def test_builtin_example_json(tmp_path, capsys, task):
    folder = write_task_model(tmp_path / task, task)
    assert main(["sample", "--model_name_or_path", str(folder), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["task"] == task and isinstance(d["correct"], bool)
    assert 1 not in d["token_ids"]  # no mask left
    assert d["nfe"] == len(d["order"])  # default: one token per step, one forward per step
    if task == "multiply":
        assert "product_first" in d and d["answer"][2] == "*" and d["answer"][5] == "="


def test_user_sudoku_keeps_givens(tmp_path, capsys):
    folder = write_task_model(tmp_path / "s", "sudoku")
    assert main(["sample", "--model_name_or_path", str(folder), "--prompt", PUZZLE, "--sampler", "margin",
                 "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert all(p == "0" or p == a for p, a in zip(PUZZLE, d["answer"]))
    assert len(d["order"]) == PUZZLE.count("0")


def test_bad_task_prompts(tmp_path, capsys):
    folder = write_task_model(tmp_path / "s", "sudoku")
    assert main(["sample", "--model_name_or_path", str(folder), "--prompt", "12345x"]) == 2
    assert "not a Sudoku puzzle" in capsys.readouterr().err
    folder = write_task_model(tmp_path / "m", "multiply")
    assert main(["sample", "--model_name_or_path", str(folder), "--prompt", "12*34=123456"]) == 2
    assert "multiply prompt has at most 10 characters" in capsys.readouterr().err
    assert main(["sample", "--model_name_or_path", str(folder), "--prompt", "12*34=????"]) == 0
    assert "12*34=" in capsys.readouterr().out


def test_text_output_shows_grid_and_figures(tmp_path, capsys):
    folder = write_task_model(tmp_path / "s", "sudoku")
    assert main(["sample", "--model_name_or_path", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "------+-------+------" in out and "correct:" in out and "[nfe=" in out


def test_decoder_never_writes_blank_markers(tmp_path, capsys):
    """'0' and '.' are in the Sudoku alphabet (puzzle texts use them) but never valid answers."""
    folder = write_task_model(tmp_path / "s", "sudoku", seed=3)
    for sampler in ("confidence", "random", "info_gain"):
        assert main(["sample", "--model_name_or_path", str(folder), "--sampler", sampler, "--temperature", "1.5",
                     "--json"]) == 0
        d = json.loads(capsys.readouterr().out)
        assert set(d["answer"]) <= set("123456789")
