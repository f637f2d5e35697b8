"""Run untrusted generated code (HumanEval, MBPP) behind an OS-level boundary, and judge it from
outside the program's reach.

Model completions are arbitrary Python. They may loop forever, fork-bomb, allocate 10 GB, delete
or read files, fill the disk, open sockets, kill the interpreter before the tests run, or try to
make failing tests pass. A Python-level guard cannot stop a determined program (it runs in the
same interpreter), so the boundary is built by the kernel, as trusted evaluation systems do.

Each run starts ``python -I -S -c BOOTSTRAP`` (:mod:`.sandbox_bootstrap`, trusted code) in its own
session. It creates new **mount, network and PID namespaces** (plus a user namespace when the
harness is not root; ``unshare(2)``, the same kernel feature behind util-linux ``unshare`` and
bubblewrap, so nothing needs installing) and forks the **program process**, which:

==========================  =================================================================
layer                       what it contains
==========================  =================================================================
filesystem view             a new root: ``/usr``, ``/bin``, ``/lib*``, ``/etc`` and the Python
                            installation bound read-only (nosuid, nodev); a minimal ``/dev``;
                            a fresh ``/proc`` that shows only the sandbox's processes; and the
                            program's own writable scratch folder at ``/tmp`` (also cwd, HOME,
                            TMPDIR) on a tmpfs of ``Limits.disk_mb``. Homes, the results folder,
                            the host's ``/tmp``, ``/run``, ``/var`` and everything else are
                            absent, whatever path or ``dir_fd`` trick is used
network namespace           empty: no interface is up, nothing can be reached
PID namespace               the program is PID 1 of its own namespace: it sees no other
                            process, and when it dies the kernel kills everything it started
unprivileged user           as root the program switches to ``nobody`` (no capabilities); as an
                            ordinary user it enters a nested user namespace, which leaves every
                            capability over the namespaces above behind. ``no_new_privs`` is set
rlimits                     address space, CPU seconds, file size, open files, processes, no
                            core dumps
audit-hook guard            a second, Python-level layer (PEP 578): refuses process creation,
                            sockets, ctypes, writes outside the scratch folder, ...
==========================  =================================================================

**The verdict is decided outside the program's reach.** The bootstrap process stays outside the
program process (the *judge*): it reads the tests only after the fork, runs them itself, and
every program name the tests use (the function under test, helpers) is a proxy whose calls run
in the program process and come back as plain data, rebuilt with exact builtin types only. So a
result object whose ``__eq__`` always returns True never reaches a comparison, there is no
in-process ``_report`` to call, and ``os._exit(0)`` at any moment is a failure. The judge alone
holds the report pipe and is not dumpable (no ptrace, no ``/proc/PID/fd``).

Where the kernel refuses namespaces (some containers, a kernel without unprivileged user
namespaces), the program runs under the **fallback**: the same judge, rlimits and privilege drop,
a fresh temporary folder, and the audit-hook guard. That guard catches accidents, not a
determined program; :func:`sandbox_mode` says which mode is active and warns once, loudly.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: modules imported before the sandbox is entered (what HumanEval/MBPP solutions and tests import);
#: in the fallback, after the switch to ``nobody``, a Python under ``/root`` may not be readable
PRELOAD_MODULES = (
    "abc", "array", "base64", "binascii", "bisect", "calendar", "cmath", "collections", "collections.abc",
    "contextlib", "copy", "dataclasses", "datetime", "decimal", "difflib", "enum", "fractions", "functools",
    "hashlib", "heapq", "io", "itertools", "json", "keyword", "math", "numbers", "operator", "pprint", "queue",
    "random", "re", "shutil", "statistics", "string", "struct", "textwrap", "time", "typing", "unicodedata", "zlib",
)

#: system folders visible (read-only) inside the sandbox; symlinks (merged /usr) are recreated
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")

NOBODY = 65534
BOOTSTRAP = (Path(__file__).with_name("sandbox_bootstrap.py")).read_text()


@dataclass(frozen=True)
class Limits:
    """Resource limits of one program run.

    ``timeout_s`` is the hard wall-clock limit for the program and all its tests (default:
    ``per_test_timeout_s * (tests + 1) + 2``); ``per_test_timeout_s`` is the per-test limit (the
    program body counts as one test); ``disk_mb`` caps the scratch folder (all files together)."""

    per_test_timeout_s: float = 5.0
    timeout_s: float | None = None
    memory_mb: int = 2048
    nproc: int = 64
    fsize_mb: int = 16
    nofile: int = 64
    disk_mb: int = 64

    def hard_timeout(self, n_tests: int) -> float:
        if self.timeout_s is not None:
            return float(self.timeout_s)
        return self.per_test_timeout_s * (n_tests + 1) + 2.0


@dataclass
class ExecResult:
    """Outcome of one program run. ``status``: passed | failed (a test raised) | error (the
    program itself raised, e.g. SyntaxError or a blocked operation) | timeout | crashed (the
    program process died, e.g. ``os._exit``, a signal or the memory limit, before the tests
    finished). ``isolation`` lists the layers that were active (``sandbox``: namespaces|fallback)."""

    passed: bool
    status: str
    tests_passed: int = 0
    tests_total: int = 0
    message: str = ""
    seconds: float = 0.0
    isolation: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _can_drop_privileges() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def python_dirs() -> list[str]:
    """Folders of the running Python that the sandbox must see (read-only) to import modules."""
    dirs = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix),
            os.path.dirname(os.path.realpath(sys.executable))}
    return sorted(dirs)


def run_program(
    program: str,
    tests: Sequence[str] = (),
    limits: Limits | None = None,
    forbidden_paths: Sequence[str | Path] = (),
    guard: bool = True,
    namespaces: bool = True,
    drop_privileges: bool = True,
) -> ExecResult:
    """Execute ``program``, then judge each test snippet against it (see the module docstring).
    Never raises for anything the program does; returns an :class:`ExecResult`.

    ``forbidden_paths`` (the results folder) and the user's home stay unseen. ``guard``,
    ``namespaces`` and ``drop_privileges`` exist so tests and benchmarks can check each layer on
    its own; evaluation always runs with all three on."""
    if os.name != "posix":  # pragma: no cover - the harness is POSIX-only
        raise RuntimeError("code execution needs a POSIX system")
    limits = limits or Limits()
    tests = [str(t) for t in tests]
    hard = limits.hard_timeout(len(tests))
    drop = drop_privileges and _can_drop_privileges()
    t0 = time.perf_counter()
    sandbox = tempfile.mkdtemp(prefix="unmask-sandbox-")  # the new root's mount point, or the fallback's folder
    if drop:
        os.chown(sandbox, NOBODY, NOBODY)
    err_fd, err_path = tempfile.mkstemp(prefix="unmask-exec-", suffix=".stderr")
    report_r, report_w = os.pipe()
    hidden = [str(Path(p).resolve()) for p in forbidden_paths] + _home()
    cfg = {
        "program": program,
        "per_test_timeout_s": float(limits.per_test_timeout_s),
        "limits": {"memory_mb": limits.memory_mb, "cpu_s": int(hard) + 1, "fsize_mb": limits.fsize_mb,
                   "nofile": limits.nofile, "nproc": limits.nproc},
        "disk_mb": int(limits.disk_mb),
        "root": sandbox,
        "hidden": hidden,
        "system_dirs": list(SYSTEM_DIRS),
        "python_dirs": python_dirs(),
        "guard": guard,
        "namespaces": namespaces,
        "drop_privileges": drop,
        "uid": NOBODY,
        "preload": list(PRELOAD_MODULES),
        "report_fd": report_w,
    }
    status, message = "crashed", ""
    proc = None
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", BOOTSTRAP],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err_fd,
            cwd=sandbox, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            start_new_session=True, pass_fds=(report_w,), close_fds=True,
        )
        os.close(report_w)
        report_w = -1
        try:
            assert proc.stdin is not None
            # two length-prefixed blobs: the bootstrap reads the tests only after the fork
            for blob in (json.dumps(cfg).encode(), json.dumps(tests).encode()):
                proc.stdin.write(len(blob).to_bytes(8, "big") + blob)
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        try:
            proc.wait(timeout=hard)
        except subprocess.TimeoutExpired:
            status, message = "timeout", f"killed after {hard:.1f}s wall clock"
    finally:
        if proc is not None:
            _kill_group(proc)
        if report_w >= 0:
            os.close(report_w)
        os.close(err_fd)
    seconds = time.perf_counter() - t0
    report = _read_report(report_r)
    err_tail = _tail(err_path)
    os.unlink(err_path)
    shutil.rmtree(sandbox, ignore_errors=True)
    if report is None:
        if status != "timeout":
            code = proc.returncode if proc is not None else None
            message = f"process ended without a report (exit status {code})"
            if err_tail:
                message += f"; stderr: {err_tail}"
        return ExecResult(False, status, 0, len(tests), message, seconds)
    st = str(report.get("status", "crashed"))
    return ExecResult(
        passed=st == "passed" and int(report.get("tests_passed", -1)) == len(tests),
        status=st,
        tests_passed=int(report.get("tests_passed", 0)),
        tests_total=len(tests),
        message=str(report.get("message", "")),
        seconds=seconds,
        isolation=dict(report.get("isolation", {})),
    )


def _home() -> list[str]:
    """The user's home folder (to hide), if there is one."""
    try:
        return [str(Path.home().resolve())]
    except (RuntimeError, KeyError, OSError):
        return []


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the bootstrap's whole process group (it leads its own session), then reap it. The
    program process dies with it: it is PID 1 of its namespace and has a parent-death signal."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
        pass


