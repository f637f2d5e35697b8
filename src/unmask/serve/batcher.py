"""The request queue and the worker thread that decodes queued requests together.

Requests are split into *units* (rows that may share an engine batch, see
:meth:`unmask.serve.backend.Backend.row_extra`) and queued. One worker thread takes the oldest
unit, waits up to ``max_wait`` (from that unit's arrival) for more units with the same settings,
and decodes up to ``max_batch_size`` engine rows in one :func:`~unmask.decoding.engine.generate`
call, each row with its own seed. Units with other settings wait for a later batch. Because the
engine gives each row its own random generator and padding never leaks into a row, an answer does
not depend on what else was in its batch.

The engine's ``tokens_hook`` sees the canvas after every step. The worker uses it to

* stream: send the text of each answer's final prefix as it grows (and the whole canvas, with
  ``stream_canvas``);
* stop early: once a ``stop`` string appears in the final prefix the answer is known, and the
  row's remaining masks are filled with EOS so it leaves the batch;
* free the slot of a request whose client went away, and abort the batch at shutdown, the same way.

Filling a row's masks changes nothing for the other rows (rows never see each other).

The worker talks to the asyncio side only through ``loop.call_soon_threadsafe``; a job's events
arrive in its ``asyncio.Queue`` in order: ``("delta", i, text)``, ``("canvas", i, step, text)``,
then ``("done", results)`` or ``("error", ApiError)``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import UnmaskError
from .backend import Backend, Plan
from .schema import ApiError
from .streaming import TextStream, cut_at_stop

log = logging.getLogger("unmask.serve")


@dataclass
class RowResult:
    """One finished answer: its text, what the stream has not sent yet, and its figures."""

    text: str
    delta: str
    finish_reason: str
    completion_tokens: int
    stats: dict[str, Any]


class Job:
    """One HTTP request on its way through the queue (created on the event-loop thread)."""

    def __init__(self, plan: Plan, stops: list[str], stream: bool, stream_canvas: bool,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.id = uuid.uuid4().hex
        self.plan = plan
        self.stops = list(stops)
        self.stream = stream
        self.stream_canvas = stream_canvas
        self.loop = loop or asyncio.get_event_loop()
        self.events: asyncio.Queue = asyncio.Queue()
        self.cancelled = False
        self.enqueued = time.monotonic()
        self.streams = [TextStream(stops) for _ in plan.rows]
        self.results: list[RowResult | None] = [None] * len(plan.rows)
        self.units_left = 0
        self.finished = False

    def emit(self, event: tuple) -> None:
        """Hand an event to the request's coroutine (thread-safe; dropped if the loop is gone)."""
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the event loop is closed: nobody is listening any more
            pass


@dataclass(eq=False)  # identity: the queue removes units by object
class Unit:
    """Rows of one job that go into the same engine batch."""

    job: Job
    rows: list[int]
    key: tuple
    enqueued: float = field(default_factory=time.monotonic)

    @property
    def engine_rows(self) -> int:
        return len(self.rows) * self.job.plan.per_row


