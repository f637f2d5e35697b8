"""Per-program cost of the code sandbox's OS-level boundary.

Runs ``--n`` trivial programs (``def f(x): return x + 1`` and one test) and ``--n`` real MBPP
reference solutions in each configuration, interleaved (A, B, C, A, B, C, ...) so that load on a
shared machine hits every configuration alike, and prints medians and means per program:

* ``namespaces``: the full sandbox (mount + network + PID namespaces, read-only view, tmpfs
  scratch, unprivileged user, rlimits, audit hook) with the judge in its own process;
* ``fallback``: the same judge without namespaces (what a machine that refuses them gets);
* ``old`` (with ``--old PATH``): another sandbox module, e.g. the version before the
  OS-level boundary (``git show 991e825:src/unmask/eval/sandbox.py > /tmp/old_sandbox.py``), loaded from
  its file;
* ``python -I -S``: starting a bare interpreter that does nothing, the floor for any design that
  runs each program in a fresh process.

Usage: ``python benchmarks/bench_sandbox.py [--n 50] [--old PATH]``
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time
from pathlib import Path

from unmask.eval.sandbox import Limits, isolation_report, run_program
from unmask.tasks.benchmarks import get_benchmark


def _load(path: str):
    spec = importlib.util.spec_from_file_location("old_sandbox", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["old_sandbox"] = mod  # dataclasses look the module up
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50, help="programs per configuration and workload")
    ap.add_argument("--old", default=None, help="path of another sandbox.py to compare against")
    args = ap.parse_args()

    trivial = ("def f(x):\n    return x + 1\n", ["assert f(1) == 2"])
    mb = get_benchmark("mbpp")
    items = [it for it in mb.load() if it["task_id"] != "123"][: args.n]  # 123 is slow by design
    real = [mb.program_and_tests(it, it["code"].replace("\r\n", "\n")) for it in items]

    configs = {
        "namespaces": lambda p, t: run_program(p, t, Limits()),
        "fallback": lambda p, t: run_program(p, t, Limits(), namespaces=False),
    }
    if args.old:
        old = _load(args.old)
        configs["old"] = lambda p, t: old.run_program(p, t, old.Limits())

    def bare(p, t):
        subprocess.run([sys.executable, "-I", "-S", "-c", "pass"], check=True)

    configs["python -I -S"] = bare
    times: dict[tuple[str, str], list[float]] = {}
    setup: dict[str, list[float]] = {}
    failures: dict[tuple[str, str], int] = {}
    for i in range(args.n):
        for workload, (prog, tests) in (("trivial", trivial), ("mbpp reference", real[i % len(real)])):
            for name, fn in configs.items():
                t0 = time.perf_counter()
                res = fn(prog, tests)
                times.setdefault((name, workload), []).append(time.perf_counter() - t0)
                if res is not None and "setup_ms" in res.isolation:
                    setup.setdefault(name, []).append(float(res.isolation["setup_ms"]))
                if res is not None and not res.passed:
                    failures[(name, workload)] = failures.get((name, workload), 0) + 1

    iso = isolation_report()
    print(f"sandbox mode here: {iso.get('sandbox')} (uid {iso.get('uid')}); {args.n} programs per cell, "
          "interleaved; one process at a time\n")
    print("| configuration | workload | median ms | mean ms | not passed |")
    print("| --- | --- | --- | --- | --- |")
    for (name, workload), ts in times.items():
        print(f"| {name} | {workload} | {1000 * statistics.median(ts):.1f} | {1000 * statistics.mean(ts):.1f} "
              f"| {failures.get((name, workload), 0)} |")
    base = {w: statistics.median(times[("fallback", w)]) for w in ("trivial", "mbpp reference")}
    print()
    for w, b in base.items():
        ns = statistics.median(times[("namespaces", w)])
        line = f"{w}: namespaces - fallback = {1000 * (ns - b):+.1f} ms per program (x{ns / b:.2f})"
        if args.old:
            o = statistics.median(times[("old", w)])
            line += f"; namespaces - old = {1000 * (ns - o):+.1f} ms (x{ns / o:.2f})"
        print(line)
    print()
    for name, ms in setup.items():
        print(f"{name}: setup inside the bootstrap (unshare, mounts, pivot_root, privilege drop, guard; "
              f"preload in the fallback) median {statistics.median(ms):.1f} ms, mean {statistics.mean(ms):.1f} ms")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