def _read_report(fd: int) -> dict[str, Any] | None:
    """The judge's report: the last well-formed line on the report pipe, which only the judge
    holds (read without blocking: the judge has exited or been killed by now)."""
    os.set_blocking(fd, False)
    data = b""
    try:
        while len(data) < (1 << 20):
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    found = None
    for line in data.splitlines():
        try:
            d = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(d, dict):
            found = d
    return found


def _tail(path: str, n: int = 400) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - n))
            return f.read().decode(errors="replace").strip()
    except OSError:
        return ""


def isolation_report() -> dict[str, Any]:
    """Which containment layers are active on this machine (runs a trivial program)."""
    res = run_program("x = 1", ["assert x == 1"])
    return {"status": res.status, **res.isolation}


_MODE: dict[str, Any] = {}


def sandbox_mode(out: Any = None) -> str:
    """``"namespaces"`` or ``"fallback"``: probed once per process. The first time the fallback is
    found, a warning goes to ``out`` (stderr by default), once: generated code then runs without
    an OS-level boundary."""
    if "mode" not in _MODE:
        iso = isolation_report()
        mode = "namespaces" if iso.get("sandbox") == "namespaces" else "fallback"
        _MODE.update(mode=mode, reason=str(iso.get("reason", "")))
        if mode == "fallback":
            print("WARNING: the code sandbox could not create Linux namespaces here "
                  f"({_MODE['reason'] or 'unknown reason'}); generated code runs under the FALLBACK "
                  "guard, which is not a security boundary. Run the evaluation in a container or VM.",
                  file=out or sys.stderr, flush=True)
    return str(_MODE["mode"])
