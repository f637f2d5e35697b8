"""Sweep plots (matplotlib, Agg backend so no display is needed): accuracy vs mean NFE per
sampler, and accuracy vs mean cumulative entropy. One panel per task.

Where every row of a task also reports one partial-credit metric (a sweep row's ``metrics`` cell,
e.g. NAE-SAT's ``obs_accuracy`` or Sudoku's ``cell_accuracy``), the accuracy-vs-NFE panel draws it
as a dotted line in the same colour: on NAE-SAT whole-canvas accuracy is 0 for most samplers and
the panel would otherwise show nothing but a flat line."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _panels(rows: Sequence[dict[str, Any]]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in rows})
    n = max(1, len(tasks))
    fig, axes = plt.subplots(1, n, figsize=(6.4 * n, 3.8), squeeze=False)  # room for the legends
    return plt, fig, tasks, axes[0]


def _parse_metrics(cell: Any) -> dict[str, float]:
    """``"a=0.5 b=1"`` (the sweep table's metrics cell) or a dict -> ``{"a": 0.5, "b": 1.0}``."""
    if isinstance(cell, dict):
        return {str(k): float(v) for k, v in cell.items()}
    out: dict[str, float] = {}
    for part in str(cell or "").split():
        key, _, value = part.partition("=")
        try:
            out[key] = float(value)
        except ValueError:
            continue
    return out


def _partial_metric(rows: Sequence[dict[str, Any]]) -> str | None:
    """The one metric every row reports, if there is exactly one."""
    names = [set(_parse_metrics(r.get("metrics"))) for r in rows]
    common = set.intersection(*names) if names else set()
    return next(iter(common)) if len(common) == 1 else None


#: one (marker, line style, marker size) per series: two series with the same values (common on the
#: tiny tasks, e.g. several samplers at 100%) stay visible, a larger hollow marker around a smaller one
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
LINESTYLES = ("-", "--", "-.", ":")


def series_style(i: int) -> dict[str, Any]:
    return {"marker": MARKERS[i % len(MARKERS)], "linestyle": LINESTYLES[i % len(LINESTYLES)],
            "markersize": max(3.0, 9.0 - 0.6 * i), "markerfacecolor": "none"}


def _legend_outside(ax) -> None:
    """The legend beside the panel, never over the lines."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def _series_label(r: dict[str, Any], many_models: bool) -> str:
    return f"{r['model']} / {r['sampler']}" if many_models else str(r["sampler"])


def plot_accuracy_vs_nfe(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Accuracy (with its standard error) against mean NFE; one line per sampler (and model),
    points ordered by NFE, e.g. the tokens_per_step settings of a sweep."""
    plt, fig, tasks, axes = _panels(rows)
    many_models = len({r["model"] for r in rows}) > 1
    for ax, task in zip(axes, tasks):
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            if r["task"] == task:
                groups[_series_label(r, many_models)].append(r)
        metric = _partial_metric([r for rs in groups.values() for r in rs])
        for i, (label, rs) in enumerate(sorted(groups.items())):
            rs = sorted(rs, key=lambda r: r["mean_nfe"])
            style = series_style(i)
            line = ax.errorbar([r["mean_nfe"] for r in rs], [r["accuracy"] for r in rs],
                               yerr=[r["accuracy_stderr"] for r in rs], capsize=3, label=label, **style)
            if metric is not None:
                ax.plot([r["mean_nfe"] for r in rs], [_parse_metrics(r["metrics"])[metric] for r in rs],
                        linestyle=(0, (2, 2)), marker=style["marker"], markersize=3, color=line[0].get_color())
        ax.set_title(task)
        ax.set_xlabel("mean NFE per sample")
        ax.set_ylabel("accuracy" if metric is None else f"accuracy, {metric} (small markers, dotted)")
        ax.grid(alpha=0.3)
        _legend_outside(ax)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_entropy_vs_accuracy(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Accuracy against mean cumulative entropy of the decoding trajectories, one marker colour
    per sampler: does a sampler that commits less uncertainty score higher?"""
    plt, fig, tasks, axes = _panels(rows)
    many_models = len({r["model"] for r in rows}) > 1
    for ax, task in zip(axes, tasks):
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            if r["task"] == task:
                groups[_series_label(r, many_models)].append(r)
        for i, (label, rs) in enumerate(sorted(groups.items())):
            style = series_style(i)
            ax.plot([r["mean_cumulative_entropy"] for r in rs], [r["accuracy"] for r in rs], label=label,
                    linestyle="none", marker=style["marker"], markersize=style["markersize"], markerfacecolor="none")
        ax.set_title(task)
        ax.set_xlabel("mean cumulative entropy")
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
        _legend_outside(ax)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
