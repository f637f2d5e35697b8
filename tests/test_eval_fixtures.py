"""Shared helpers for the evaluation tests (imported by the other ``test_eval_*`` modules):
tiny random models with a long context for the text benchmarks, tiny random models for the
synthetic tasks, and a one-thread torch setting (tiny matrices on a busy 2-core machine run
hundreds of times faster single-threaded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from tiny import make_tokenizer, peaked, tiny_config

from unmask.models.loading import build_model, save_model

REPO = Path(__file__).resolve().parent.parent


@contextmanager
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def write_text_model(folder: Path, arch: str = "llada", max_len: int = 4096) -> Path:
    """A random-weight model with the test char tokenizer (and its chat template), long enough
    for few-shot benchmark prompts."""
    tok = make_tokenizer()
    key = "max_sequence_length" if arch == "llada" else "max_position_embeddings"
    model = peaked(build_model(tiny_config(arch, len(tok), **{key: max_len}), seed=0), seed=0)
    save_model(model, folder, dtype="float32")
    tok.save_pretrained(str(folder))
    return folder


def write_synthetic_model(folder: Path, task_name: str, **params) -> Path:
    """A random-weight LLaDA sized for a synthetic task's canvas, with its tokenizer and task.json
    (the layout of the built-in tiny models)."""
    from unmask.tasks.synthetic import get_task

    task = get_task(task_name, **params)
    cfg = tiny_config("llada", task.vocab_size, max_sequence_length=task.canvas_len)
    model = peaked(build_model(cfg, seed=1), seed=1)
    save_model(model, folder, dtype="float32")
    task.tokenizer.save_pretrained(str(folder))
    (Path(folder) / "task.json").write_text(json.dumps(task.task_json()))
    return folder


@pytest.fixture(scope="session")
def text_model_dir(tmp_path_factory):
    return write_text_model(tmp_path_factory.mktemp("eval_llada"), "llada")


@pytest.fixture(scope="session")
def text_dream_dir(tmp_path_factory):
    return write_text_model(tmp_path_factory.mktemp("eval_dream"), "dream")


@pytest.fixture(scope="session")
def multiply_model_dir(tmp_path_factory):
    return write_synthetic_model(tmp_path_factory.mktemp("eval_multiply"), "multiply")


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "UNMASK_NO_PROGRESS": "1",
                "PYTHONPATH": str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")})
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(k, None)
    return env


def run_cli(args: list[str], env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "unmask", *args], capture_output=True, text=True,
                          env=env or cli_env(), timeout=timeout)


def records(run_dir: Path) -> list[dict]:
    out = []
    for f in sorted(Path(run_dir).glob("samples*.jsonl")):
        for line in f.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out
