"""Pictures of saved decoding traces (``unmask sample --save_trace T.json``).

* :func:`save_gif`: an animation of the canvas filling step by step. Cells are positions; a
  masked cell is grey, a decoded cell is coloured by the step that decoded it and shows its
  token, the cells decoded in the frame's step get a red frame. One trace gives one animation;
  several traces are drawn side by side on a shared step clock.
* :func:`save_order_picture`: a static picture of the decoding order. For text, a heatmap with
  position across and step down: after step t the positions decoded so far are coloured by their
  decode step, so left-to-right decoding is a clean staircase and confidence-first decoding
  shows where the model jumped. For a grid task (Sudoku: ``[BOS]`` + 81 cells) the 9x9 board is
  drawn with each cell coloured by its decode step.
* :func:`save_comparison`: two or more traces of the same prompt side by side (shared colour
  scale) above their cumulative-entropy curves, which is how a user sees why one order is better.

GIF frames are drawn with Pillow (a core dependency); the static pictures use matplotlib
(``pip install unmask[plots]``) through its object API, so no global pyplot state is touched.
Every picture has a size fixed by its layout (see :func:`gif_frame_size`,
:func:`static_figure_size`), never by the fonts available on the machine.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..decoding.trace import Trace
from ..errors import UnmaskError
from .regions import REGION_RGB, draw_fill_rates, mark_regions, region_summary

# ---------------------------------------------------------------------------- layout constants
CELL_W, CELL_H = 46, 26  # text cell (px)
GRID_CELL = 40  # Sudoku cell (px)
MARGIN = 10
HEADER = 46
GAP = 16  # between side-by-side panels of a comparison GIF
STATIC_SINGLE = (10.0, 5.0)  # inches; heatmap of one trace
STATIC_GRID = (7.0, 6.0)  # inches; one Sudoku board
STATIC_COMPARE_W, STATIC_COMPARE_H = 6.0, 9.0  # inches per trace (width) and total height
MAX_TRACES = 4

MASKED_RGB = (228, 228, 228)
GIVEN_RGB = (255, 255, 255)
FILLED_RGB = (250, 200, 140)  # light orange: told apart from the grey of still masked
NEW_OUTLINE = (220, 30, 30)
BG_RGB = (255, 255, 255)
TEXT_DARK = (30, 30, 30)
TEXT_GREY = (120, 120, 120)

# viridis sampled at 0, 1/8, ..., 1: enough anchors that linear interpolation is indistinguishable
_VIRIDIS = [(68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141),
            (39, 173, 129), (92, 200, 99), (170, 220, 50), (253, 231, 37)]


def viridis(x: float) -> tuple[int, int, int]:
    """Colour of ``x`` in [0, 1] on the viridis scale (matplotlib's default, so the GIF and the
    static pictures agree without the GIF needing matplotlib)."""
    x = min(1.0, max(0.0, float(x))) * (len(_VIRIDIS) - 1)
    i = min(int(x), len(_VIRIDIS) - 2)
    f = x - i
    a, b = _VIRIDIS[i], _VIRIDIS[i + 1]
    return tuple(round(a[k] + (b[k] - a[k]) * f) for k in range(3))  # type: ignore[return-value]


def _text_on(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """Dark text on light fills, white text on dark ones."""
    lum = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return TEXT_DARK if lum > 140 else (255, 255, 255)


# ---------------------------------------------------------------------------- loading
@dataclass
class TraceFile:
    """A saved trace and what was stored beside it (text, prompt, task fields ...)."""

    path: Path
    trace: Trace
    label: str
    meta: dict[str, Any] = field(default_factory=dict)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_trace(trace: Trace, path: Path) -> None:
    """A hand-edited trace with text where numbers belong would fail deep inside the drawing."""
    canvas = list(trace.final_tokens or []) or list(trace.initial_tokens or [])
    if not all(_is_int(t) for t in canvas):
        raise UnmaskError(f"{path}: unreadable trace (token lists must hold integers)")
    for r in trace.tokens:
        if not (_is_int(r.step) and _is_int(r.position) and _is_int(r.token)) or r.step < 0:
            raise UnmaskError(f"{path}: unreadable trace (bad token record {r})")
        if canvas and not 0 <= r.position < len(canvas):
            raise UnmaskError(f"{path}: unreadable trace (position {r.position} outside a canvas of {len(canvas)})")


def load_trace_file(path: str | Path, label: str | None = None) -> TraceFile:
    """Read a file written by ``unmask sample --save_trace`` (or a bare ``Trace.to_dict()``).
    The label is, in order: ``label``, the file's ``label``/``sampler`` field, the file name."""
    path = Path(path)
    if not path.exists():
        raise UnmaskError(f"trace file {path} does not exist")
    from ..userio import read_text

    try:
        data = json.loads(read_text(path, "trace file"))
    except json.JSONDecodeError as e:
        raise UnmaskError(f"{path} is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise UnmaskError(f"{path} does not hold a trace (expected a JSON object)")
    raw = data.get("trace", data if "tokens" in data else None)
    if not isinstance(raw, dict) or "tokens" not in raw:
        raise UnmaskError(f"{path} has no trace; write one with `unmask sample --save_trace {path.name}`")
    try:
        trace = Trace.from_dict(raw)
    except (TypeError, KeyError, ValueError, AttributeError, IndexError) as e:
        raise UnmaskError(f"{path}: unreadable trace ({e})") from None
    _check_trace(trace, path)
    meta = {k: v for k, v in data.items() if k != "trace"} if "trace" in data else {}
    name = label or meta.get("label") or meta.get("sampler") or path.stem
    return TraceFile(path=path, trace=trace, label=str(name), meta=meta)


# ---------------------------------------------------------------------------- order
@dataclass
class Order:
    """A trace in the terms every picture uses (all positions are row-local canvas indices)."""

    region: list[int]  # positions drawn, ascending
    decode_step: dict[int, int]  # position -> step that committed it
    masked: set[int]  # every position that was a mask in the initial canvas
    given: set[int]  # positions of the region that were never masked
    filled: set[int]  # masked positions set without a record (EOS fill / stop)
    n_steps: int
    initial: list[int]
    final: list[int]
    commits: list[tuple[int, int, int, float]]  # (step, position, token, entropy) in commit order


def decoding_order(trace: Trace) -> Order:
    """Which position was decoded when. The mask id is read off the canvas (the initial token at
    any committed position), so no tokenizer or model is needed."""
    initial = list(trace.initial_tokens)
    final = list(trace.final_tokens) or list(initial)
    commits = [(r.step, r.position, r.token, r.entropy) for r in trace.tokens]
    decode_step: dict[int, int] = {}
    for step, pos, _, _ in commits:
        decode_step.setdefault(pos, step)
    mask_ids = {initial[p] for p in decode_step if 0 <= p < len(initial)}
    masked = {p for p, t in enumerate(initial) if t in mask_ids} | set(decode_step)
    if not masked:
        raise UnmaskError("the trace has no decoded positions")
    lo, hi = min(masked), max(masked)
    if trace.max_new_tokens > 0 and lo >= trace.prompt_length:
        lo, hi = trace.prompt_length, max(hi, len(initial) - 1)
    region = list(range(lo, hi + 1))
    given = {p for p in region if p not in masked}
    filled = {p for p in masked if p not in decode_step}
    n_steps = max([s for s, *_ in commits] + [st.step for st in trace.steps] + [0]) + 1
    return Order(region=region, decode_step=decode_step, masked=masked, given=given, filled=filled, n_steps=n_steps,
                 initial=initial, final=final, commits=commits)


def grid_side(tf: TraceFile, grid: str | int | None = "auto") -> int:
    """Side of the board to draw (0 = draw text). ``auto``: 9 for Sudoku, recognised by the
    file's ``task`` field or by the canvas shape ([BOS] + 81 cells, no generation region)."""
    if grid not in (None, "auto"):
        try:
            n = int(grid)
        except ValueError:
            raise UnmaskError(f"--grid must be auto, 0 or a board side such as 9, got {grid!r}") from None
        if n < 0 or (n and n * n > len(tf.trace.initial_tokens)):
            raise UnmaskError(f"--grid {n}: the canvas has only {len(tf.trace.initial_tokens)} positions")
        return n
    tr = tf.trace
    if str(tf.meta.get("task", "")).lower() == "sudoku":
        return 9
    if tr.max_new_tokens == 0 and len(tr.initial_tokens) == 82:
        return 9
    return 0


# ---------------------------------------------------------------------------- token text
TokenLabeler = Callable[[int], str]


def make_labeler(tfs: Sequence[TraceFile], model_name_or_path: str | None = None) -> TokenLabeler:
    """How a token id is written in a cell: with the given model's tokenizer; else with the
    task's character table (files from built-in task models, Sudoku boards); else as the id."""
    cache: dict[int, str] = {}
    if model_name_or_path:
        from ..models.registry import resolve_model_path
        from ..tokenizer import load_tokenizer

        tok = load_tokenizer(resolve_model_path(model_name_or_path))

        def decode(t: int) -> str:
            return tok.decode([t], skip_special_tokens=False)
    else:
        table = _task_table(tfs)

        def decode(t: int) -> str:
            return table.get(t, str(t)) if table else str(t)

    def label(t: int) -> str:
        if t not in cache:
            cache[t] = decode(int(t))
        return cache[t]

    return label


def _task_table(tfs: Sequence[TraceFile]) -> dict[int, str]:
    """id -> character of a built-in task's tokenizer (ids depend only on the task alphabet)."""
    names = {str(tf.meta.get("task")) for tf in tfs if tf.meta.get("task")}
    if not names and all(grid_side(tf) == 9 for tf in tfs):
        names = {"sudoku"}
    if len(names) != 1:
        return {}
    try:
        from ..tasks.synthetic import get_task

        return dict(get_task(names.pop()).id_chars)
    except Exception:  # noqa: BLE001 - unknown task or tasks package missing: fall back to ids
        return {}


# ---------------------------------------------------------------------------- GIF
def _font(size: int, bold: bool = False):
    """DejaVu Sans when present (wide Unicode coverage), else Pillow's built-in font."""
    from PIL import ImageFont

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    try:
        return ImageFont.truetype(name, size)
    except OSError:
        pass
    try:
        import matplotlib

        return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), size)
    except (ImportError, OSError):
        return ImageFont.load_default(size=size)


