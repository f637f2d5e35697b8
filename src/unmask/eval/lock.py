"""One writer per run folder: an advisory ``fcntl`` lock held while a run decodes.

Two ``unmask eval`` commands with the same settings and output folder resolve to the same run
folder. The record store keeps that *safe* (records are deduplicated on read), but both processes
decode every sample, so the second one wastes the whole run. The lock makes the second one stop at
once with a message that says who holds it. The lock is released by the kernel when the holder
exits, even after ``kill -9``, so a stale lock file never blocks a resume.

Each rank of a multi-process run locks its own file (``.lock.rank{r}``): ranks of one run never
collide, while a second launch of the same run collides rank by rank.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from ..errors import UnmaskError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, run unguarded
    fcntl = None  # type: ignore[assignment]


class RunLock:
    """Context manager: ``with RunLock(run_dir, rank, world): ...``."""

    def __init__(self, run_dir: str | Path, rank: int = 0, world: int = 1) -> None:
        name = ".lock" if world == 1 else f".lock.rank{rank}"
        self.path = Path(run_dir) / name
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        if fcntl is None:
            return
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise UnmaskError(
                f"another unmask eval ({holder}) is already running this run in {self.path.parent}; "
                "wait for it to finish (a later run resumes where it stopped) or use another --output_dir"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            try:
                self._fh.seek(0)
                self._fh.truncate()
            except OSError:
                pass
            self._fh.close()  # closing drops the flock
            self._fh = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
