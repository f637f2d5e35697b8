"""Progress and Weights & Biases logging, in one place for sample, compare, eval, sweep and rl.

wandb is optional (the ``wandb`` extra) and imported only when a run asks for it (``--wandb``);
every command logs to the same default project (:data:`unmask.options.WANDB_DEFAULT_PROJECT`),
so the runs of one study end up side by side.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from .errors import UnmaskError
from .options import WANDB_DEFAULT_PROJECT


def _wandb():
    try:
        import wandb
    except ImportError:
        raise UnmaskError("--wandb needs the wandb package: pip install wandb") from None
    return wandb


def start(project: str | None, name: str, config: dict[str, Any], run_id: str | None = None):
    """A W&B run (resumed when ``run_id`` names an existing one, as an eval resumes)."""
    kw: dict[str, Any] = {"project": project or WANDB_DEFAULT_PROJECT, "name": name, "config": config}
    if run_id is not None:
        kw.update(id=run_id, resume="allow")
    return _wandb().init(**kw)


def numbers(row: dict[str, Any]) -> dict[str, float]:
    """The numeric figures of a row (what W&B can chart)."""
    return {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def log_rows(project: str | None, name: str, config: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """One run with one logged step per row (sample: one row; compare: one per sampler)."""
    run = start(project, name, config)
    for row in rows:
        run.log(numbers(row))
    run.finish()


def rich_progress(transient: bool = True):
    """The one look of unmask's progress bars (description, bar, count, elapsed, ETA) on stderr,
    not started; eval, rl and sweep add their tasks to it."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), console=Console(stderr=True), transient=transient)


def progress_bar(label: str, total: int):
    """A rich progress bar on stderr (count, rate and ETA) and its ``advance(n)``; ``(None, None)``
    when stderr is not a terminal (logs and tests stay plain) or ``UNMASK_NO_PROGRESS`` is set."""
    if not sys.stderr.isatty() or os.environ.get("UNMASK_NO_PROGRESS"):
        return None, None
    prog = rich_progress()
    tid = prog.add_task(label, total=total)
    prog.start()
    return prog, lambda n: prog.advance(tid, n)
