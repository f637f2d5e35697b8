"""Decoding plans: which regions of the canvas are active, in what order, with which gate.

The engine's loop used to know one thing: semi-autoregressive blocks, decoded left to right, one
sampler decision per block per step. A *plan* generalises that without the engine or the samplers
learning what the regions mean:

* A :class:`Region` is a named set of canvas spans (one ``[start, end)`` per canvas row, in padded
  coordinates, so rows with different prompt lengths may have different spans) and a
  :class:`Gate`: how many of its masked positions may be committed per step, and which are
  eligible.
* A :class:`Phase` is a group of regions decoded together until none has masks left. Its
  ``sweep`` says how they share forwards: ``"jacobi"`` decides every region from the same forward;
  ``"gauss_seidel"`` runs one forward per region, in order, so each region sees the tokens the
  regions before it committed in the same step.
* A :class:`Planner` turns a :class:`Layout` (the initial canvas, padding, prompt length) into a
  list of phases. :class:`BlockPlanner` is today's behaviour (token-identical): an optional
  leading phase over the masks inside the prompt, then one phase per ``block_size`` block of the
  generation region, each a single scheduled region. ``decoding/lockstep.py`` builds one phase
  with a reasoning region R and an answer region A.

Per step the engine forwards the phase's *window* (the union of its regions' spans), hands the
sampler one :class:`~unmask.samplers.base.StepView` per row and region (only the positions the gate
lets through, and ``k``), and records the region in the trace. Samplers never see regions, gates or
caches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch

from ..errors import UnmaskError
from .schedule import split_steps

if TYPE_CHECKING:  # pragma: no cover
    from .config import GenerationConfig

SWEEPS = ("jacobi", "gauss_seidel")


@dataclass(frozen=True)
class Gate:
    """Which masked positions of a region may be committed in one step, and how many.

    ``tau is None`` (a *scheduled* gate, plain blocks): every masked position is eligible and ``k``
    comes from the region's step schedule (the sampler may choose its own k, e.g. ``threshold``).

    ``tau`` set (a *threshold* gate, lockstep): a position is eligible when the probability of its
    proposed token is >= ``tau``; at most ``cap(remaining)`` of them are committed, chosen by the
    sampler; when none passes, the sampler commits the single best masked position (the
    *fallback*), so a region always makes progress and decoding always finishes.

    ``after = (name, F)``: the region commits nothing until region ``name`` of the same phase is
    at least a fraction ``F`` filled (lockstep's ``--answer_after``).
    """

    tau: float | None = None
    max_fill_frac: float | None = None
    after: tuple[str, float] | None = None

    @property
    def scheduled(self) -> bool:
        return self.tau is None

    def cap(self, remaining: int) -> int:
        """Most positions one step may commit when ``remaining`` masks are left: all of them, or
        ``max(1, floor(max_fill_frac * remaining))``."""
        if self.max_fill_frac is None:
            return remaining
        return max(1, math.floor(self.max_fill_frac * remaining + 1e-9))

    def to_dict(self) -> dict[str, Any]:
        return {"tau": self.tau, "max_fill_frac": self.max_fill_frac,
                "after": list(self.after) if self.after else None}


@dataclass
class Region:
    """A named part of the canvas with its gate. ``spans[r]`` is canvas row r's ``[start, end)``
    in padded coordinates (``start == end``: the row has nothing in this region). ``steps`` is the
    step budget of a scheduled gate (None: one token per step, or ``tokens_per_step``). ``name``
    is recorded in the trace; plain blocks leave it ``None``."""

    spans: list[tuple[int, int]]
    gate: Gate = field(default_factory=Gate)
    name: str | None = None
    steps: int | None = None

    def size(self, row: int) -> int:
        s, e = self.spans[row]
        return e - s


@dataclass
class Phase:
    """Regions decoded together until none has masks left (see the module docstring)."""

    regions: list[Region]
    sweep: str = "jacobi"
    index: int = 0  # recorded as the trace's ``block``

    def window(self) -> tuple[int, int]:
        """The canvas span every forward of this phase computes: the union of all spans."""
        return _hull([sp for r in self.regions for sp in r.spans]) or (0, 0)

    def row_window(self, row: int) -> tuple[int, int]:
        """Canvas row ``row``'s own window: the union of its spans (the phase window if it has
        none). A cached forward starts there, so a padded row computes what it would alone."""
        return _hull([r.spans[row] for r in self.regions]) or self.window()

    def stages(self) -> list[list[Region]]:
        """Regions that share one forward, in order: all at once (Jacobi) or one by one."""
        if self.sweep == "gauss_seidel":
            return [[r] for r in self.regions]
        return [list(self.regions)]


def _hull(spans: list[tuple[int, int]]) -> tuple[int, int] | None:
    """The smallest ``[start, end)`` covering the non-empty spans (None when all are empty)."""
    spans = [sp for sp in spans if sp[1] > sp[0]]
    if not spans:
        return None
    return (min(s for s, _ in spans), max(e for _, e in spans))


@dataclass
class Layout:
    """What a planner may look at: the initial canvas ``[B, T]`` (CPU), each row's left padding and
    prompt index, the padded prompt length and the mask id."""

    x: torch.Tensor
    pads: list[int]
    groups: list[int]
    prompt_len: int
    mask_id: int

    @property
    def total(self) -> int:
        return int(self.x.shape[1])

    @property
    def rows(self) -> int:
        return int(self.x.shape[0])

    def prompt_length(self, row: int) -> int:
        return self.prompt_len - self.pads[row]


class Planner(Protocol):
    """Builds the phases of one generation. ``check`` refuses settings the plan cannot honour
    before any compute (one-line :class:`UnmaskError`)."""

    def check(self, cfg: GenerationConfig, sampler: Any) -> None: ...

    def plan(self, layout: Layout, cfg: GenerationConfig) -> list[Phase]: ...

    def config(self) -> dict[str, Any]: ...


def block_phases(layout: Layout, cfg: GenerationConfig, start_index: int = 0,
                 include_prompt: bool = True) -> list[Phase]:
    """Semi-autoregressive blocks: the masks inside the prompt (from the batch's first prompt mask
    to the end of the prompt) as one leading block, then ``block_size`` chunks of the generation
    region; the step budget is split over the blocks, remainder first."""
    n = layout.rows
    spans: list[tuple[int, int]] = []
    if include_prompt:
        has_mask = (layout.x[:, : layout.prompt_len] == layout.mask_id).any(0).tolist()
        if any(has_mask):
            spans.append((has_mask.index(True), layout.prompt_len))
    size = cfg.block_size or max(1, cfg.max_new_tokens)
    for s in range(layout.prompt_len, layout.total, size):
        spans.append((s, min(s + size, layout.total)))
    steps: list[int | None] = [None] * len(spans)
    if cfg.steps is not None and cfg.tokens_per_step is None:
        steps = list(split_steps(cfg.steps, len(spans)))
    return [Phase([Region([sp] * n, steps=st)], index=start_index + i) for i, (sp, st) in enumerate(zip(spans, steps))]


class BlockPlanner:
    """Today's decoding order: semi-autoregressive blocks, each a single scheduled region."""

    def check(self, cfg: GenerationConfig, sampler: Any) -> None:
        return None

    def plan(self, layout: Layout, cfg: GenerationConfig) -> list[Phase]:
        return block_phases(layout, cfg)

    def config(self) -> dict[str, Any]:
        return {"plan": "blocks"}


def check_sweep(sweep: str) -> str:
    key = str(sweep).strip().lower().replace("-", "_")
    aliases = {"gs": "gauss_seidel", "gauss_seidel": "gauss_seidel", "jacobi": "jacobi"}
    if key not in aliases:
        raise UnmaskError(f"unknown lockstep mode {sweep!r}; choose gauss_seidel or jacobi")
    return aliases[key]

