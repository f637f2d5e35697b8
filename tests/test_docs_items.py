"""Places where the docs and the code disagreed (issue 32, items 3-6 and 9-11): one test each."""

from __future__ import annotations

import pytest
from tiny import write_task_model

from unmask import generate
from unmask.cli import main
from unmask.errors import UnmaskError
from unmask.session import Session


# ---------------------------------------------------------------- item 5: no silent zero score
@pytest.mark.parametrize("model", ["tiny-multiply", "tiny-judge", "tiny-sudoku", "tiny-nae-sat"])
def test_score_refuses_what_cannot_be_a_completion(model):
    s = Session.load(model)
    item = s.task.make_dataset(1, seed=0)[0]
    out = generate(s.model, [s.task_prompt_ids(item)], "leftright", max_new_tokens=0,
                   suppress_token_ids=tuple(s.task.suppressed_ids()))
    assert out.generated[0] == []  # a task model's answer is the canvas
    with pytest.raises(UnmaskError, match="out.sequences"):
        s.task.score(item, out.generated[0])
    with pytest.raises(UnmaskError, match="cannot score"):
        s.task.score(item, out.sequences[0][:5])
    with pytest.raises(UnmaskError, match="empty text"):
        s.task.score(item, "")
    scores = s.task.score(item, out.sequences[0])  # the canvas (with or without BOS) scores
    assert scores == s.task.score(item, out.sequences[0][1:]) and "correct" in scores


# ---------------------------------------------------------------- item 6: progress on stderr
def test_compare_progress_goes_to_stderr_not_the_table(tmp_path, capsys):
    folder = write_task_model(tmp_path / "m", "multiply")
    assert main(["compare", "--task", "multiply", "--model_name_or_path", str(folder), "--n", "4",
                 "--samplers", "random,confidence"]) == 0
    cap = capsys.readouterr()
    assert "random: 4/4" in cap.err and "confidence: 4/4" in cap.err
    assert "4/4" not in cap.out and "random" in cap.out  # stdout: the table only


