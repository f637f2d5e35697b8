"""Shared fixtures: tiny random-weight LLaDA and Dream checkpoints written to disk and loaded back
through the same path as the real 8B models."""

from __future__ import annotations

import pytest
import torch
from tiny import write_tiny

from unmask.models.loading import load_model

# tiny models: intra-op threads only add contention (the suite runs on 2 shared cores)
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_llada_dir(tmp_path_factory):
    return write_tiny(tmp_path_factory.mktemp("llada"), "llada")


@pytest.fixture(scope="session")
def tiny_dream_dir(tmp_path_factory):
    return write_tiny(tmp_path_factory.mktemp("dream"), "dream")


@pytest.fixture(scope="session")
def tiny_llada(tiny_llada_dir):
    return load_model(tiny_llada_dir)


@pytest.fixture(scope="session")
def tiny_dream(tiny_dream_dir):
    return load_model(tiny_dream_dir)


@pytest.fixture(scope="session")
def tiny_llada_wpe(tmp_path_factory):
    """LLaDA with ``rope: false``: learned absolute positions (the layout of our task models)."""
    return load_model(write_tiny(tmp_path_factory.mktemp("llada_wpe"), "llada", rope=False))


@pytest.fixture(scope="session", params=["llada", "dream", "llada_wpe"])
def tiny_model(request, tiny_llada, tiny_dream, tiny_llada_wpe):
    return {"llada": tiny_llada, "dream": tiny_dream, "llada_wpe": tiny_llada_wpe}[request.param]


def pytest_terminal_summary(terminalreporter):
    """The docs run's counts (tests/test_docs.py): blocks run, run with substitutions, opted out."""
    import sys

    runner = sys.modules.get("docs_runner")
    if runner is None or not (runner.Stats.run or runner.Stats.skipped):
        return
    s = runner.Stats
    terminalreporter.write_line(
        f"docs: {s.run} blocks run ({s.substituted} with substitutions), {s.compared} output blocks compared, "
        f"{len(s.skipped)} opted out (UNMASK_DOCS_SIZE={runner.size()})")
    for line in s.skipped:
        terminalreporter.write_line(f"  opted out: {line}")