def gif_frame_size(n_cells: int, grid: int = 0, columns: int = 16) -> tuple[int, int]:
    """Pixel size of one trace's GIF frame: a board of ``grid`` x ``grid`` cells, or ``n_cells``
    text cells in rows of ``columns``."""
    if grid:
        return 2 * MARGIN + grid * GRID_CELL, HEADER + grid * GRID_CELL + 2 * MARGIN
    cols = max(1, min(columns, n_cells))
    rows = math.ceil(n_cells / cols)
    return 2 * MARGIN + cols * CELL_W, HEADER + rows * CELL_H + 2 * MARGIN


def frame_schedule(n_steps: int, max_frames: int) -> list[int]:
    """Step boundaries of the frames: frame k shows every commit with step < bounds[k]. The
    first frame is the initial canvas; then one frame per step, or, for a longer decoding,
    exactly ``max_frames`` frames that each group consecutive steps as evenly as possible (a
    ceil-sized chunk would give fewer frames than asked: 9 for 25 steps and ``--max_frames 10``)."""
    if max_frames < 1:
        raise UnmaskError(f"max_frames must be >= 1, got {max_frames}")
    if n_steps <= 0:
        return [0, 0]
    frames = min(n_steps, max_frames)
    return [k * n_steps // frames for k in range(frames + 1)]


def _fit(draw, text: str, font, width: int) -> str:
    """``text`` shortened with an ellipsis to fit ``width`` pixels; newlines and tabs shown as
    visible marks so a cell stays one line."""
    text = text.replace("\n", "↵").replace("\t", "→").replace("\r", "")
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


class _FrameDrawer:
    """Draws the frames of one trace; all frames share the layout and colour scale."""

    def __init__(self, tf: TraceFile, labeler: TokenLabeler, grid: int, columns: int, n_colour_steps: int) -> None:
        self.tf = tf
        self.order = decoding_order(tf.trace)
        self.labeler = labeler
        self.grid = grid
        self.columns = columns
        self.scale = max(1, n_colour_steps - 1)
        if grid:
            self.cells = list(range(len(self.order.initial) - grid * grid, len(self.order.initial)))
        else:
            self.cells = self.order.region
        self.size = gif_frame_size(len(self.cells), grid, columns)
        self.font = _font(14 if grid else 11)
        self.font_head = _font(13, bold=True)
        self.font_small = _font(11)
        self.region_of = {p: name for name, (s, e) in tf.trace.regions.items() for p in range(s, e)}

    def _cell_box(self, i: int) -> tuple[int, int, int, int]:
        if self.grid:
            r, c = divmod(i, self.grid)
            x0, y0, w, h = MARGIN + c * GRID_CELL, HEADER + MARGIN + r * GRID_CELL, GRID_CELL, GRID_CELL
        else:
            cols = max(1, min(self.columns, len(self.cells)))
            r, c = divmod(i, cols)
            x0, y0, w, h = MARGIN + c * CELL_W, HEADER + MARGIN + r * CELL_H, CELL_W, CELL_H
        return x0, y0, x0 + w - 1, y0 + h - 1

    def draw(self, upto: int, since: int, last: bool):
        """The canvas after every commit with step < ``upto``; commits in [since, upto) are new."""
        from PIL import Image, ImageDraw

        o = self.order
        img = Image.new("RGB", self.size, BG_RGB)
        d = ImageDraw.Draw(img)
        decoded = {p: s for p, s in o.decode_step.items() if s < upto}
        committed_tokens = {p: t for s, p, t, _ in o.commits if s < upto}
        entropy = sum(h for s, _, _, h in o.commits if s < upto)
        for i, pos in enumerate(self.cells):
            x0, y0, x1, y1 = self._cell_box(i)
            text, fill = "", MASKED_RGB
            if pos not in o.masked:
                fill, text = GIVEN_RGB, self.labeler(o.initial[pos])
                colour = TEXT_GREY if not self.grid else TEXT_DARK
            elif pos in decoded:
                fill = viridis(decoded[pos] / self.scale)
                text, colour = self.labeler(committed_tokens.get(pos, o.final[pos])), _text_on(fill)
            elif last and pos in o.filled:
                fill, text, colour = FILLED_RGB, self.labeler(o.final[pos]), TEXT_GREY
            else:
                colour = TEXT_GREY
            d.rectangle((x0 + 1, y0 + 1, x1 - 1, y1 - 1), fill=fill)
            if text:
                text = _fit(d, text, self.font, x1 - x0 - 4)
                d.text(((x0 + x1) / 2, (y0 + y1) / 2), text, font=self.font, fill=colour, anchor="mm")
            if pos in decoded and decoded[pos] >= since and upto > 0:
                d.rectangle((x0, y0, x1, y1), outline=NEW_OUTLINE, width=3)
            name = self.region_of.get(pos)
            if name is not None:  # lockstep: a coloured bar and the region's letter under the cell
                d.rectangle((x0 + 1, y1 - 3, x1 - 1, y1), fill=REGION_RGB.get(name, TEXT_GREY))
                if pos == self.tf.trace.regions[name][0]:
                    d.text((x0 + 2, y0 + 1), name, font=self.font_small, fill=REGION_RGB.get(name, TEXT_GREY))
        if self.grid:
            self._board_lines(d)
        n_dec = sum(1 for p in self.cells if p in decoded)
        n_mask = sum(1 for p in self.cells if p in o.masked)
        head = _fit(d, self.tf.label, self.font_head, self.size[0] - 2 * MARGIN)
        d.text((MARGIN, 6), head, font=self.font_head, fill=TEXT_DARK)
        info = f"step {min(upto, o.n_steps)}/{o.n_steps}   decoded {n_dec}/{n_mask}   cum. entropy {entropy:.2f}"
        if self.region_of:
            info += "   " + region_summary(self.tf.trace, upto)
        d.text((MARGIN, 26), _fit(d, info, self.font_small, self.size[0] - 2 * MARGIN), font=self.font_small,
               fill=TEXT_GREY)
        return img

    def _board_lines(self, d) -> None:
        n = self.grid
        box = int(round(math.sqrt(n)))
        x0, y0 = MARGIN, HEADER + MARGIN
        for k in range(n + 1):
            w = 3 if box * box == n and k % box == 0 else 1
            colour = TEXT_DARK if w == 3 else (170, 170, 170)
            d.line((x0 + k * GRID_CELL, y0, x0 + k * GRID_CELL, y0 + n * GRID_CELL), fill=colour, width=w)
            d.line((x0, y0 + k * GRID_CELL, x0 + n * GRID_CELL, y0 + k * GRID_CELL), fill=colour, width=w)


def save_gif(
    tfs: Sequence[TraceFile],
    out: str | Path,
    labeler: TokenLabeler | None = None,
    grid: str | int | None = "auto",
    columns: int = 16,
    max_frames: int = 200,
    frame_ms: int = 150,
    hold_ms: int = 2000,
) -> dict[str, Any]:
    """Write the animation; returns ``{"size", "frames"}``. Frames = 1 (initial canvas) + one
    per step, or per group of steps when there are more than ``max_frames`` steps. Several
    traces are drawn side by side on a shared step clock (the shorter one waits at its end)."""
    from PIL import Image

    _check_count(tfs)
    labeler = labeler or make_labeler(tfs)
    sides = [grid_side(tf, grid) for tf in tfs]
    orders_steps = [decoding_order(tf.trace).n_steps for tf in tfs]
    longest = max(orders_steps)
    drawers = [_FrameDrawer(tf, labeler, side, columns, longest) for tf, side in zip(tfs, sides)]
    bounds = frame_schedule(longest, max_frames)
    width = sum(dr.size[0] for dr in drawers) + GAP * (len(drawers) - 1)
    height = max(dr.size[1] for dr in drawers)
    frames = []
    for k, upto in enumerate(bounds):
        since = bounds[k - 1] if k else 0
        last = k == len(bounds) - 1
        canvas = Image.new("RGB", (width, height), BG_RGB)
        x = 0
        for dr in drawers:
            canvas.paste(dr.draw(upto, since, last or upto >= dr.order.n_steps), (x, 0))
            x += dr.size[0] + GAP
        frames.append(canvas)
    durations = [frame_ms] * len(frames)
    durations[-1] = max(frame_ms, hold_ms)
    frames = _shared_palette(frames)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # every frame differs (the step counter changes), so Pillow's duplicate merging never drops one
    frames[0].save(out, save_all=True, append_images=frames[1:], duration=durations, loop=0, optimize=False)
    return {"size": (width, height), "frames": len(frames)}


def _shared_palette(frames: list) -> list:
    """Quantize every frame to one palette taken from the first and last frames (which between
    them hold every colour drawn) plus swatches of the key colours. Pillow would otherwise build a palette per frame: slow (most of
    the time of a long GIF), and unchanged pixels would change index between frames, which defeats
    the GIF's changed-region-only frames and multiplies the file size."""
    from PIL import Image

    first, last = frames[0], frames[-1]
    keys = [NEW_OUTLINE, BG_RGB, MASKED_RGB, FILLED_RGB, TEXT_DARK, TEXT_GREY] + [viridis(i / 15) for i in range(16)]
    band = max(8, first.height // 4)  # large swatches, so median cut keeps the exact key colours
    sample = Image.new("RGB", (first.width, first.height + last.height + band), BG_RGB)
    sample.paste(first, (0, 0))
    sample.paste(last, (0, first.height))
    step = first.width / len(keys)
    for i, rgb in enumerate(keys):
        sample.paste(rgb, (round(i * step), first.height + last.height, round((i + 1) * step), sample.height))
    palette = sample.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    return [f.quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]


# ---------------------------------------------------------------------------- static pictures
def static_figure_size(n_traces: int, grid: bool, dpi: int = 100) -> tuple[int, int]:
    """Pixel size of :func:`save_order_picture` (one trace) or :func:`save_comparison`."""
    if n_traces > 1:
        w, h = STATIC_COMPARE_W * n_traces, STATIC_COMPARE_H
    else:
        w, h = STATIC_GRID if grid else STATIC_SINGLE
    return round(w * dpi), round(h * dpi)


def _matplotlib():
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure
    except ImportError:
        raise UnmaskError("static pictures need matplotlib: pip install 'unmask[plots]' (GIFs work without it)") from None
    return Figure


def _stats_line(tf: TraceFile, order: Order) -> str:
    tr = tf.trace
    parts = [f"{order.n_steps} steps", f"NFE {tr.nfe}", f"cum. entropy {tr.cumulative_entropy:.2f}"]
    if "correct" in tf.meta:
        parts.append("correct" if tf.meta["correct"] else "wrong")
    return " · ".join(parts)


def _heatmap_rgb(order: Order, vmax: int):
    """RGB image [steps, positions] of the staircase: cell (t, p) is p's colour once decoded."""
    import numpy as np

    steps, cols = order.n_steps, len(order.region)
    img = np.empty((steps, cols, 3), dtype=np.float32)
    img[:] = np.array(MASKED_RGB, dtype=np.float32) / 255
    scale = max(1, vmax - 1)
    for j, pos in enumerate(order.region):
        if pos in order.given:
            img[:, j] = np.array(GIVEN_RGB) / 255
        elif pos in order.decode_step:
            s = order.decode_step[pos]
            img[s:, j] = np.array(viridis(s / scale)) / 255
        elif pos in order.filled:
            img[-1:, j] = np.array(FILLED_RGB) / 255
    return img


def _draw_heatmap(fig, ax, tf: TraceFile, order: Order, vmax: int, colorbar: bool = True) -> None:
    img = _heatmap_rgb(order, vmax)
    lo, hi = order.region[0], order.region[-1]
    ax.imshow(img, aspect="auto", interpolation="nearest",
              extent=(lo - 0.5, hi + 0.5, order.n_steps - 0.5, -0.5))
    # the decode moment itself, as a dot at the top of each column's colour
    xs = [p for p in order.decode_step if lo <= p <= hi]
    ax.plot(xs, [order.decode_step[p] for p in xs], marker="s", color="black", linestyle="none",
            markersize=max(1.0, min(4.0, 300 / len(order.region))))
    origin = f" (generation starts at {tf.trace.prompt_length})" if lo == tf.trace.prompt_length else ""
    ax.set_xlabel("position" + origin)
    ax.set_ylabel("step")
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"{tf.label}\n{_stats_line(tf, order)}", fontsize=10)
    if colorbar:
        _colorbar(fig, ax, vmax)
    handles = _legend_handles(order)
    if handles:
        ax.legend(handles=handles, loc="lower left", fontsize=8, framealpha=0.9)


def _legend_handles(order: Order) -> list:
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=[c / 255 for c in MASKED_RGB], edgecolor="grey", label="still masked")]
    if order.given:
        handles.append(Patch(facecolor="white", edgecolor="grey", label="given"))
    if order.filled:
        handles.append(Patch(facecolor=[c / 255 for c in FILLED_RGB], edgecolor="grey", label="filled after stop"))
    return handles