# ---------------------------------------------------------------- item 11: one prompt rule
def test_cli_accepts_the_short_task_prompts_the_server_accepts(capsys):
    import json

    assert main(["sample", "--model_name_or_path", "tiny-multiply", "--prompt", "12*34=", "--sampler", "leftright",
                 "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["answer"].startswith("12*34=") and len(d["answer"]) == 10
    s = Session.load("tiny-multiply")
    assert s.task_item("12*34=") == s.task_item(" 12*34=????\n") == {"puzzle": "12*34=????"}
    assert s.task_item("") == s.task_item(None)  # empty: the built-in example, as in the server
    assert main(["sample", "--model_name_or_path", "tiny-multiply", "--prompt", "12*34=123456"]) == 2
    assert "at most 10 characters" in capsys.readouterr().err


# ---------------------------------------------------------------- item 3: stale tiny-judge statements
def test_train_help_and_eval_table_list_every_synthetic_task(capsys):
    import re
    from pathlib import Path

    from unmask.models.registry import BUILTIN
    from unmask.tasks.synthetic import task_names

    root = Path(__file__).resolve().parent.parent
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    table = (root / "docs" / "evaluation.md").read_text()
    first_cells = " ".join(line.split("|")[1] for line in table.splitlines() if line.startswith("| `"))
    for name in task_names():
        assert re.search(rf"task name: .*\b{name}\b", help_text), f"train --help does not list {name}"
        assert f"`{name}`" in first_cells, f"docs/evaluation.md's task table has no {name} row"
    readme = (root / "README.md").read_text()
    for model in BUILTIN:  # every built-in model ships: no "no tiny-x shipped yet" left behind
        assert not re.search(rf"no {model} shipped", readme)


# ---------------------------------------------------------------- item 10: training outputs
def test_train_outputs_permissions_card_title_and_threads_on_resume(tmp_path, capsys):
    import torch

    from unmask.train.trainer import main as train_main

    tiny = ["--task", "multiply", "--n_layers", "1", "--d_model", "16", "--n_heads", "2", "--batch_size", "8",
            "--warmup_steps", "1", "--log_every", "2", "--eval_every", "100", "--eval_size", "8", "--decode_eval", "4",
            "--max_steps", "4"]
    out = tmp_path / "my-multiply"
    try:
        assert train_main([*tiny, "--out", str(out), "--threads", "1", "--stop_at_step", "2"]) == 0
        assert train_main(["--out", str(out), "--resume"]) == 0  # no --threads: the run's value is kept
        assert "threads=1" in [ln for ln in capsys.readouterr().out.splitlines() if "start_step=2" in ln][0]
        ckpt = torch.load(out / "ckpt.pt", weights_only=False)
        assert ckpt["step"] == 4 and ckpt["config"]["threads"] == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(1)
    model = out / "model"
    modes = {p.name: p.stat().st_mode & 0o777 for p in model.iterdir()}
    assert modes["model.safetensors"] == modes["config.json"] == modes["task.json"], modes
    assert (model / "MODEL_CARD.md").read_text().startswith("# my-multiply: ")


# ---------------------------------------------------------------- item 9: pictures
def _capture_figures(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figs, real = [], Figure.savefig

    def savefig(self, *a, **k):
        figs.append(self)
        self.canvas.draw()
        return real(self, *a, **k)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return figs


def test_max_frames_counts_the_frames_after_the_first():
    from unmask.viz.pictures import frame_schedule

    for n, m in [(25, 10), (10, 4), (7, 7), (3, 10), (1000, 200)]:
        b = frame_schedule(n, m)
        assert b[0] == 0 and b[-1] == n and len(b) - 1 == min(n, m), (n, m, b)
        assert all(x < y for x, y in zip(b, b[1:]))


def test_order_png_has_distinct_swatches_and_whole_step_ticks(tmp_path, monkeypatch):
    from unmask.viz.pictures import FILLED_RGB, MASKED_RGB

    assert sum((a - b) ** 2 for a, b in zip(FILLED_RGB, MASKED_RGB)) ** 0.5 > 80
    trace = tmp_path / "t.json"
    assert main(["sample", "--model_name_or_path", "tiny-multiply", "--sampler", "leftright", "--save_trace",
                 str(trace)]) == 0
    figs = _capture_figures(monkeypatch)
    assert main(["viz", str(trace), "--out", str(tmp_path / "o.png")]) == 0
    labels = [t.get_text().replace("\u2212", "-") for f in figs for ax in f.axes for t in ax.get_yticklabels()]
    assert labels and all(lbl == "" or float(lbl).is_integer() for lbl in labels), labels


def test_sweep_plot_legend_beside_the_panel_and_identical_series_distinct(tmp_path, monkeypatch):
    from unmask.eval.plots import plot_accuracy_vs_nfe, plot_entropy_vs_accuracy

    rows = [{"model": "m", "task": "t", "sampler": s, "mean_nfe": nfe, "accuracy": 1.0, "accuracy_stderr": 0.0,
             "mean_cumulative_entropy": 0.5, "metrics": ""} for s in ("a", "b", "c") for nfe in (4, 8)]
    figs = _capture_figures(monkeypatch)
    plot_accuracy_vs_nfe(rows, tmp_path / "a.png")
    plot_entropy_vs_accuracy(rows, tmp_path / "e.png")
    for fig in figs:
        ax = fig.axes[0]
        legend, box = ax.get_legend().get_window_extent(), ax.get_window_extent()
        assert legend.x0 >= box.x1, "the legend covers the lines"
        lines = [h[0] if isinstance(h, tuple) else h for h in ax.get_legend_handles_labels()[0]]
        styles = {(ln.get_marker(), ln.get_linestyle(), ln.get_markersize()) for ln in lines}
        assert len(styles) == 3, styles


def test_an_offline_network_failure_names_what_it_tried(monkeypatch, capsys):
    requests = pytest.importorskip("requests")
    import unmask.eval.runner as runner

    def offline(spec):
        raise requests.exceptions.ConnectionError(
            "HTTPSConnectionPool(host='huggingface.co', port=443): Max retries exceeded with url: "
            "/api/datasets/openai/gsm8k (Caused by NameResolutionError('Failed to resolve'))")

    monkeypatch.setattr(runner, "run_eval", offline)
    assert main(["eval", "--model_name_or_path", "tiny-sudoku", "--task", "gsm8k"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: no network")
    assert "huggingface.co/api/datasets/openai/gsm8k" in err and "Offline" in err


def test_a_cancelled_stream_wait_leaves_no_pending_task():
    """Starlette cancels a streaming response's task when the client leaves; the queue read that
    Watch.next started must be cancelled with it (it outlived the request and showed up at
    shutdown as asyncio's 'Task was destroyed but it is pending!')."""
    import asyncio
    import contextlib
    from types import SimpleNamespace

    pytest.importorskip("starlette")
    from unmask.serve.app import Watch

    class Request:
        async def receive(self):
            await asyncio.Event().wait()  # the client never says it left

    async def scenario():
        job = SimpleNamespace(events=asyncio.Queue(), finished=False)
        async with Watch(Request(), job, SimpleNamespace(cancel=lambda j: None)) as watch:
            waiting = asyncio.ensure_future(watch.next())
            await asyncio.sleep(0.01)
            waiting.cancel()  # what Starlette does on a disconnect
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
        await asyncio.sleep(0.01)
        return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    assert asyncio.run(scenario()) == []
