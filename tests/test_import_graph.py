"""No import cycles between the modules issue 27 named (imports inside functions count too: a
lazy import is still a dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    mod = _module(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(max(0, node.level - 1)):
                base = base.rpartition(".")[0]
            target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
            out.add(target)
            out.update(f"{target}.{a.name}" for a in node.names)  # `from . import x` names a module
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = {_module(p): p for p in (SRC / "unmask").rglob("*.py")}
    return {m: {i for i in _imports(p) if i in files} for m, p in files.items()}


def _reaches(graph, a: str, b: str) -> bool:
    seen, todo = set(), [a]
    while todo:
        m = todo.pop()
        if m == b:
            return True
        if m not in seen:
            seen.add(m)
            todo.extend(graph.get(m, ()))
    return False


@pytest.mark.parametrize("a,b", [("unmask.session", "unmask.decoding.lockstep"),
                                 ("unmask.models.loading", "unmask.models.checkpoint_check"),
                                 ("unmask.viz.pictures", "unmask.viz.regions")])
def test_no_cycle(graph, a, b):
    assert not (_reaches(graph, a, b) and _reaches(graph, b, a)), f"{a} and {b} import each other"


def test_lockstep_run_is_gone(graph):
    assert "unmask.lockstep_run" not in graph
    assert not any("unmask.lockstep_run" in deps for deps in graph.values())


def test_decoding_modules_form_no_cycle(graph):
    """Issue 26's split of the decoding loop: config, processors, runner, state, search, the two
    step paths and the loop import downwards only (no module of ``unmask.decoding`` reaches
    itself again)."""
    mods = sorted(m for m in graph if m.startswith("unmask.decoding.") and m != "unmask.decoding")
    assert {"unmask.decoding.config", "unmask.decoding.runner", "unmask.decoding.search",
            "unmask.decoding.state", "unmask.decoding.engine"} <= set(mods)
    sub = {m: {d for d in graph[m] if d in mods} for m in mods}
    for m in mods:
        for d in sub[m]:
            assert not _reaches(sub, d, m), f"{m} and {d} import each other"
