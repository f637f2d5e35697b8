"""The CLI starts without torch, and CI runs the README's test command in a fresh venv.

torch is made unimportable in a child interpreter (``sys.modules['torch'] = None``), so these
tests fail the moment any import on the path to ``--help``, ``presets``, a bad-flag error or the
code sandbox reaches torch."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NO_TORCH = "import sys\nsys.modules['torch'] = None\n"


def _without_torch(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-c", NO_TORCH + code], capture_output=True, text=True, env=env,
                          timeout=60)


@pytest.mark.parametrize("argv,rc,expect", [
    (["--help"], 0, "sample"),
    (["presets"], 0, "fast_dllm"),
    (["sample", "--help"], 0, "--max_new_tokens"),
    (["serve", "--help"], 0, "--lockstep"),
    (["train", "--help"], 0, "--max_steps"),
    (["sample", "--steps", "abc"], 2, "error:"),
    (["sample", "--steps", "0"], 2, "error: --steps must be"),
    (["sample", "--no_such_flag"], 2, "error:"),
    (["sample", "generation.stepz=3"], 2, "unknown config key"),
    (["sample", "--preset", "nope"], 2, "unknown preset 'nope'"),
])
def test_cli_paths_that_need_no_model_run_without_torch(argv, rc, expect):
    code = ("from unmask.cli import main\n"
            f"try:\n    rc = main({argv!r})\nexcept SystemExit as e:\n    rc = e.code\n"
            "sys.stdout.flush()\nprint('RC', rc)\n")
    out = _without_torch(code)
    assert out.stdout.rstrip().endswith(f"RC {rc}"), out.stderr
    assert expect in out.stdout + out.stderr


def test_the_sandbox_imports_without_torch():
    out = _without_torch("import json\nfrom unmask.eval.sandbox import run_program, isolation_report\n"
                         "print(json.dumps(sorted(isolation_report())))\n")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)


def test_the_public_api_still_resolves_lazily():
    import unmask

    assert callable(unmask.generate) and unmask.GenerationConfig.__name__ == "GenerationConfig"
    assert set(unmask.__all__) <= set(dir(unmask)) | {"__version__"}
    with pytest.raises(AttributeError):
        unmask.no_such_name  # noqa: B018


def _readme_test_command() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("Run the tests"):]
    return re.search(r"```bash\n(.+?)\n```", section, re.S).group(1).strip()


def test_ci_runs_the_readme_test_command_in_a_fresh_venv():
    ci = (ROOT / ".ci" / "run").read_text()
    lines = [ln.strip() for ln in ci.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    cmd = _readme_test_command()
    assert cmd in lines, "the README's test command must appear verbatim in .ci/run"
    venv_at = next(i for i, ln in enumerate(lines) if "-m venv" in ln)
    activate_at = next(i for i, ln in enumerate(lines) if "/bin/activate" in ln)
    assert venv_at < activate_at < lines.index(cmd)
