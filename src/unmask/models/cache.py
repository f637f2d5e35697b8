"""Key/value cache shared by the native models.

Design choice (differs from Fast-dLLM on purpose): the cache is *immutable* once built. It is
produced by one full "refresh" forward (``return_cache=True``) and holds post-RoPE keys and values
for every canvas position. A later windowed forward over positions ``[start, start + Q)`` attends to

    cached[:start]  ++  fresh K/V of the window  ++  cached[start + Q:]

which covers both Fast-dLLM modes with one rule:

* prefix mode: the window is ``[block_start, T)`` (block and everything after it is recomputed);
* dual mode: the window is ``[block_start, block_end)`` (only the active block is recomputed).

Because nothing writes into the cache after the refresh, a lookahead forward over many candidate
rows can never corrupt the state the engine continues from, and there is no "untrimmed cache"
failure mode: the positions a window covers are always taken fresh.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch


@dataclass
class KVCache:
    """Per-layer keys and values, each ``[B, H_kv, T, D]``, keys already rotated (RoPE)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    #: lazy row selection (see :meth:`rows_view`): row j of this cache is stored row ``rows[j]``
    rows: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.keys[0].shape[0] if self.rows is None else int(self.rows.shape[0])

    @property
    def length(self) -> int:
        return self.keys[0].shape[2]

    def repeat_rows(self, repeats: int | torch.Tensor) -> KVCache:
        """Row i becomes ``repeats`` (or ``repeats[i]``) consecutive rows: used to score several
        candidate states that share one cached context. Returns new tensors (read-only use)."""
        return KVCache(
            [k.repeat_interleave(repeats, dim=0) for k in self.keys],
            [v.repeat_interleave(repeats, dim=0) for v in self.values],
        )

    def select_rows(self, rows: torch.Tensor) -> KVCache:
        """Keep the given batch rows (e.g. the rows that are still decoding)."""
        if self.rows is not None:
            rows = self.rows.index_select(0, rows)
        return KVCache([k.index_select(0, rows) for k in self.keys], [v.index_select(0, rows) for v in self.values])

    def rows_view(self, rows: torch.Tensor) -> KVCache:
        """The given rows (repeats allowed, e.g. one per lookahead candidate) *without copying*:
        :meth:`layer_window` gathers them while it builds each layer's keys, so a lookahead over
        N candidates copies the cached context once per layer instead of twice (gather, then
        concatenate)."""
        if self.rows is not None:
            rows = self.rows.index_select(0, rows)
        return KVCache(self.keys, self.values, rows)

    def layer_window(self, layer: int, start: int, k_new: torch.Tensor, v_new: torch.Tensor):
        """Keys/values for one layer with the window ``[start, start + Q)`` replaced by fresh ones."""
        k_old, v_old = self.keys[layer], self.values[layer]
        q_len = k_new.shape[2]
        if start > k_old.shape[2]:
            raise ValueError(f"window starts at {start} but the cache holds only {k_old.shape[2]} positions")
        if self.batch_size != k_new.shape[0]:
            raise ValueError(f"cache has {self.batch_size} rows but the window has {k_new.shape[0]}")
        end = start + q_len
        if self.rows is not None:
            # one gather into fresh tensors, then the window written into them (the stored cache
            # is untouched); beyond the stored length the keys grow, as with the concatenation
            k = k_old.index_select(0, self.rows)
            v = v_old.index_select(0, self.rows)
            if end <= k.shape[2]:
                k[:, :, start:end] = k_new.to(k.dtype)
                v[:, :, start:end] = v_new.to(v.dtype)
                return k, v
            k_old, v_old = k, v
        k = torch.cat([k_old[:, :, :start], k_new.to(k_old.dtype), k_old[:, :, end:]], dim=2)
        v = torch.cat([v_old[:, :, :start], v_new.to(v_old.dtype), v_old[:, :, end:]], dim=2)
        return k, v

    def checksum(self) -> str:
        """A digest of every byte in the cache, used by tests to prove nothing wrote into it."""
        h = hashlib.sha256()
        for t in [*self.keys, *self.values]:
            h.update(t.detach().float().cpu().numpy().tobytes())
        return h.hexdigest()
