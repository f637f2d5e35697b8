"""Pictures of traces (GIF, order heatmap, Sudoku board, comparison) and the live terminal view."""

from __future__ import annotations

import io
import json
import random
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from rich.console import Console

from unmask.cli import main
from unmask.decoding.trace import TokenRecord, Trace
from unmask.session import Session
from unmask.viz.live import MASK_GLYPH, LiveView
from unmask.viz.pictures import GAP, decoding_order, frame_schedule, gif_frame_size, static_figure_size

NEW = 10  # tokens generated in the text traces (one per step)


@pytest.fixture(scope="module")
def llada_session(tiny_llada_dir):
    return Session.load(str(tiny_llada_dir))


@pytest.fixture(scope="module")
def text_traces(tiny_llada_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("traces")
    paths = {}
    for sampler in ("confidence", "leftright"):
        path = folder / f"{sampler}.json"
        rc = main(["sample", "--model_name_or_path", str(tiny_llada_dir), "--prompt", "2+2=", "--chat_template",
                   "False", "--max_new_tokens", str(NEW), "--sampler", sampler, "--save_trace", str(path)])
        assert rc == 0
        paths[sampler] = path
    return paths


@pytest.fixture(scope="module")
def sudoku_trace(tmp_path_factory):
    """A hand-made Sudoku trace: [BOS] + 81 cells, 50 blanks decoded in a random order, two per
    step (the pictures only need the trace's shape, not a solver)."""
    from unmask.tasks.sudoku import SudokuTask

    task = SudokuTask()
    item = task.sample(random.Random(1), givens=31)
    initial = task.prompt_ids(item)
    blanks = [i for i, t in enumerate(initial) if t == task.mask_id]
    random.Random(0).shuffle(blanks)
    solution = [task.bos_id] + [task.char_ids[c] for c in item["solution"]]
    tokens = [TokenRecord(step=k // 2, position=p, token=solution[p], confidence=0.9, entropy=0.1 * (k % 3))
              for k, p in enumerate(blanks)]
    trace = Trace(prompt_length=len(initial), max_new_tokens=0, tokens=tokens, nfe=25, forward_rows=25,
                  initial_tokens=initial, final_tokens=solution)
    path = tmp_path_factory.mktemp("sudoku") / "sudoku.json"
    path.write_text(json.dumps({"text": item["solution"], "task": "sudoku", "correct": True, "trace": trace.to_dict()}))
    return path


def _viz(*args: str) -> int:
    return main(["viz", *args])


# --------------------------------------------------------------------------- GIF
def test_gif_has_one_frame_per_step_plus_the_start(text_traces, tmp_path, capsys):
    out = tmp_path / "order.gif"
    assert _viz(str(text_traces["confidence"]), "--out", str(out)) == 0
    assert "wrote" in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.format == "GIF" and im.is_animated
        assert im.n_frames == NEW + 1
        assert im.size == gif_frame_size(NEW, 0, 16)


def test_gif_groups_steps_when_there_are_too_many(text_traces, tmp_path):
    out = tmp_path / "short.gif"
    assert _viz(str(text_traces["leftright"]), "--out", str(out), "--max_frames", "4", "--columns", "4") == 0
    with Image.open(out) as im:
        assert im.n_frames == len(frame_schedule(NEW, 4)) == 5  # start + 4 groups of 2-3 steps
        assert im.size == gif_frame_size(NEW, 0, 4)


def test_comparison_gif_is_side_by_side(text_traces, tmp_path):
    out = tmp_path / "compare.gif"
    assert _viz(str(text_traces["confidence"]), str(text_traces["leftright"]), "--out", str(out)) == 0
    w, h = gif_frame_size(NEW, 0, 16)
    with Image.open(out) as im:
        assert im.size == (2 * w + GAP, h) and im.n_frames == NEW + 1


def test_sudoku_gif_draws_the_board(sudoku_trace, tmp_path):
    out = tmp_path / "sudoku.gif"
    assert _viz(str(sudoku_trace), "--out", str(out)) == 0
    with Image.open(out) as im:
        assert im.size == gif_frame_size(81, 9) and im.n_frames == 25 + 1


# --------------------------------------------------------------------------- static pictures
def test_order_heatmap_png(text_traces, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "order.png"
    assert _viz(str(text_traces["confidence"]), "--out", str(out), "--dpi", "50") == 0
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == static_figure_size(1, grid=False, dpi=50) == (500, 250)


def test_sudoku_board_png_and_comparison(sudoku_trace, text_traces, tmp_path):
    pytest.importorskip("matplotlib")
    board = tmp_path / "board.png"
    assert _viz(str(sudoku_trace), "--out", str(board), "--dpi", "50") == 0
    with Image.open(board) as im:
        assert im.size == static_figure_size(1, grid=True, dpi=50)
    compare = tmp_path / "compare.png"
    assert _viz(str(text_traces["confidence"]), str(text_traces["leftright"]), "--out", str(compare),
                "--labels", "confidence", "left-to-right", "--dpi", "50") == 0
    with Image.open(compare) as im:
        assert im.size == static_figure_size(2, grid=False, dpi=50) == (600, 450)


def test_decoding_order_reads_the_trace(text_traces):
    data = json.loads(text_traces["leftright"].read_text())
    order = decoding_order(Trace.from_dict(data["trace"]))
    gen = [p for p in order.region if p in order.decode_step]
    assert order.region[0] == data["trace"]["prompt_length"] and len(order.region) == NEW
    assert [order.decode_step[p] for p in gen] == list(range(len(gen)))  # left to right


@pytest.mark.parametrize("args,match", [
    (["--out", "x.bmp"], "--out must end in .gif"),
    (["--out", "x.png", "--labels", "a", "b"], "got 2 labels for 1 traces"),
    (["--out", "x.gif", "--grid", "12"], "--grid 12"),
])
def test_bad_viz_input_is_one_error_line(text_traces, tmp_path, capsys, args, match):
    args = [a.replace("x.", str(tmp_path / "x.")) for a in args]
    assert _viz(str(text_traces["confidence"]), *args) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1


def test_missing_or_traceless_file(tmp_path, capsys):
    assert _viz(str(tmp_path / "nope.json"), "--out", str(tmp_path / "a.gif")) == 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"text": "hi"}))
    assert _viz(str(bad), "--out", str(tmp_path / "a.gif")) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "has no trace" in err


