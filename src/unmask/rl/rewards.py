"""Rewards, computed in worker processes from the decoded text alone.

A reward spec is one of:

* ``task`` -- the task's own ``score(item, answer)``; ``weights`` (``"correct:1,r_correct:0.5"``)
  says which score fields add up to the reward (default ``correct``);
* ``code`` -- the completion is run against the item's ``tests`` in the sandbox
  (:func:`unmask.eval.sandbox.run_program`); the reward is the fraction of tests passed;
* ``package.module:function`` -- any function ``f(item, completion_text) -> float``.

Workers (``workers > 0``) rebuild the reward from its spec, so nothing of the policy's process
(weights, optimiser, mutable state) can reach or be touched by a reward function, and a slow
reward (a sandboxed program) overlaps with the others.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..errors import UnmaskError


@dataclass(frozen=True)
class RewardSpec:
    kind: str  # task | code | a "module:function" path
    weights: tuple[tuple[str, float], ...] = (("correct", 1.0),)
    task_json: dict[str, Any] | None = field(default=None, hash=False, compare=False)


def parse_weights(text: str) -> tuple[tuple[str, float], ...]:
    """``"correct:1,r_correct:0.5"`` -> ``(("correct", 1.0), ("r_correct", 0.5))``; a bare name weighs 1."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        name, _, w = part.partition(":")
        try:
            out.append((name.strip(), float(w) if w else 1.0))
        except ValueError:
            raise UnmaskError(f"--reward_weights: {part!r} is not NAME or NAME:WEIGHT") from None
    if not out:
        raise UnmaskError("--reward_weights names no score field")
    return tuple(out)


def load_function(path: str) -> Callable[[dict[str, Any], str], float]:
    """Import ``package.module:function``; a path that does not import is the user's error."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise UnmaskError(f"--reward {path!r}: expected task, code or package.module:function")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # any failure to import is a bad --reward, not a crash
        raise UnmaskError(f"--reward {path!r}: cannot import {module_name} ({type(e).__name__}: {e})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UnmaskError(f"--reward {path!r}: {module_name} has no function {attr}")
    return fn


def build(spec: RewardSpec) -> Callable[[dict[str, Any], Any], float]:
    """The reward as a plain function ``(item, completion) -> float`` (``completion``: token ids for
    ``task``, text otherwise)."""
    if spec.kind == "task":
        from ..tasks.synthetic import task_from_json

        if spec.task_json is None:
            raise UnmaskError("--reward task needs a task (--task, or a model folder with task.json)")
        task = task_from_json(spec.task_json)
        weights = spec.weights

        def task_reward(item, completion):
            scores = task.score(item, completion)
            missing = [k for k, _ in weights if k not in scores]
            if missing:
                raise UnmaskError(f"--reward_weights: task {task.name} has no score field(s) {missing} "
                                  f"(it has {sorted(scores)})")
            return float(sum(w * float(scores[k]) for k, w in weights))

        return task_reward
    if spec.kind == "code":
        from ..eval.sandbox import run_program

        def code_reward(item, completion):
            tests = item.get("tests") or item.get("test_list") or []
            if isinstance(tests, str):
                tests = [tests]
            if not tests:
                raise UnmaskError("--reward code: an item has no 'tests'")
            res = run_program(str(completion), tests)
            return res.tests_passed / max(1, res.tests_total)

        return code_reward
    fn = load_function(spec.kind)
    return lambda item, completion: float(fn(item, completion))


_WORKER_REWARD: Callable | None = None


def _init_worker(spec: RewardSpec) -> None:
    global _WORKER_REWARD
    _WORKER_REWARD = build(spec)
    _exit_with_parent()


def _exit_with_parent() -> None:
    """A worker whose trainer was killed (SIGKILL leaves no chance to shut the pool down) would
    idle forever as an orphan: watch the parent and leave when it is gone."""
    import os
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(2.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def _score(args: tuple[dict[str, Any], Any]) -> float:
    assert _WORKER_REWARD is not None
    return _WORKER_REWARD(*args)


def _ping() -> bool:
    return _WORKER_REWARD is not None


class RewardPool:
    """Scores completions in ``workers`` processes (0: in this process, for tests and debugging).
    The spec is checked once at start-up so a bad reward fails before any rollout."""

    def __init__(self, spec: RewardSpec, workers: int = 1) -> None:
        self.spec = spec
        build(spec)  # fail fast, with the user's error, in the caller's process
        self._local = build(spec) if workers <= 0 else None
        self._pool = None
        if workers > 0:
            import multiprocessing as mp

            self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                             initializer=_init_worker, initargs=(spec,))
            self._pool.submit(_ping).result()

    def __call__(self, items: Sequence[dict[str, Any]], completions: Sequence[Any]) -> list[float]:
        pairs = list(zip(items, completions))
        if self._pool is None:
            return [float(self._local(i, c)) for i, c in pairs]
        return [float(x) for x in self._pool.map(_score, pairs, chunksize=max(1, len(pairs) // 8))]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
