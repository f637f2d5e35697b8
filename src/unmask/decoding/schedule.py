"""How many tokens each step may commit inside a block.

Three schedules, all returning a list of positive counts that sums to the number of masks, so a
schedule can never leave masks behind:

* ``linear`` (LLaDA's ``get_num_transfer_tokens``): ``n // steps`` per step, the first
  ``n % steps`` steps get one more ("remainder first").
* ``linear_round`` (the dllm library's linear-alpha scheduler): step j commits
  ``round(remaining / (steps - j))`` with halves rounded up. 32 masks in 12 steps give
  ``[3, 3, 3, 3, 3, 2, 3, 2, 3, 2, 3, 2]``.
* ``dream`` (Dream's ``diffusion_generate``): timesteps ``linspace(1, eps, steps + 1)``; step i
  commits ``int(remaining * (1 - t[i+1] / t[i]))`` and the last step commits what is left. Steps
  that would commit 0 tokens are dropped (the reference runs a forward that changes nothing; at a
  fixed seed dropping it changes no token, only saves the forward).

``split_steps`` distributes a step budget over blocks (remainder first, like the per-block split of
LLaDA), and ``fixed_schedule`` is the ``tokens_per_step`` mode.
"""

from __future__ import annotations

import torch

from ..errors import UnmaskError

SCHEDULES = ("linear", "linear_round", "dream")


def linear_schedule(n_masks: int, steps: int) -> list[int]:
    steps = min(steps, n_masks)
    if n_masks <= 0:
        return []
    base, rem = divmod(n_masks, steps)
    return [base + (1 if i < rem else 0) for i in range(steps)]


def linear_round_schedule(n_masks: int, steps: int) -> list[int]:
    out: list[int] = []
    remaining = n_masks
    for j in range(steps):
        left = steps - j
        c = (2 * remaining + left) // (2 * left)  # round half up, exact in integers
        if c > 0:
            out.append(c)
            remaining -= c
    if remaining > 0:  # cannot happen (last step takes remaining / 1), kept as a guard
        out.append(remaining)
    return out


def dream_schedule(n_masks: int, steps: int, eps: float = 1e-3, first_step: int = 0) -> list[int]:
    """Dream's timestep schedule. ``first_step=1`` is Fast-dLLM's Dream block loop, where the
    entry commit of a block's first token at the cache refresh uses up step 0 (used by
    ``--compat fast_dllm`` on Dream models with a cache, see :mod:`unmask.decoding.compat`)."""
    t = torch.linspace(1, eps, steps + 1, dtype=torch.float64)
    out: list[int] = []
    remaining = n_masks
    for i in range(first_step, steps):
        if i == steps - 1:
            c = remaining
        else:
            c = int(remaining * (1 - t[i + 1].item() / t[i].item()))
        c = min(c, remaining)
        if c > 0:
            out.append(c)
            remaining -= c
    return out


def block_schedule(n_masks: int, steps: int, kind: str = "linear") -> list[int]:
    """Per-step counts for one block with ``n_masks`` masks and ``steps`` steps."""
    if n_masks == 0:
        return []
    if steps <= 0:
        raise UnmaskError(f"a block with {n_masks} masks got {steps} steps; every block needs at least one")
    if kind == "linear":
        return linear_schedule(n_masks, steps)
    if kind == "linear_round":
        return linear_round_schedule(n_masks, steps)
    if kind == "dream":
        return dream_schedule(n_masks, steps)
    raise UnmaskError(f"unknown schedule {kind!r}; choose one of {', '.join(SCHEDULES)}")


def fixed_schedule(n_masks: int, tokens_per_step: int) -> list[int]:
    """``tokens_per_step`` tokens per step; the last step takes what is left."""
    full, rem = divmod(n_masks, tokens_per_step)
    return [tokens_per_step] * full + ([rem] if rem else [])


def split_steps(steps: int, n_blocks: int) -> list[int]:
    """Distribute ``steps`` over ``n_blocks`` blocks, remainder to the first blocks.

    Unlike LLaDA's reference (which asserts ``steps % n_blocks == 0``) any budget of at least one
    step per block is accepted."""
    if n_blocks == 0:
        return []
    if steps < n_blocks:
        raise UnmaskError(
            f"steps={steps} is fewer than the {n_blocks} blocks; give at least one step per block "
            "(raise --steps or --block_size)"
        )
    base, rem = divmod(steps, n_blocks)
    return [base + (1 if i < rem else 0) for i in range(n_blocks)]