def _colorbar(fig, ax, vmax: int) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.ticker import MaxNLocator

    sm = ScalarMappable(norm=Normalize(0, max(1, vmax - 1)), cmap="viridis")
    bar = fig.colorbar(sm, ax=ax, label="step at which the position was decoded")
    bar.locator = MaxNLocator(integer=True)  # steps are whole numbers: no 0.5 ticks on short decodings
    bar.update_ticks()


def _draw_board(fig, ax, tf: TraceFile, order: Order, side: int, vmax: int, labeler: TokenLabeler,
                colorbar: bool = True) -> None:
    import numpy as np

    first = len(order.initial) - side * side
    scale = max(1, vmax - 1)
    img = np.ones((side, side, 3), dtype=np.float32)
    for i in range(side * side):
        pos = first + i
        r, c = divmod(i, side)
        if pos in order.decode_step:
            img[r, c] = np.array(viridis(order.decode_step[pos] / scale)) / 255
        elif pos in order.masked:
            img[r, c] = np.array(MASKED_RGB) / 255
    ax.imshow(img, interpolation="nearest", extent=(-0.5, side - 0.5, side - 0.5, -0.5))
    for i in range(side * side):
        pos = first + i
        r, c = divmod(i, side)
        token = order.final[pos] if pos < len(order.final) else order.initial[pos]
        if pos in order.decode_step:
            fg = [v / 255 for v in _text_on(viridis(order.decode_step[pos] / scale))]
            ax.text(c, r + 0.08, labeler(token), ha="center", va="center", fontsize=14, color=fg)
            ax.text(c + 0.42, r - 0.42, str(order.decode_step[pos]), ha="right", va="top", fontsize=6, color=fg)
        else:
            ax.text(c, r + 0.08, labeler(token), ha="center", va="center", fontsize=14, color="black",
                    fontweight="bold")
    box = int(round(math.sqrt(side)))
    for k in range(side + 1):
        lw = 2.5 if box * box == side and k % box == 0 else 0.5
        ax.axhline(k - 0.5, color="black", linewidth=lw)
        ax.axvline(k - 0.5, color="black", linewidth=lw)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{tf.label}\n{_stats_line(tf, order)}", fontsize=10)
    if colorbar:
        _colorbar(fig, ax, vmax)


