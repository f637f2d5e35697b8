"""``unmask serve``: run the OpenAI-compatible server with uvicorn.

Every sampling flag of ``unmask sample`` is accepted and becomes the server's default for
requests that do not set it. The ASGI stack (starlette, uvicorn) is the optional ``serve`` extra
and is imported only when the command runs.

Shutdown: on SIGTERM (or Ctrl-C) the server stops accepting connections and new requests, keeps
decoding what is queued and running for up to ``--shutdown_timeout`` seconds, then fails what is
left with a 503 and exits with status 0.
"""

from __future__ import annotations

import argparse
import gc
import signal
import socket
import sys
from types import FrameType

from ..cli import (
    add_flag,
    add_sampling_flags,
    config_overrides,
    resolve_device,
    sampler_options,
)
from ..errors import UnmaskError
from ..options import values

DEFAULT_MODEL = "tiny-sudoku"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="OpenAI-compatible HTTP server with request batching and streaming")
    add_flag(p, "host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    add_flag(p, "port", type=int, default=8000, help="port (0 = any free port; the chosen one is printed)")
    add_flag(p, "served_model_name", default=None, help="model id in the API (default: --model_name_or_path)")
    add_flag(p, "max_batch_size", type=int, default=32, help="engine rows decoded together at most")
    add_flag(p, "max_wait_ms", type=float, default=5.0,
             help="how long the oldest queued request waits for others to share its batch")
    add_flag(p, "max_queue", type=int, default=256, help="requests waiting to start; more get 503 + Retry-After")
    add_flag(p, "shutdown_timeout", type=float, default=30.0,
             help="seconds to finish queued and running requests after SIGTERM before failing them")
    add_flag(p, "log_level", default="warning", help="uvicorn log level: critical, error, warning, info, debug")
    add_sampling_flags(p, "serve")
    p.set_defaults(func=cmd_serve)


def _listen(host: str, port: int) -> socket.socket:
    """Bind the listening socket ourselves, so that ``--port 0`` can report the port it got."""
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(info[0], socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(info[4])
    except OSError as e:
        raise UnmaskError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def defaults_from_args(args: argparse.Namespace):
    """The server's defaults for what a request leaves out: every sampling, decoding and
    lockstep flag of the command line."""
    from .backend import Defaults

    return Defaults(sampler=args.sampler, sampler_options=sampler_options(args), overrides=config_overrides(args),
                    lockstep=values(args, "lockstep"))


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from .app import create_app
    except ImportError as e:
        raise UnmaskError(f"unmask serve needs the serve extra ({e.name} is missing): pip install 'unmask[serve]'") from None
    from ..session import Session
    from .backend import Backend
    from .batcher import Batcher

    model = args.model_name_or_path or DEFAULT_MODEL
    session = Session.load(model, device=resolve_device(args.device), dtype=args.dtype)
    defaults = defaults_from_args(args)
    backend = Backend(session, args.served_model_name or model, defaults)
    backend.check_defaults()
    batcher = Batcher(backend, max_batch_size=args.max_batch_size, max_wait=args.max_wait_ms / 1000.0,
                      max_queue=args.max_queue)
    from ..multimodal.commands import serve_routes

    app = create_app(backend, batcher, serve_routes(args, backend))
    sock = _listen(args.host, args.port)
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(app, log_level=args.log_level, lifespan="on",
                            timeout_graceful_shutdown=int(args.shutdown_timeout) + 5)
    server = _Server(config, batcher, args.shutdown_timeout)
    shown = f"[{host}]" if ":" in str(host) else host
    sys.stderr.write(f"unmask serve: {backend.name} on http://{shown}:{port}/v1 "
                     f"(max_batch_size={args.max_batch_size}, max_wait_ms={args.max_wait_ms:g})\n")
    sys.stderr.flush()
    # the long-lived objects (torch, transformers, the model) need no cyclic GC: freezing them
    # keeps collections short while serving and takes seconds off the exit on a busy machine
    gc.freeze()
    server.run(sockets=[sock])
    return 0


def _server_class():
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, telling the batcher about a shutdown signal the moment it arrives."""

        def __init__(self, config, batcher, grace: float) -> None:
            super().__init__(config)
            self.batcher = batcher
            self.grace = grace

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            self.batcher.begin_shutdown(self.grace)
            super().handle_exit(sig, frame)
            if sig == signal.SIGTERM:
                # uvicorn re-raises the signal after its graceful shutdown, which would end the
                # process with "killed by SIGTERM"; a clean shutdown exits with status 0 instead
                self._captured_signals = [s for s in self._captured_signals if s != signal.SIGTERM]

    return Server


def _Server(config, batcher, grace: float):  # noqa: N802 - reads like the class it builds
    return _server_class()(config, batcher, grace)
