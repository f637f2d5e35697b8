import json

import pytest
from tiny import write_task_model

from unmask.cli import main
from unmask.compare import load_items, parse_range, wilson
from unmask.errors import UnmaskError


def test_wilson_interval():
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and 0.2 < hi < 0.35
    lo, hi = wilson(10, 10)
    assert hi == 1.0 and 0.65 < lo < 0.8
    lo, hi = wilson(50, 100)
    assert lo < 0.5 < hi and abs((hi - lo) - 0.19) < 0.01


def test_parse_range():
    assert parse_range("22-27") == (22, 27) and parse_range("30") == (30, 30)
    with pytest.raises(UnmaskError):
        parse_range("30-20")


def test_compare_table_and_json(tmp_path, capsys):
    folder = write_task_model(tmp_path / "m", "multiply")
    assert main(["compare", "--task", "multiply", "--model_name_or_path", str(folder), "--n", "6",
                 "--samplers", "random,confidence,info_gain", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert [r["sampler"] for r in d["rows"]] == ["random", "confidence", "info_gain"]
    for r in d["rows"]:
        assert r["n"] == 6 and 0 <= r["accuracy"] <= 1 and "product_first_rate" in r
        assert r["mean_nfe"] > 0 and r["mean_cumulative_entropy"] > 0
    assert d["rows"][1]["mean_nfe"] == 8  # 8 masked cells, one per step
    # no cache: every forward runs the whole canvas, so forward tokens = NFE x canvas length
    canvas = d["rows"][1]["mean_forward_tokens"] / 8
    assert canvas == int(canvas) and canvas > 8
    assert d["rows"][2]["mean_forward_tokens"] == d["rows"][2]["mean_forward_rows"] * canvas


def test_compare_with_data_file(tmp_path, capsys):
    folder = write_task_model(tmp_path / "s", "sudoku")
    data = tmp_path / "p.jsonl"
    data.write_text(json.dumps({"puzzle": "5300700006001950000980000608000600034008030017000200060600002800004190050000800" + "79"}) + "\n")
    assert main(["compare", "--task", "sudoku", "--model_name_or_path", str(folder), "--data", str(data),
                 "--samplers", "margin"]) == 0
    out = capsys.readouterr().out
    assert "| margin |" in out and "n=1" in out
    assert len(load_items(data)) == 1


def test_compare_errors(tmp_path, capsys):
    folder = write_task_model(tmp_path / "m", "multiply")
    assert main(["compare", "--task", "sudoku", "--model_name_or_path", str(folder)]) == 2
    assert "trained for multiply" in capsys.readouterr().err
    assert main(["compare", "--task", "multiply", "--model_name_or_path", str(folder), "--samplers", "zzz"]) == 2
    assert "unknown sampler" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    assert main(["compare", "--task", "multiply", "--model_name_or_path", str(folder), "--data", str(bad)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_each_item_gets_its_own_seed(tmp_path):
    """Unconditional tasks have identical prompts: a shared seed would decode every item the same."""
    from unmask.compare import run_compare
    from unmask.session import Session

    session = Session.load(str(write_task_model(tmp_path / "m", "multiply")))
    seen = []
    orig = session.generate_ids

    def spy(prompts, sampler, opts, cfg):
        seen.extend(cfg["seed"])
        return orig(prompts, sampler, opts, cfg)

    session.generate_ids = spy
    items = session.task.make_dataset(5, seed=0)
    run_compare(session, items, ["random"], {}, {"temperature": 1.0, "seed": 7}, batch_size=2)
    assert seen == [7, 8, 9, 10, 11]


def test_compare_sudoku_technique(tmp_path, capsys):
    """Sudoku rows break accuracy down by the technique each puzzle needs; --technique filters."""
    folder = write_task_model(tmp_path / "s", "sudoku")
    data = tmp_path / "p.jsonl"
    naked = "530070000600195000098000060800060003400803001700020006060000280000419005000080079"
    inkala = "800000000003600000070090200050007000000045700000100030001000068008500010090000400"
    data.write_text("".join(json.dumps({"puzzle": p}) + "\n" for p in (naked, inkala, naked)))
    base = ["compare", "--task", "sudoku", "--model_name_or_path", str(folder), "--data", str(data),
            "--samplers", "margin"]
    assert main([*base, "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["rows"][0]
    assert row["n"] == 3
    assert {g: n for g, (_, n) in row["by_technique"].items()} == {"naked_singles": 2, "beyond_singles": 1}
    assert sum(k for k, _ in row["by_technique"].values()) == round(row["accuracy"] * 3)
    assert main([*base, "--technique", "beyond_singles"]) == 0
    out = capsys.readouterr().out
    assert "n=1" in out and "solved by technique" in out
    assert "beyond 0/1" in out or "beyond 1/1" in out
    assert main([*base, "--technique", "hidden_singles"]) == 2
    assert "no puzzle" in capsys.readouterr().err
    assert main(["compare", "--task", "multiply", "--technique", "naked_singles"]) == 2
    assert "only applies to --task sudoku" in capsys.readouterr().err
