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

No full copy per step: the concatenation above is not rebuilt at every forward. Each layer keeps
one *scratch* buffer, a copy of the stored keys/values made at the first windowed forward after the
refresh; a step writes its fresh window into the scratch in place (and restores from the stored
cache any position an earlier, different window had overwritten), so a step copies only its window
instead of the whole cache, per layer. The stored ``keys``/``values`` are never written; row views
(lookahead candidates, :meth:`KVCache.rows_view`) gather from them and never touch the scratch.
The scratch costs one extra cache's worth of memory and is used only where it is safe: a window
inside the stored length (LLaDA/Dream's prefix and dual modes), full rows, no autograd. SDAR's
exact cache, which a window extends past its end, keeps the concatenation (see
:mod:`unmask.models.sdar`). :data:`COPY_STATS` counts the bytes each path copies (the engine
benchmark reads it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch

#: bytes of cached keys/values copied by :meth:`KVCache.layer_window` since the process started
#: (scratch set-up, restores, the window itself, row gathers, concatenations); instrumentation only
COPY_STATS = {"bytes": 0}


def _nbytes(*ts: torch.Tensor) -> int:
    return sum(t.numel() * t.element_size() for t in ts)


@dataclass
class KVCache:
    """Per-layer keys and values, each ``[B, H_kv, T, D]``, keys already rotated (RoPE)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    #: lazy row selection (see :meth:`rows_view`): row j of this cache is stored row ``rows[j]``
    rows: torch.Tensor | None = None
    #: per-layer scratch ``(keys, values, (lo, hi))``: a copy of the stored layer whose positions
    #: ``[lo, hi)`` hold the last window written into it (see the module docstring)
    _scratch: dict = field(default_factory=dict, repr=False, compare=False)

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
        if self.rows is None and end <= k_old.shape[2] and not (k_new.requires_grad or v_new.requires_grad):
            return self._write_window(layer, start, end, k_new, v_new)
        if self.rows is not None:
            # one gather into fresh tensors, then the window written into them (the stored cache
            # is untouched); beyond the stored length the keys grow, as with the concatenation
            k = k_old.index_select(0, self.rows)
            v = v_old.index_select(0, self.rows)
            COPY_STATS["bytes"] += _nbytes(k, v)
            if end <= k.shape[2]:
                k[:, :, start:end] = k_new.to(k.dtype)
                v[:, :, start:end] = v_new.to(v.dtype)
                return k, v
            k_old, v_old = k, v
        k = torch.cat([k_old[:, :, :start], k_new.to(k_old.dtype), k_old[:, :, end:]], dim=2)
        v = torch.cat([v_old[:, :, :start], v_new.to(v_old.dtype), v_old[:, :, end:]], dim=2)
        COPY_STATS["bytes"] += _nbytes(k, v)
        return k, v

    def _write_window(self, layer: int, start: int, end: int, k_new: torch.Tensor, v_new: torch.Tensor):
        """The in-place path: the layer's scratch with ``[start, end)`` overwritten by the window.
        Positions an earlier window wrote outside this one are restored from the stored cache
        first, so the result equals the concatenation bit for bit."""
        k_old, v_old = self.keys[layer], self.values[layer]
        entry = self._scratch.get(layer)
        if entry is None:
            k, v = k_old.clone(), v_old.clone()
            COPY_STATS["bytes"] += _nbytes(k, v)
            lo = hi = start
        else:
            k, v, (lo, hi) = entry
            # restore the parts of the previous window that this one does not cover
            for a, b in ((lo, min(hi, start)), (max(lo, end), hi)):
                if a < b:
                    k[:, :, a:b] = k_old[:, :, a:b]
                    v[:, :, a:b] = v_old[:, :, a:b]
                    COPY_STATS["bytes"] += 2 * _nbytes(k[:, :, a:b])
        k[:, :, start:end] = k_new.to(k.dtype)
        v[:, :, start:end] = v_new.to(v.dtype)
        COPY_STATS["bytes"] += _nbytes(k_new, v_new)
        self._scratch[layer] = (k, v, (start, end))
        return k, v

    def checksum(self) -> str:
        """A digest of every byte in the cache, used by tests to prove nothing wrote into it."""
        h = hashlib.sha256()
        for t in [*self.keys, *self.values]:
            h.update(t.detach().float().cpu().numpy().tobytes())
        return h.hexdigest()
