"""Pictures of lockstep traces: where the reasoning (R) and answer (A) regions are, and how fast
each one filled.

A lockstep trace carries its region spans (``Trace.regions``, row-local) and, per commit, every
region's fill fraction (``StepRecord.fill``). :func:`unmask.viz.pictures.save_lockstep_picture` draws the usual
step-by-position heat map with R and A marked, and under it the fill fraction of each region per
step, with the step at which A was first committed. The GIF frames and the live terminal view use
:data:`REGION_RGB` / :func:`region_summary` to label the regions the same way.
"""

from __future__ import annotations

from ..decoding.lockstep import fill_curves, lockstep_metrics
from ..decoding.trace import Trace

#: R orange, A blue (distinct from the viridis step colours of the cells)
REGION_RGB = {"R": (230, 120, 20), "A": (40, 110, 220)}


def has_regions(trace: Trace) -> bool:
    return bool(trace.regions) and any(s.region for s in trace.steps)


def region_of(trace: Trace, pos: int) -> str | None:
    for name, (s, e) in trace.regions.items():
        if s <= pos < e:
            return name
    return None


def region_summary(trace: Trace, upto: int | None = None) -> str:
    """``R 40% · A 25%``: each region's fill after the commits of steps < ``upto`` (all: None)."""
    fill: dict[str, float] = {name: 0.0 for name in trace.regions}
    for st in trace.steps:
        if st.fill and (upto is None or st.step < upto):
            fill.update(st.fill)
    return " · ".join(f"{name} {100 * v:.0f}%" for name, v in fill.items())


def mark_regions(ax, trace: Trace) -> None:
    """Shade and label the R/A columns of a heat map axis (x = canvas position)."""
    for name, (s, e) in trace.regions.items():
        rgb = [c / 255 for c in REGION_RGB.get(name, (120, 120, 120))]
        ax.axvspan(s - 0.5, e - 0.5, ymin=0.985, ymax=1.0, color=rgb, clip_on=False)
        ax.axvline(s - 0.5, color=rgb, linewidth=1.2)
        ax.axvline(e - 0.5, color=rgb, linewidth=1.2)
        ax.text((s + e - 1) / 2, 0.975, name, transform=ax.get_xaxis_transform(), ha="center", va="top",
                fontsize=10, fontweight="bold", color=rgb,
                bbox={"facecolor": "white", "edgecolor": rgb, "boxstyle": "round,pad=0.2"})


def draw_fill_rates(ax, trace: Trace) -> None:
    """Per step, the fraction of each region filled; A's first commit and the 50% line marked."""
    curves = fill_curves(trace)
    met = lockstep_metrics(trace)
    for name, ys in curves.items():
        rgb = [c / 255 for c in REGION_RGB.get(name, (120, 120, 120))]
        ax.step(range(len(ys) + 1), ys + ys[-1:], where="post", color=rgb, linewidth=2, label=f"{name} filled")
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    if met["a_first_step"] is not None:
        ax.axvline(met["a_first_step"], color=[c / 255 for c in REGION_RGB["A"]], linestyle="--", linewidth=1)
        note = "premature" if met["premature_answer"] else "after R"
        ax.text(met["a_first_step"], 0.03, f" A first at step {met['a_first_step']} "
                f"(R {100 * (met['r_fill_at_a_first'] or 0):.0f}%: {note})", fontsize=8, va="bottom")
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel("step")
    ax.set_ylabel("fraction filled")
    ax.set_title(f"per-region fill rate · {met['steps']} steps, NFE {met['nfe']} "
                 f"({met['nfe_per_step']:.2f} per step)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
