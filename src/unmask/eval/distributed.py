"""Multi-process evaluation without a process group.

``accelerate launch -m unmask eval ...`` and ``torchrun`` start N copies of the command with
``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` in the environment; so can a plain shell loop. Every
process reads the same dataset, takes the samples whose dataset index ``i`` has
``i % WORLD_SIZE == RANK``, and appends its records to its own file in the shared run folder.
Rank 0, when its shard is done, waits until the records of every sample are on disk (it polls the
folder), then writes the summary. No collective communication is used, so there is nothing to
time out when ranks finish at different times, and a run can be resumed with any number of
processes (a sample's output depends only on its prompt, its seed and the config, never on which
process or batch decoded it).
"""

from __future__ import annotations

import os


def _env_int(*names: str) -> int | None:
    for n in names:
        v = os.environ.get(n)
        if v not in (None, ""):
            try:
                return int(v)
            except ValueError:
                continue
    return None


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` from the launcher's environment; ``(0, 1)`` when not launched."""
    world = _env_int("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE") or 1
    rank = _env_int("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK") or 0
    if world < 1 or not (0 <= rank < world):
        from ..errors import UnmaskError

        raise UnmaskError(f"bad RANK/WORLD_SIZE in the environment: rank {rank}, world size {world}")
    return rank, world


def local_rank() -> int:
    return _env_int("LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK") or 0


def device_for_rank(device: str, world: int) -> str:
    """One GPU per process: ``cuda``/``auto`` become ``cuda:LOCAL_RANK`` in a multi-process run."""
    if world > 1 and device in ("auto", "cuda"):
        try:
            import torch

            if torch.cuda.is_available():
                return f"cuda:{local_rank() % max(1, torch.cuda.device_count())}"
        except ImportError:  # pragma: no cover
            pass
    return device


def shard(indices: list[int], rank: int, world: int) -> list[int]:
    """The dataset indices this process decodes."""
    return [i for i in indices if i % world == rank]