# --------------------------------------------------------------------------- live view
@pytest.mark.parametrize("overrides", [{}, {"block_size": 4, "use_cache": "prefix", "steps": 5}])
def test_live_view_draws_and_matches_the_trace(llada_session, overrides):
    session = llada_session
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=100)
    ids = session.encode_prompt("hi", chat_template=True)
    with LiveView(session, console=console, max_fps=0) as view:
        assert "predict" in session.model.__dict__  # the forward counter is installed ...
        out = session.generate_ids([ids], "confidence", {}, {"max_new_tokens": 12, **overrides, **view.overrides})
    assert "predict" not in session.model.__dict__  # ... and removed again
    trace = out.traces[0]
    assert view.nfe == trace.nfe and view.step == len(trace.steps)
    assert view.cumulative_entropy == pytest.approx(trace.cumulative_entropy, rel=1e-5)
    drawn = buf.getvalue()
    assert "\x1b[" in drawn and "NFE" in drawn and "cumulative entropy" in drawn and MASK_GLYPH in drawn


def test_live_view_is_inert_when_stdout_is_not_a_terminal(llada_session):
    session = llada_session
    buf = io.StringIO()
    with LiveView(session, console=Console(file=buf)) as view:
        assert view.overrides == {}
        assert "predict" not in session.model.__dict__
    assert buf.getvalue() == ""


def test_live_view_draws_a_sudoku_board():
    from unmask.tasks.sudoku import SudokuTask

    task = SudokuTask()
    item = task.sample(random.Random(2), givens=40)
    canvas = torch.tensor([task.prompt_ids(item)])
    fake = SimpleNamespace(
        model=SimpleNamespace(config=SimpleNamespace(mask_token_id=task.mask_id, pad_token_id=0)),
        tokenizer=task.tokenizer, task=task, stop_token_ids=lambda: [2],
    )
    view = LiveView(fake, console=Console(file=io.StringIO(), force_terminal=True))
    view.hook(None, canvas, None)
    first_blank = int((canvas[0] == task.mask_id).nonzero()[0])
    canvas[0, first_blank] = task.char_ids["5"]
    view.hook(0, canvas, None)
    assert view.new_positions == {first_blank} and view.step == 1
    console = Console(file=io.StringIO(), width=60, record=True)
    console.print(view.render())
    text = console.export_text()
    assert text.count("------+-------+------") == 2
    assert text.count(MASK_GLYPH) == 81 - 40 - 1