def save_order_picture(tf: TraceFile, out: str | Path, labeler: TokenLabeler | None = None,
                       grid: str | int | None = "auto", dpi: int = 100) -> dict[str, Any]:
    """The decoding order of one trace: a step-by-position heatmap, or the board for grids."""
    Figure = _matplotlib()
    labeler = labeler or make_labeler([tf])
    side = grid_side(tf, grid)
    order = decoding_order(tf.trace)
    w, h = STATIC_GRID if side else STATIC_SINGLE
    fig = Figure(figsize=(w, h), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    if side:
        _draw_board(fig, ax, tf, order, side, order.n_steps, labeler)
    else:
        _draw_heatmap(fig, ax, tf, order, order.n_steps)
    return _save_figure(fig, out, dpi)


def save_comparison(tfs: Sequence[TraceFile], out: str | Path, labeler: TokenLabeler | None = None,
                    grid: str | int | None = "auto", dpi: int = 100) -> dict[str, Any]:
    """Traces of the same prompt side by side on one colour scale, and below them the
    cumulative entropy against the number of tokens decoded: the lower curve found the order
    the model was surer about."""
    _check_count(tfs)
    if len(tfs) < 2:
        raise UnmaskError("a comparison needs two or more traces")
    Figure = _matplotlib()
    labeler = labeler or make_labeler(tfs)
    orders = [decoding_order(tf.trace) for tf in tfs]
    sides = [grid_side(tf, grid) for tf in tfs]
    vmax = max(o.n_steps for o in orders)
    n = len(tfs)
    fig = Figure(figsize=(STATIC_COMPARE_W * n, STATIC_COMPARE_H), dpi=dpi, layout="constrained")
    gs = fig.add_gridspec(2, n, height_ratios=[3, 2])
    axes = [fig.add_subplot(gs[0, i]) for i in range(n)]
    for i, (tf, order, side) in enumerate(zip(tfs, orders, sides)):
        last = i == n - 1
        if side:
            _draw_board(fig, axes[i], tf, order, side, vmax, labeler, colorbar=last)
        else:
            _draw_heatmap(fig, axes[i], tf, order, vmax, colorbar=last)
            if tf.trace.regions:
                mark_regions(axes[i], tf.trace)
    ax = fig.add_subplot(gs[1, :])
    for tf, order in zip(tfs, orders):
        xs, ys, total = [0], [0.0], 0.0
        for k, (_, _, _, h) in enumerate(order.commits, start=1):
            total += h
            xs.append(k)
            ys.append(total)
        ax.step(xs, ys, where="post", linewidth=2,
                label=f"{tf.label}: {total:.2f} nats, {order.n_steps} steps, NFE {tf.trace.nfe}")
    ax.set_xlabel("tokens decoded")
    ax.set_ylabel("cumulative entropy (nats)")
    ax.set_title("uncertainty paid along the way (lower = a more confident order)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    return _save_figure(fig, out, dpi)


def _save_figure(fig, out: str | Path, dpi: int) -> dict[str, Any]:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)  # no bbox_inches="tight": the pixel size stays what the layout says
    w, h = fig.get_size_inches()
    return {"size": (round(w * dpi), round(h * dpi)), "frames": 1}


def save_lockstep_picture(tf, out: str | Path, dpi: int = 100) -> dict[str, Any]:
    """Heat map with R and A marked (top) and the per-step fill rate of each region (bottom). It lives
    here, not in :mod:`.regions`, so that the region helpers never import the picture module."""
    Figure = _matplotlib()
    order = decoding_order(tf.trace)
    w, h = STATIC_SINGLE
    fig = Figure(figsize=(w, h * 1.5), dpi=dpi, layout="constrained")
    gs = fig.add_gridspec(2, 1, height_ratios=[3, 2])
    ax = fig.add_subplot(gs[0])
    _draw_heatmap(fig, ax, tf, order, order.n_steps)
    mark_regions(ax, tf.trace)
    draw_fill_rates(fig.add_subplot(gs[1]), tf.trace)
    return _save_figure(fig, out, dpi)


def _check_count(tfs: Sequence[TraceFile]) -> None:
    if not tfs:
        raise UnmaskError("no trace given")
    if len(tfs) > MAX_TRACES:
        raise UnmaskError(f"at most {MAX_TRACES} traces fit side by side, got {len(tfs)}")


STATIC_SUFFIXES = (".png", ".jpg", ".jpeg", ".svg", ".pdf")


def render(paths: Sequence[str | Path], out: str | Path, labels: Sequence[str] | None = None,
           model_name_or_path: str | None = None, grid: str | int | None = "auto", columns: int = 16,
           max_frames: int = 200, frame_ms: int = 150, dpi: int = 100) -> dict[str, Any]:
    """What ``unmask viz`` does: the picture kind follows the output suffix (``.gif`` animates;
    ``.png``/``.svg``/``.pdf``/``.jpg`` draw the order, or a comparison for several traces)."""
    if labels is not None and len(labels) != len(paths):
        raise UnmaskError(f"got {len(labels)} labels for {len(paths)} traces")
    tfs = [load_trace_file(p, labels[i] if labels else None) for i, p in enumerate(paths)]
    suffix = Path(out).suffix.lower()
    if suffix not in (".gif", *STATIC_SUFFIXES):
        raise UnmaskError(f"--out must end in .gif or one of {', '.join(STATIC_SUFFIXES)}, got {Path(out).name!r}")
    from ..userio import check_output_file

    check_output_file(out, "--out")
    labeler = make_labeler(tfs, model_name_or_path)
    if suffix == ".gif":
        return save_gif(tfs, out, labeler, grid=grid, columns=columns, max_frames=max_frames, frame_ms=frame_ms)
    if len(tfs) == 1:
        from .regions import has_regions

        if has_regions(tfs[0].trace) and not grid_side(tfs[0], grid):
            return save_lockstep_picture(tfs[0], out, dpi=dpi)
        return save_order_picture(tfs[0], out, labeler, grid=grid, dpi=dpi)
    return save_comparison(tfs, out, labeler, grid=grid, dpi=dpi)
