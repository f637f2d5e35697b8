"""The Starlette application: routes, error bodies, streaming and client disconnects.

Routes: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models``,
``GET /health``. Every error is an OpenAI-style JSON body ``{"error": {"message", "type",
"param", "code"}}``; a full queue or a shutting-down server answers 503 with ``Retry-After``.

A request whose client disconnects is cancelled: its queued rows are dropped and its running rows
stop at the next decoding step (:meth:`Batcher.cancel`), so the slot goes to someone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from . import formats
from .backend import Backend
from .batcher import Batcher, Job, RowResult
from .schema import ApiError, ParsedRequest, parse_request
from .streaming import DONE, sse

log = logging.getLogger("unmask.serve")


def error_response(err: ApiError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


def create_app(backend: Backend, batcher: Batcher, extra_routes: tuple | list = ()) -> Starlette:
    """The ASGI app serving ``backend`` through ``batcher`` (the batcher starts with the app).
    ``extra_routes``: more endpoints (MMaDA's ``/v1/images/generations``)."""

    async def handle(request: Request, kind: str) -> Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "the request body is not valid JSON") from None
        req = parse_request(body, kind)
        if req.model is not None and req.model != backend.name:
            raise ApiError(404, f"model {req.model!r} is not served here; this server serves {backend.name!r}",
                           param="model", code="model_not_found")
        plan = backend.plan(req)
        job = Job(plan, req.stop, req.stream, req.stream_canvas, asyncio.get_running_loop())
        batcher.submit(job)
        prompt_tokens = sum({r.prompt: len(r.prompt_ids) for r in plan.rows}.values())
        rid, created = formats.new_id(kind), formats.now()
        if req.stream:
            return StreamingResponse(stream(request, job, req, rid, created, prompt_tokens),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        results = await wait_done(request, job)
        if results is None:  # the client is gone; this response goes nowhere
            return Response(status_code=499)
        return JSONResponse(formats.response(kind, rid, created, backend.name, results, prompt_tokens, plan.summary))

    async def wait_done(request: Request, job: Job) -> list[RowResult] | None:
        """The job's results; None (and the job cancelled) if the client disconnects first."""
        async with Watch(request, job, batcher) as watch:
            while True:
                event = await watch.next()
                if event is None:
                    return None
                if event[0] == "done":
                    return event[1]
                if event[0] == "error":
                    raise event[1]

    async def stream(request: Request, job: Job, req: ParsedRequest, rid: str, created: int,
                     prompt_tokens: int) -> AsyncIterator[bytes]:
        kind, model = req.kind, backend.name
        async with Watch(request, job, batcher) as watch:
            if kind == "chat":
                for i in range(len(job.plan.rows)):
                    yield sse(formats.chunk(kind, rid, created, model, i, role=True))
            while True:
                event = await watch.next()
                if event is None:
                    return
                tag = event[0]
                if tag == "delta":
                    yield sse(formats.chunk(kind, rid, created, model, event[1], text=event[2]))
                elif tag == "canvas":
                    extra = {"index": event[1], "step": event[2], "canvas": event[3]}
                    yield sse(formats.chunk(kind, rid, created, model, event[1], text=None if kind == "chat" else "",
                                            extra=extra))
                elif tag == "error":
                    yield sse(event[1].body())
                    yield DONE
                    return
                elif tag == "done":
                    results: list[RowResult] = event[1]
                    for i, r in enumerate(results):
                        if r.delta:
                            yield sse(formats.chunk(kind, rid, created, model, i, text=r.delta))
                        yield sse(formats.chunk(kind, rid, created, model, i, finish=r.finish_reason,
                                                extra={"index": i, **r.stats}))
                    if req.include_usage:
                        yield sse(formats.usage_chunk(kind, rid, created, model, results, prompt_tokens,
                                                      job.plan.summary))
                    yield DONE
                    return

    async def chat(request: Request) -> Response:
        return await handle(request, "chat")

    async def completions(request: Request) -> Response:
        return await handle(request, "completion")

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [
            {"id": backend.name, "object": "model", "created": started, "owned_by": "unmask",
             "root": str(backend.session.folder), "task": getattr(backend.task, "name", None)}]})

    async def health(request: Request) -> Response:
        body: dict[str, Any] = {
            "status": "shutting_down" if batcher.closing else "ok",
            "model": backend.name,
            "queued": batcher.queued_requests(),
            "running": batcher.running_requests(),
            "max_queue": batcher.max_queue,
            "max_batch_size": batcher.max_batch_size,
            **{k: v for k, v in batcher.stats.items() if k != "batch_sizes"},
            "batch_sizes": {str(k): v for k, v in sorted(batcher.stats["batch_sizes"].items())},
        }
        return JSONResponse(body, status_code=503 if batcher.closing else 200)

    async def on_api_error(request: Request, exc: Exception) -> Response:
        return error_response(exc)  # type: ignore[arg-type]

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return error_response(ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", type=kind))

    async def on_internal_error(request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s", request.url.path, exc_info=exc)
        return error_response(ApiError(500, f"internal error: {type(exc).__name__}: {exc}", type="server_error"))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        batcher.start()
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, batcher.close)

    started = formats.now()
    routes = [
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        *extra_routes,
    ]
    return Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers={ApiError: on_api_error, HTTPException: on_http_error,
                                         Exception: on_internal_error})


class Watch:
    """A job's events, watched together with the client's connection.

    Leaving the context (normally, by an error, or because the streaming response was closed
    when the client went away) cancels the job unless it has finished; :meth:`next` returns
    None as soon as the client disconnects, even while no event is due (a long decode that
    streams nothing), so the slot is freed at once."""

    def __init__(self, request: Request, job: Job, batcher: Batcher) -> None:
        self.request, self.job, self.batcher = request, job, batcher
        self.gone: asyncio.Future | None = None

    async def __aenter__(self) -> Watch:
        self.gone = asyncio.ensure_future(_disconnected(self.request))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.gone is not None
        self.gone.cancel()
        if not self.job.finished:
            self.batcher.cancel(self.job)

    async def next(self) -> tuple | None:
        assert self.gone is not None
        if not self.job.events.empty():
            return self.job.events.get_nowait()
        get = asyncio.ensure_future(self.job.events.get())
        try:
            await asyncio.wait({get, self.gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Starlette may cancel this wait itself when the client leaves (it watches for the
            # disconnect too): the queue read must not outlive it, or asyncio reports "Task was
            # destroyed but it is pending!" when the server shuts down
            if not get.done():
                get.cancel()
        if not get.cancelled():
            return get.result()
        self.batcher.cancel(self.job)
        return None


async def _disconnected(request: Request) -> None:
    """Return once the client has gone (the ASGI server reports ``http.disconnect``)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
