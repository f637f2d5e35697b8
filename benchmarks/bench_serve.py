"""Load test of ``unmask serve`` (issue 21): throughput and latency against 1, 4, 16, 64 clients.

The script starts its own server on 127.0.0.1 (a free port) with a built-in tiny model, then for
each concurrency level runs ``--requests`` completion requests (200 by default) from that many
concurrent clients (asyncio + httpx, one connection per client, at most 16 clients per client
process), each request waiting for its
answer before the client sends the next (closed loop). Every loop is bounded: a fixed number of
requests, a per-request timeout and a time limit per level; nothing leaves 127.0.0.1.

Reported per level: requests/s, p50/p95 latency, generated tokens/s, the engine batches formed
(taken from the server's ``/health`` counters before and after the level), errors, and the
throughput relative to one client. With ``--repeats 2`` the levels run twice, interleaved
(1, 4, 16, 64, 1, 4, ...), and each ratio is taken within its own repeat.

Requests by model: ``tiny-multiply`` gets ``ab*cd=`` with random two-digit factors (the model
fills the 4 product digits), ``tiny-sudoku`` gets 28-32-givens puzzles, ``tiny-nae-sat`` its
built-in example; every request has its own seed.

    python benchmarks/bench_serve.py                        # tiny-multiply, 200 requests per level
    python benchmarks/bench_serve.py --model tiny-sudoku --json serve_sudoku.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


def start_server(args: argparse.Namespace, log: Path) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "unmask", "serve", "--model_name_or_path", args.model, "--host", HOST, "--port", "0",
           "--max_batch_size", str(args.max_batch_size), "--max_wait_ms", str(args.max_wait_ms),
           "--max_queue", str(max(args.clients) * 2), "--log_level", "error", *args.server_args]
    fh = open(log, "w")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + args.start_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited:\n{log.read_text()}")
        m = re.search(r"http://127\.0\.0\.1:(\d+)/v1", log.read_text())
        if m:
            port = int(m.group(1))
            try:
                if httpx.get(f"http://{HOST}:{port}/health", timeout=5).status_code == 200:
                    return proc, port
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"server did not start within {args.start_timeout} s:\n{log.read_text()}")


def make_prompts(model: str, n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    if model == "tiny-multiply":
        return [f"{rng.randint(10, 99)}*{rng.randint(10, 99)}=" for _ in range(n)]
    if model == "tiny-sudoku":
        sys.path.insert(0, str(ROOT / "src"))
        from unmask.models.registry import resolve_model_path
        from unmask.tasks.synthetic import task_from_json

        task = task_from_json(json.loads((resolve_model_path(model) / "task.json").read_text()))
        return [it["puzzle"] for it in task.make_dataset(n, seed=seed, givens=(28, 32))]
    if model == "tiny-nae-sat":
        return [""] * n
    return [f"Request {i}: write one sentence about the sea." for i in range(n)]


async def _clients(port: int, n_clients: int, jobs: list[tuple[int, str]], args: argparse.Namespace,
                   seed0: int) -> dict[str, Any]:
    """Run ``jobs`` (request index, prompt) from ``n_clients`` concurrent closed-loop clients."""
    url = f"http://{HOST}:{port}/v1/completions"
    todo = list(reversed(jobs))
    out: dict[str, Any] = {"lat": [], "tokens": 0, "errors": {}, "batch": []}
    t_end = time.monotonic() + args.level_time_limit

    async def client(http: httpx.AsyncClient) -> None:
        while todo and time.monotonic() < t_end:
            i, prompt = todo.pop()
            body: dict[str, Any] = {"model": args.model, "prompt": prompt, "seed": seed0 + i}
            if args.max_tokens:
                body["max_tokens"] = args.max_tokens
            t0 = time.perf_counter()
            try:
                r = await http.post(url, json=body, timeout=args.request_timeout)
            except httpx.HTTPError as e:
                out["errors"][type(e).__name__] = out["errors"].get(type(e).__name__, 0) + 1
                continue
            dt = time.perf_counter() - t0
            if r.status_code != 200:
                out["errors"][str(r.status_code)] = out["errors"].get(str(r.status_code), 0) + 1
                continue
            data = r.json()
            out["lat"].append(dt)
            out["tokens"] += data["usage"]["completion_tokens"]
            out["batch"].append(data["unmask"]["batch_size"])

    limits = httpx.Limits(max_connections=n_clients, max_keepalive_connections=n_clients)
    async with httpx.AsyncClient(limits=limits) as http:
        out["start"] = time.monotonic()  # CLOCK_MONOTONIC: comparable across processes on one machine
        await asyncio.gather(*(client(http) for _ in range(n_clients)))
        out["end"] = time.monotonic()
    return out


def _client_process(spec: tuple) -> dict[str, Any]:
    port, n_clients, jobs, args, seed0 = spec
    return asyncio.run(_clients(port, n_clients, jobs, args, seed0))


def run_level(port: int, clients: int, prompts: list[str], args: argparse.Namespace, seed0: int) -> dict[str, Any]:
    """``len(prompts)`` requests from ``clients`` concurrent closed-loop clients (bounded).

    One asyncio+httpx process drives at most ``--clients_per_process`` connections: measured
    here, a single process driving 64 connections was itself the bottleneck (its requests spent
    seconds in the client, not in the server), so larger levels are spread over processes."""
    procs = max(1, -(-clients // args.clients_per_process))
    jobs = list(enumerate(prompts))
    parts = []
    for p in range(procs):
        n = clients // procs + (1 if p < clients % procs else 0)
        parts.append((port, n, jobs[p::procs], args, seed0))
    before = httpx.get(f"http://{HOST}:{port}/health", timeout=10).json()
    if procs == 1:
        results = [_client_process(parts[0])]
    else:
        with multiprocessing.get_context("fork").Pool(procs) as pool:
            results = pool.map(_client_process, parts)
    after = httpx.get(f"http://{HOST}:{port}/health", timeout=10).json()
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    lat = sorted(x for r in results for x in r["lat"])
    tokens = sum(r["tokens"] for r in results)
    errors: dict[str, int] = {}
    for r in results:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    batch_of_request = [b for r in results for b in r["batch"]]
    sizes: dict[int, int] = {}
    for k, v in after["batch_sizes"].items():
        d = v - before["batch_sizes"].get(k, 0)
        if d:
            sizes[int(k)] = d
    batches = sum(sizes.values())
    rows = sum(k * v for k, v in sizes.items())

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(round(p * (len(lat) - 1))))] if lat else float("nan")

    return {
        "clients": clients, "client_processes": procs, "requests": len(lat) + sum(errors.values()), "ok": len(lat),
        "errors": sum(errors.values()), "error_kinds": errors, "wall_s": wall,
        "req_per_s": len(lat) / wall if wall > 0 else 0.0, "p50_ms": 1000 * pct(0.5), "p95_ms": 1000 * pct(0.95),
        "tokens_per_s": tokens / wall if wall > 0 else 0.0, "batches": batches,
        "mean_batch": rows / batches if batches else 0.0, "max_batch": max(sizes) if sizes else 0,
        "batch_sizes": dict(sorted(sizes.items())),
        "mean_batch_seen_by_request": statistics.fmean(batch_of_request) if batch_of_request else 0.0,
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = ["repeat", "clients", "requests", "errors", "req/s", "x vs 1 client", "p50 ms", "p95 ms", "tokens/s",
            "batches", "mean batch", "max batch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        vals = [r["repeat"], r["clients"], r["requests"], r["errors"], f"{r['req_per_s']:.1f}", f"{r['speedup']:.2f}",
                f"{r['p50_ms']:.0f}", f"{r['p95_ms']:.0f}", f"{r['tokens_per_s']:.1f}", r["batches"],
                f"{r['mean_batch']:.1f}", r["max_batch"]]
        lines.append("| " + " | ".join(str(v) for v in vals) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny-multiply", help="a built-in tiny model or a local folder")
    ap.add_argument("--clients", default="1,4,16,64", help="concurrency levels")
    ap.add_argument("--requests", type=int, default=200, help="requests per level")
    ap.add_argument("--repeats", type=int, default=1, help="run all levels this many times, interleaved")
    ap.add_argument("--max_batch_size", type=int, default=64)
    ap.add_argument("--max_wait_ms", type=float, default=5.0)
    ap.add_argument("--max_tokens", type=int, default=None, help="for language models (tiny models fill a fixed canvas)")
    ap.add_argument("--request_timeout", type=float, default=120.0)
    ap.add_argument("--level_time_limit", type=float, default=600.0, help="seconds; a level stops sending after this")
    ap.add_argument("--start_timeout", type=float, default=300.0)
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--clients_per_process", type=int, default=16, help="connections one client process drives")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--server_args", nargs=argparse.REMAINDER, default=[],
                    help="extra flags for `unmask serve` (sampler settings ...), last on the line")
    args = ap.parse_args(argv)
    args.clients = [int(c) for c in args.clients.split(",")]
    if args.requests < 1 or args.repeats < 1 or min(args.clients) < 1:
        raise SystemExit("--requests, --repeats and --clients must be >= 1")

    with tempfile.TemporaryDirectory(prefix="bench_serve_") as tmp:
        proc, port = start_server(args, Path(tmp) / "server.log")
        try:
            prompts = make_prompts(args.model, args.requests, args.seed)
            warm = run_level(port, 1, prompts[: args.warmup], args, seed0=10**6)
            if warm["errors"]:
                raise SystemExit(f"warm-up failed: {warm['error_kinds']}")
            rows = []
            for rep in range(args.repeats):
                base = None
                for c in args.clients:
                    r = run_level(port, c, prompts, args, seed0=args.seed)
                    r["repeat"] = rep + 1
                    if base is None:
                        base = r["req_per_s"]
                    r["speedup"] = r["req_per_s"] / base if base else float("nan")
                    rows.append(r)
                    print(f"repeat {rep + 1}, {c} clients: {r['req_per_s']:.1f} req/s, errors {r['errors']}",
                          file=sys.stderr, flush=True)
        finally:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(f"model {args.model}, {args.requests} requests per level, max_batch_size {args.max_batch_size}, "
          f"max_wait_ms {args.max_wait_ms:g}, server and clients on one machine ({os.cpu_count()} CPUs)")
    print(table(rows))
    print("batch sizes formed (rows: batches): " + "; ".join(
        f"{r['clients']} clients: {r['batch_sizes']}" for r in rows))
    errs = [f"{r['clients']} clients: {r['error_kinds']}" for r in rows if r["errors"]]
    print("errors: " + ("; ".join(errs) if errs else "none"))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": {k: v for k, v in vars(args).items()}, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
