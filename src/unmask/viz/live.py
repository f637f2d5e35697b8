"""A live terminal view of a generation: the canvas is redrawn as it is unmasked.

:class:`LiveView` turns the engine's ``tokens_hook`` (called after every step with the whole
canvas) into a `rich <https://rich.readthedocs.io>`_ ``Live`` display: masked positions are dim
placeholders, the tokens committed by the latest step are highlighted, and a header shows the
step counter, the number of model forwards (NFE) and the cumulative entropy so far.

Usage (what ``unmask sample --visualize`` and ``unmask chat --visualize`` do)::

    with LiveView(session) as view:
        out = session.generate_ids([ids], sampler, options, {**overrides, **view.overrides})

When stdout is not a terminal the view is inert (``view.overrides`` is empty, nothing is drawn),
so piped output stays plain text.

Why the view watches ``model.predict``: the hook receives the canvas and the logits of the active
block, but neither the block's start nor the forward count. While the view is entered it wraps
the session model's ``predict`` (an instance attribute, removed again on exit) to count forwards
and to remember the ``start`` of the window the engine asked for, which locates the committed
positions inside the logits. The figures are a live estimate; the exact ones are in the trace.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.text import Text

MASK_GLYPH = "░"
STOP_GLYPH = "∎"
STYLE_MASK = "grey42"
STYLE_NEW = "bold black on yellow"
STYLE_SPECIAL = "dim"
STYLE_GIVEN = "bold"
REGION_STYLE = {"R": "bold dark_orange", "A": "bold dodger_blue1"}  # lockstep region labels


class LiveView:
    """Redraws one row of the canvas in the terminal while the engine decodes it.

    ``session`` supplies the tokenizer (single token ids are decoded for display), the model's
    mask and stop ids and, for built-in task models, the task (a Sudoku is drawn as a 9x9 grid).
    ``enabled=False`` or a console that is not a terminal makes the view inert. ``transient``
    removes the drawing when the generation ends, so the caller's normal output follows cleanly.
    """

    def __init__(
        self,
        session: Any,
        console: Console | None = None,
        enabled: bool = True,
        transient: bool = True,
        title: str = "decoding",
        max_fps: float = 20.0,
    ) -> None:
        self.session = session
        self.console = console if console is not None else Console()
        self.active = bool(enabled) and self.console.is_terminal
        self.transient = transient
        self.title = title
        self.min_interval = 1.0 / max_fps if max_fps > 0 else 0.0
        cfg = session.model.config
        self.mask_id = int(cfg.mask_token_id)
        self.stop_ids = set(session.stop_token_ids())
        tok = session.tokenizer
        self.special_ids = set(getattr(tok, "all_special_ids", []) or []) if tok is not None else set()
        task = getattr(session, "task", None)
        self.grid = 9 if getattr(task, "name", None) == "sudoku" else 0
        self._text_cache: dict[int, str] = {}
        self._live: Live | None = None
        self._restore: Callable[[], None] | None = None
        self.reset()

    # ------------------------------------------------------------------ state
    def set_regions(self, regions: dict[str, tuple[int, int]]) -> None:
        """Lockstep: label the reasoning/answer regions (canvas coordinates of row 0) and show
        each one's fill in the header."""
        self.regions = {k: (int(s), int(e)) for k, s_e in regions.items() for s, e in [s_e]}

    def reset(self) -> None:
        """Forget the previous generation (a chat reuses one view for every turn)."""
        self.step = 0
        self.nfe = 0
        self.cumulative_entropy = 0.0
        self.canvas: list[int] = []
        self.given: list[bool] = []
        self.new_positions: set[int] = set()
        self.region_start = 0
        self.counting = False
        self._block_start: int | None = None
        self._last_draw = 0.0

    @property
    def overrides(self) -> dict[str, Any]:
        """``GenerationConfig`` fields to merge into the caller's overrides ({} when inert)."""
        return {"tokens_hook": self.hook} if self.active else {}

    # ------------------------------------------------------------------ context
    def __enter__(self) -> LiveView:
        self.reset()
        if self.active:
            self._install_counter()
            self._live = Live(self.render(), console=self.console, auto_refresh=False, transient=self.transient,
                              redirect_stdout=False, redirect_stderr=False)
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._live is not None:
                self._live.update(self.render(), refresh=True)
                self._live.stop()
        finally:
            self._live = None
            if self._restore is not None:
                self._restore()
                self._restore = None

    def _install_counter(self) -> None:
        """Wrap ``model.predict`` to count forwards and record the window start (see module doc)."""
        model = self.session.model
        original = model.predict

        def counting_predict(*args: Any, **kwargs: Any):
            self.nfe += 1
            start = kwargs.get("start", args[3] if len(args) > 3 else 0)
            self._block_start = int(start)
            return original(*args, **kwargs)

        model.predict = counting_predict
        self.counting = True

        def restore() -> None:
            if model.__dict__.get("predict") is counting_predict:
                del model.predict

        self._restore = restore

    # ------------------------------------------------------------------ hook
    def hook(self, step: int | None, x: torch.Tensor, logits: torch.Tensor | None) -> torch.Tensor:
        """The engine's ``tokens_hook``: record what changed in row 0, redraw, return ``x`` as is."""
        row = x[0].tolist()
        if step is None or not self.canvas:
            self._start(row)
        else:
            changed = [p for p, (a, b) in enumerate(zip(self.canvas, row)) if a == self.mask_id and b != self.mask_id]
            self.new_positions = set(changed)
            self.step = step + 1
            if logits is not None and changed:
                self._add_entropy(changed, x.shape[0], logits)
            self.canvas = row
        self._maybe_draw(force=self.mask_id not in self.canvas)
        return x

    def _start(self, row: list[int]) -> None:
        """The initial canvas: decide which part to draw. A plain generation shows only the
        trailing run of masks (the answer); an infilling canvas (masks inside the prompt, e.g.
        a Sudoku) is shown whole, with the givens marked."""
        self.canvas = row
        self.new_positions = set()
        masked = [t == self.mask_id for t in row]
        tail = len(row)
        while tail > 0 and masked[tail - 1]:
            tail -= 1
        infill = any(masked[:tail])
        if infill:
            # skip left padding: the padding id precedes the first real token
            pad_id = getattr(self.session.model.config, "pad_token_id", None)
            start = 0
            while pad_id is not None and start < len(row) - 1 and row[start] == pad_id and not masked[start]:
                start += 1
            self.region_start = start
        else:
            self.region_start = tail
        self.given = [not m for m in masked]

    def _add_entropy(self, positions: list[int], batch: int, logits: torch.Tensor) -> None:
        """Entropy of the committed tokens' predictive distributions, read from the step's logits
        (block-aligned: window index = position - block start). Row 0 owns logits row 0 only when
        it was active, which committing something proves (rows are active in index order)."""
        if self._block_start is None or (batch > 1 and logits.shape[0] != batch):
            return
        from ..samplers.base import entropy_from_logits

        window = [p - self._block_start for p in positions if 0 <= p - self._block_start < logits.shape[1]]
        if window:
            idx = torch.tensor(window, device=logits.device)
            self.cumulative_entropy += float(entropy_from_logits(logits[0, idx]).sum())

    def _maybe_draw(self, force: bool = False) -> None:
        if self._live is None:
            return
        now = time.monotonic()
        if force or now - self._last_draw >= self.min_interval:
            self._live.update(self.render(), refresh=True)
            self._last_draw = now

    # ------------------------------------------------------------------ drawing
    def token_text(self, token: int) -> str:
        """Display text of one token id, decoded alone with the session tokenizer (cached)."""
        text = self._text_cache.get(token)
        if text is None:
            tok = self.session.tokenizer
            text = str(token) + " " if tok is None else tok.decode([token], skip_special_tokens=False)
            self._text_cache[token] = text
        return text

    def header(self) -> Text:
        region = self.canvas[self.region_start:]
        left = sum(t == self.mask_id for t in region)
        nfe = str(self.nfe) if self.counting else "-"
        text = Text()
        text.append("step ", style="dim")
        text.append(str(self.step), style="bold")
        text.append("   NFE ", style="dim")
        text.append(nfe, style="bold")
        text.append("   cumulative entropy ", style="dim")
        text.append(f"{self.cumulative_entropy:.3f}", style="bold")
        text.append(" nats   masked ", style="dim")
        text.append(f"{left}/{len(region)}", style="bold")
        for name, (s, e) in getattr(self, "regions", {}).items():
            filled = sum(t != self.mask_id for t in self.canvas[s:e])
            text.append(f"   {name} ", style=REGION_STYLE.get(name, "bold"))
            text.append(f"{100 * filled / max(1, e - s):.0f}%", style="bold")
        return text

    def _style_for(self, pos: int, token: int) -> tuple[str, str]:
        if token == self.mask_id:
            return MASK_GLYPH, STYLE_MASK
        if pos in self.new_positions:
            return self._visible(token), STYLE_NEW
        if token in self.stop_ids:
            return STOP_GLYPH, STYLE_SPECIAL
        if token in self.special_ids:
            return self.token_text(token), STYLE_SPECIAL
        return self._visible(token), STYLE_GIVEN if (self.grid and self.given[pos]) else ""

    def _visible(self, token: int) -> str:
        if token in self.stop_ids:
            return STOP_GLYPH
        text = self.token_text(token)
        return text if text else "·"

    def canvas_text(self) -> Text:
        """The drawn canvas: running text, or a grid with box lines for Sudoku."""
        if self.grid and len(self.canvas) - self.region_start >= self.grid * self.grid:
            return self._grid_text()
        out = Text()
        regions = getattr(self, "regions", {})
        starts = {s: name for name, (s, _) in regions.items()}
        ends = {e: name for name, (_, e) in regions.items()}
        for pos in range(self.region_start, len(self.canvas)):
            if pos in ends:
                out.append("⟧", style=REGION_STYLE.get(ends[pos], "bold"))
            if pos in starts:
                out.append(f"⟦{starts[pos]}:", style=REGION_STYLE.get(starts[pos], "bold"))
            glyph, style = self._style_for(pos, self.canvas[pos])
            out.append(glyph, style=style)
        if len(self.canvas) in ends:
            out.append("⟧", style=REGION_STYLE.get(ends[len(self.canvas)], "bold"))
        return out

    def _grid_text(self) -> Text:
        n = self.grid
        box = int(n ** 0.5)
        first = len(self.canvas) - n * n  # Sudoku: [BOS] + 81 cells, the cells are the tail
        out = Text()
        for r in range(n):
            if r and r % box == 0:
                out.append("------+-------+------\n", style="dim")
            for c in range(n):
                if c and c % box == 0:
                    out.append("| ", style="dim")
                pos = first + r * n + c
                glyph, style = self._style_for(pos, self.canvas[pos])
                out.append(glyph, style=style)
                out.append(" ")
            out.append("\n")
        return out

    def render(self) -> RenderableType:
        return Panel(Group(self.header(), Text(""), self.canvas_text()), title=self.title, title_align="left")


def live_view(session: Any, enabled: bool = True, console: Console | None = None, **kwargs: Any) -> LiveView:
    """A :class:`LiveView` on stdout; inert when ``enabled`` is false or stdout is no terminal."""
    return LiveView(session, console=console, enabled=enabled, **kwargs)
