"""Decoding rules for block-causal (block-diffusion) models: SDAR and TraDo.

These models are autoregressive across blocks of ``L`` tokens and masked-diffusion inside a
block, with blocks aligned to absolute positions counted from the first prompt token. Decoding
therefore follows the model's grid rather than the generation region:

* The first decoded block is the one that holds the end of the prompt (its prompt tokens are not
  masked, so samplers only see the masks after them), or the first mask inside the prompt for an
  infilling canvas (known tokens in later blocks stay; block-causal attention cannot see them
  before their block). The canvas is extended so the last block is complete, as the reference
  does (``num_blocks * block_length`` positions); an infilling canvas keeps its length.
* Left-padded rows share a block grid only when their prompt lengths agree modulo ``L``; a batch
  is decoded as one sub-batch per phase (``len % L``), each row with its own seed, so batched
  equals one-by-one.
* ``steps`` counts denoising steps *per block* (the reference's ``denoising_steps``) and the
  per-step quotas are the reference's ``get_num_transfer_tokens(L, steps)``: the quotas of a full
  block, applied until the block's masks run out (a first block that already holds prompt tokens
  finishes early). ``steps=None`` is one token per step (the reference default 4 / 4).
* The KV cache is exact: the complete prompt blocks are prefilled once, each block is denoised by
  forwards over that block only, and the finished block's K/V are appended by one more forward
  over its final tokens. Folding that append into the last denoising step is *not* identical: the
  last step runs on the state before its tokens are committed, so its K/V still see masks there.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import UnmaskError


def is_block_causal(model) -> bool:
    return bool(getattr(model, "block_causal", False))


def block_length_of(model, block_size: int | None) -> int:
    size = int(block_size or getattr(model, "block_length", 0) or 0)
    if size < 1:
        raise UnmaskError("a block-causal model needs a block length (config block_length or --block_size)")
    return size


def phase_groups(prompts: Sequence[Sequence[int]], block: int) -> list[list[int]]:
    """Prompt indices grouped by ``len % block`` (first-seen order)."""
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(len(p) % block, []).append(i)
    return list(groups.values())


def grid_new_tokens(prompt_len: int, max_new_tokens: int, block: int) -> int:
    """``max_new_tokens`` rounded up so that prompt + generation fills whole blocks."""
    return max_new_tokens + (-(prompt_len + max_new_tokens)) % block


def grid_blocks(prompt_len: int, row_len: int, total: int, block: int) -> list[tuple[int, int]]:
    """Canvas blocks ``[s, e)`` from the block holding the prompt's end to the end of the canvas.
    ``prompt_len`` is the canvas prompt width (left padding included), ``row_len`` a real prompt
    length of the phase group (all rows share ``row_len % block``)."""
    first = prompt_len - row_len % block
    return [(s, min(s + block, total)) for s in range(first, total, block)]


def transfer_quotas(n_masks: int, block: int, steps: int | None) -> list[int]:
    """Per-step counts for a block with ``n_masks`` masks: the reference quotas of a full block
    (``block // steps`` each, the first ``block % steps`` steps one more), cut off once the masks
    are used up; zero-count steps are dropped (the reference runs a forward that commits nothing)."""
    if n_masks <= 0:
        return []
    steps = block if steps is None else steps
    base, rem = divmod(block, steps)
    out: list[int] = []
    left = n_masks
    for i in range(steps):
        q = min(base + (1 if i < rem else 0), left)
        if q > 0:
            out.append(q)
            left -= q
    if left > 0:  # more masks than the block size (cannot happen on the grid); keep it safe
        out.append(left)
    return out


class AlignedBlockPlanner:
    """The plan of a block-causal model: one phase per block of the grid, from the block that
    holds the first mask to the end of the (grid-extended) canvas, each a single scheduled
    region with ``steps`` denoising steps. All rows of a generation share the grid (the engine
    splits a batch by phase first), so every row has the same span."""

    def __init__(self, block: int) -> None:
        self.block = block

    def check(self, cfg, sampler) -> None:
        return None

    def plan(self, layout, cfg) -> list:
        from .plan import Phase, Region

        # the grid starts at each row's first real token; rows of one generation share its phase
        origin = layout.pads[0] % self.block
        masked = (layout.x == layout.mask_id).any(0).nonzero()
        first = int(masked[0]) if masked.numel() else layout.prompt_len
        start = origin + (first - origin) // self.block * self.block
        blocks = [(s, min(s + self.block, layout.total)) for s in range(start, layout.total, self.block)]
        return [Phase([Region([sp] * layout.rows, steps=cfg.steps)], index=i) for i, sp in enumerate(blocks)]

    def config(self) -> dict:
        return {"plan": "aligned_blocks", "block": self.block}