class Batcher:
    """Bounded queue + one decoding thread (see the module docstring).

    ``max_queue`` bounds the requests waiting to start (a full queue is refused with 503 and
    ``Retry-After``); ``max_batch_size`` bounds the engine rows per batch; ``max_wait`` is how
    long the oldest waiting request may wait for company."""

    def __init__(self, backend: Backend, max_batch_size: int = 32, max_wait: float = 0.005,
                 max_queue: int = 256, retry_after: int = 1) -> None:
        if max_batch_size < 1:
            raise UnmaskError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_queue < 1:
            raise UnmaskError(f"max_queue must be >= 1, got {max_queue}")
        if max_wait < 0:
            raise UnmaskError(f"max_wait_ms must be >= 0, got {max_wait * 1000:g}")
        self.backend = backend
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait
        self.max_queue = max_queue
        self.retry_after = retry_after
        self._cv = threading.Condition()
        self._pending: deque[Unit] = deque()
        self._running: list[Job] = []
        self._thread: threading.Thread | None = None
        # shutdown state: plain attributes, written without the lock so that a signal handler may
        # set them (the worker polls them at least every 0.1 s)
        self._closing_at: float | None = None
        self._grace = 0.0
        self._samplers: dict[tuple, Any] = {}
        self.stats: dict[str, Any] = {"requests": 0, "rejected": 0, "cancelled": 0, "failed": 0, "batches": 0,
                                      "rows": 0, "batch_sizes": Counter()}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="unmask-serve-worker", daemon=True)
            self._thread.start()

    @property
    def closing(self) -> bool:
        return self._closing_at is not None

    def begin_shutdown(self, grace: float) -> None:
        """Refuse new requests; finish queued and running ones for up to ``grace`` seconds, then
        fail what is left with a clean 503. Safe to call from a signal handler."""
        if self._closing_at is None:
            self._grace = max(0.0, grace)
            self._closing_at = time.monotonic()

    def _past_grace(self) -> bool:
        return self._closing_at is not None and time.monotonic() >= self._closing_at + self._grace

    def close(self, timeout: float = 30.0) -> None:
        """Shut down now: fail the queue, abort the running batch, join the worker."""
        self.begin_shutdown(0.0)
        self._grace = 0.0
        with self._cv:
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    # ------------------------------------------------------------------ queue
    def queued_requests(self) -> int:
        with self._cv:
            return len({id(u.job) for u in self._pending})

    def running_requests(self) -> int:
        return len(self._running)

    def submit(self, job: Job) -> None:
        """Queue a job, or raise a 503 :class:`ApiError` (queue full, or shutting down)."""
        retry = {"Retry-After": str(self.retry_after)}
        if self.closing:
            raise ApiError(503, "the server is shutting down", type="server_error", code="shutting_down", headers=retry)
        units = self._units(job)
        with self._cv:
            if len({id(u.job) for u in self._pending}) >= self.max_queue:
                self.stats["rejected"] += 1
                raise ApiError(503, f"the request queue is full ({self.max_queue} waiting); retry shortly",
                               type="server_error", code="queue_full", headers=retry)
            job.units_left = len(units)
            self._pending.extend(units)
            self.stats["requests"] += 1
            self._cv.notify_all()

    def _units(self, job: Job) -> list[Unit]:
        """Group a job's rows by batch compatibility, in chunks that fit one batch."""
        groups: dict[tuple, list[int]] = {}
        for i, row in enumerate(job.plan.rows):
            groups.setdefault(row.batch_extra, []).append(i)
        per_batch = max(1, self.max_batch_size // job.plan.per_row)
        units = []
        for extra, idx in groups.items():
            for lo in range(0, len(idx), per_batch):
                units.append(Unit(job, idx[lo : lo + per_batch], (job.plan.key, extra)))
        return units

    def cancel(self, job: Job) -> None:
        """The client went away: drop the job's queued rows; running rows are stopped at the
        next step (the hook fills their masks)."""
        if job.finished or job.cancelled:
            return
        job.cancelled = True
        with self._cv:
            self._pending = deque(u for u in self._pending if u.job is not job)
            self.stats["cancelled"] += 1
            self._cv.notify_all()

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._pending:
                    if self.closing:
                        return
                    self._cv.wait(0.1)
                if self._past_grace():
                    dropped, self._pending = list(self._pending), deque()
                else:
                    dropped = []
                    batch = self._take()
            if dropped:
                for unit in dropped:
                    self._fail(unit.job, ApiError(503, "the server shut down before this request started",
                                                  type="server_error", code="shutting_down"))
                continue
            if batch:
                self._run(batch)

    def _take(self) -> list[Unit]:
        """Wait (lock held) until the oldest unit's batch is full or its wait is over, then take
        it together with every later unit of the same key that fits."""
        first = self._pending[0]
        deadline = first.enqueued + self.max_wait
        while True:
            rows = sum(u.engine_rows for u in self._pending if u.key == first.key)
            now = time.monotonic()
            if rows >= self.max_batch_size or now >= deadline or self.closing or first not in self._pending:
                break
            self._cv.wait(min(deadline - now, 0.1))
        if not self._pending:
            return []
        first = self._pending[0]
        batch, taken, rows = [], set(), 0
        for u in self._pending:
            if u.key != first.key:
                continue
            if batch and rows + u.engine_rows > self.max_batch_size:
                break
            batch.append(u)
            taken.add(id(u))
            rows += u.engine_rows
        self._pending = deque(u for u in self._pending if id(u) not in taken)
        return batch

    def _sampler(self, plan: Plan):
        from ..samplers.base import make_sampler

        key = plan.key[:2]
        if key not in self._samplers:
            if len(self._samplers) > 64:
                self._samplers.clear()
            self._samplers[key] = make_sampler(plan.sampler, **plan.sampler_options)
        return self._samplers[key]

    def _run(self, units: list[Unit]) -> None:
        """Decode one batch; on an engine error decode its units one by one, so that only the
        request that caused it fails."""
        try:
            self._decode(units)
        except UnmaskError as e:
            if len(units) > 1:
                for u in units:
                    self._run([u])
                return
            self._fail(units[0].job, ApiError(400, str(e)))
        except Exception as e:  # noqa: BLE001 - one bad batch must not take the server down
            log.exception("decoding failed")
            for u in units:
                self._fail(u.job, ApiError(500, f"internal error while decoding: {type(e).__name__}: {e}",
                                           type="server_error"))
        finally:
            for u in units:
                if u.job in self._running:
                    self._running.remove(u.job)

    def _fail(self, job: Job, err: ApiError) -> None:
        if job.finished:
            return
        job.finished = True
        with self._cv:
            self._pending = deque(u for u in self._pending if u.job is not job)
        self.stats["failed"] += 1
        job.emit(("error", err))

    def _decode(self, units: list[Unit]) -> None:
        backend = self.backend
        plan = units[0].job.plan
        per = plan.per_row
        slots = [(u, i) for u in units for i in u.rows]  # answer k -> (unit, row index in its job)
        prompts = [u.job.plan.rows[i].prompt_ids for u, i in slots]
        seeds = [u.job.plan.rows[i].seed for u, i in slots]
        prompt_len = max(len(p) for p in prompts)
        size = len(slots) * per
        started = time.monotonic()
        for u in units:
            if u.job not in self._running:
                self._running.append(u.job)
        done = [False] * len(slots)
        aborted = [False]
        mask_id, eos_id = backend.mask_id, backend.eos_id

        def hook(step: int | None, x: torch.Tensor, logits: torch.Tensor | None) -> torch.Tensor:
            abort = self._past_grace()
            aborted[0] = aborted[0] or abort
            fill: list[int] = []
            rows_cpu = None
            for k, (u, i) in enumerate(slots):
                job = u.job
                if done[k]:
                    continue
                if job.cancelled or job.finished or abort:
                    fill.extend(range(k * per, (k + 1) * per))
                    done[k] = True
                    continue
                if per > 1 or not (job.stream or job.stops):
                    continue  # the winner of best-of / beam search is known only at the end
                if rows_cpu is None:
                    rows_cpu = x.cpu()
                plen = len(prompts[k])
                canvas = rows_cpu[k * per, prompt_len - plen :].tolist()
                text, complete = backend.prefix_text(canvas, plen)
                stream = job.streams[i]
                delta = stream.update(text, final=False)
                if job.stream:
                    if delta:
                        job.emit(("delta", i, delta))
                    if job.stream_canvas:
                        job.emit(("canvas", i, 0 if step is None else step + 1, backend.canvas_text(canvas, plen)))
                if stream.stopped:
                    fill.append(k * per)
                    done[k] = True
                elif complete:
                    done[k] = True
            if fill:
                idx = torch.tensor(fill, device=x.device)
                sub = x[idx]
                x[idx] = torch.where(sub == mask_id, torch.full_like(sub, eos_id), sub)
            return x

        from ..decoding.engine import GenerationConfig, generate

        fields = set(GenerationConfig.__dataclass_fields__)
        cfg = GenerationConfig(**{k: v for k, v in plan.config.items() if k in fields})
        cfg.seed = seeds
        cfg.tokens_hook = hook
        if isinstance(cfg.stop_token_ids, list):
            cfg.stop_token_ids = tuple(cfg.stop_token_ids)
        if isinstance(cfg.suppress_token_ids, list):
            cfg.suppress_token_ids = tuple(cfg.suppress_token_ids)
        out = generate(backend.session.model, prompts, self._sampler(plan), cfg)

        self.stats["batches"] += 1
        self.stats["rows"] += size
        self.stats["batch_sizes"][size] += 1
        for k, (u, i) in enumerate(slots):
            job = u.job
            if job.finished or job.cancelled:
                continue
            text, ctoks, finish = backend.final(out, k, plan.max_new_tokens)
            stream = job.streams[i]
            delta = stream.update(text, final=True)
            text, found = cut_at_stop(text, job.stops)
            if found:
                finish = "stop"
            if stream.diverged:
                log.warning("request %s: the streamed text is not a prefix of the final text", job.id)
            tr = out.traces[k]
            fwd = getattr(tr, "forward_tokens", None)
            job.results[i] = RowResult(
                text=text, delta=delta, finish_reason=finish, completion_tokens=ctoks,
                stats={"nfe": tr.nfe, "forward_rows": tr.forward_rows,
                       "forward_tokens": None if fwd is None else int(fwd),
                       "cumulative_entropy": round(tr.cumulative_entropy, 6), "batch_size": size,
                       "queue_seconds": round(started - job.enqueued, 6), "decode_seconds": round(out.seconds, 6)},
            )
        for u in units:
            job = u.job
            if job.finished or job.cancelled:
                continue
            if aborted[0]:
                self._fail(job, ApiError(503, "the server shut down before this request finished",
                                         type="server_error", code="shutting_down"))
                continue
            job.units_left -= 1
            if job.units_left == 0:
                job.finished = True
                job.emit(("done", job.results))
