"""``unmask eval``: decode a task's samples with one model and one sampler, score them, write
per-sample records as they finish, and summarise.

Results key. A run is identified by the hash of everything that can change a sample's output or
score: the model's weights fingerprint and dtype, the task's prompt/scoring settings and version,
the data file's sha256, the prompt style (chat template, few-shot count), the sampler and all its
options, the complete :class:`~unmask.decoding.engine.GenerationConfig` (including stop tokens and
seed) and, for code tasks, the sandbox limits. The run folder is
``OUTPUT_DIR/<task>__<model>__<sampler>__<key[:12]>``; its ``config.json`` spells the key out. Each
record carries the run key and the sample id, so re-running the same command skips finished
samples, and changing any setting starts a new run instead of mixing results. ``--limit`` and
``--batch_size`` are not part of the key: a larger limit extends a run, and batching never changes
a sample's output.

Seeds. Sample ``i`` is decoded with seed ``hash(seed, sample id)``, so its tokens do not depend on
the batch it lands in, the process that decodes it, or the order of the data.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UnmaskError
from ..tasks.benchmarks.base import EvalTask, sha256_json
from . import distributed
from .results import RecordStore, atomic_write_json, summarize

RESULTS_FORMAT = 1


@dataclass
class EvalSpec:
    """Everything ``unmask eval`` takes (the CLI builds one from its flags)."""

    model: str | None
    task: str | None
    sampler: str = "confidence"
    sampler_options: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)  # GenerationConfig fields set by the user
    limit: int | None = None
    data: str | None = None
    output_dir: str = "results"
    batch_size: int = 1
    chat_template: bool | None = None
    num_fewshot: int | None = None
    device: str = "auto"
    dtype: str = "auto"
    exec_timeout: float | None = None  # per-test limit for code tasks
    wandb: bool = False
    wandb_project: str | None = None
    progress: bool = True
    merge_timeout: float | None = None  # rank 0's wait for other ranks (None: wait forever)
    threads: int | None = None  # torch CPU threads
    lockstep: Any = None  # unmask.decoding.lockstep.LockstepOptions: decode R and A regions in lockstep
    resolved_config: dict[str, Any] | None = None  # the CLI's fully resolved preset/config/flags


def check_spec(spec: EvalSpec) -> None:
    """The boundary rule for an eval run, whichever door it came through (CLI, sweep, Python):
    numbers finite and in range, decoding overrides that exist, sampler options some sampler
    knows (see :mod:`unmask.validation` and :mod:`unmask.config_schema`)."""
    from ..config_schema import generation_keys
    from ..samplers.base import check_sampler_options
    from ..validation import check_option

    for name in ("limit", "batch_size", "num_fewshot", "exec_timeout", "threads", "merge_timeout"):
        setattr(spec, name, check_option(name, getattr(spec, name), f"--{name}"))
    if spec.batch_size is None:
        raise UnmaskError("--batch_size must be given")
    unknown = sorted(set(spec.overrides) - generation_keys())
    if unknown:
        raise UnmaskError(f"unknown generation setting(s) {', '.join(unknown)}")
    spec.sampler_options = check_sampler_options(dict(spec.sampler_options))
    if not isinstance(spec.output_dir, (str, os.PathLike)) or not str(spec.output_dir):
        raise UnmaskError(f"--output_dir must be a folder name, got {spec.output_dir!r}")


# --------------------------------------------------------------------------- model identity
def model_fingerprint(folder: str | Path) -> str:
    """Cheap identity of a checkpoint folder: config.json, plus each weight file's name, size and
    first/last MiB (enough to tell two trainings of the same architecture apart without reading
    16 GB)."""
    folder = Path(folder)
    h = hashlib.sha256()
    cfg = folder / "config.json"
    if cfg.exists():
        h.update(cfg.read_bytes())
    for f in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        size = f.stat().st_size
        h.update(f"{f.name}:{size}".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 20))
            if size > (1 << 20):
                fh.seek(max(0, size - (1 << 20)))
                h.update(fh.read(1 << 20))
    return h.hexdigest()


def load_session(name: str | None, device: str, dtype: str):
    """Model + tokenizer as a :class:`unmask.session.Session` (the task is resolved separately,
    from the folder's ``task.json``)."""
    from ..models.loading import load_model
    from ..models.registry import resolve_model_path
    from ..session import Session
    from ..tokenizer import load_tokenizer

    if name is None:
        raise UnmaskError("--model_name_or_path is required")
    folder = resolve_model_path(name)
    model = load_model(folder, dtype=dtype, device=device)
    model.eval()
    tok = None
    if any((folder / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
        tok = load_tokenizer(folder)
    return Session(model, tok, folder, None)


def model_tag(name: str | None, folder: Path | None) -> str:
    """A readable folder-name part for a model: the alias or hub id, or for a local folder its
    last two path components (``runs/tiny-sudoku/model`` -> ``tiny-sudoku-model``)."""
    raw = name or (folder.name if folder else "model")
    if name is not None and Path(name).exists():
        parts = Path(name).resolve().parts
        raw = "-".join(parts[-2:]) if len(parts) >= 2 else parts[-1]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw.replace("/", "--")).strip("-") or "model"


def sample_seed(base: int | None, sample_id: str) -> int:
    """A per-sample seed from the run seed and the sample id (stable across processes)."""
    b = 0 if base is None else int(base)
    return (b * 1_000_003 + zlib.crc32(sample_id.encode())) % (2**31 - 1)


# --------------------------------------------------------------------------- settings
def resolve_chat(task: EvalTask, session, chat_template: bool | None) -> bool:
    if not task.uses_chat:
        return False
    has = bool(getattr(session.tokenizer, "chat_template", None)) if session.tokenizer is not None else False
    if chat_template is None:
        return has
    if chat_template and not has:
        raise UnmaskError("--chat_template True but this tokenizer has no chat template")
    return bool(chat_template)


def generation_overrides(task: EvalTask, user: dict[str, Any]) -> dict[str, Any]:
    """Task defaults under the user's flags. The default step count only applies when the user
    chose none of max_new_tokens / steps / tokens_per_step (it is tied to the default length)."""
    defaults = task.generation_defaults()
    merged = dict(defaults)
    if any(k in user for k in ("max_new_tokens", "steps", "tokens_per_step")):
        merged.pop("steps", None)
    merged.update(user)
    if defaults.get("max_new_tokens") == 0 and user.get("max_new_tokens", 0) != 0:
        raise UnmaskError(f"{task.name} is an infilling task: it decodes the masks of its canvas, "
                          "so --max_new_tokens must be 0 (or left out)")
    return merged


# --------------------------------------------------------------------------- the run
class EvalRun:
    """One evaluation run (built by :func:`run_eval`; the sweep reuses a loaded session)."""

    def __init__(self, spec: EvalSpec, session=None) -> None:
        self.spec = spec
        self.rank, self.world = distributed.rank_and_world()
        check_spec(spec)
        if spec.threads is not None:
            import torch

            torch.set_num_threads(max(1, int(spec.threads)))
        if session is None:
            from ..cli import resolve_device

            device = resolve_device(distributed.device_for_rank(spec.device, self.world))
            session = load_session(spec.model, device, spec.dtype)
        self.session = session
        from ..tasks.benchmarks.registry import resolve_task

        self.task = resolve_task(spec.task, session.folder)
        if hasattr(self.task, "set_limit"):
            self.task.set_limit(spec.limit)
        items = self.task.load(spec.data)
        self.items = items if spec.limit is None else items[: spec.limit]
        self.chat = resolve_chat(self.task, session, spec.chat_template)
        self.num_fewshot = self.task.default_fewshot if spec.num_fewshot is None else spec.num_fewshot
        if self.num_fewshot < 0:
            raise UnmaskError("--num_fewshot must be >= 0")
        self.overrides = generation_overrides(self.task, spec.overrides)
        self.gen_config = session.generation_config(self.overrides)
        self.gen_config.validate()
        from ..samplers import make_sampler

        self.sampler_config = make_sampler(spec.sampler, **spec.sampler_options).config()
        self.sandbox: str | None = None
        if self.task.runs_code:
            from .sandbox import Limits, sandbox_mode

            if spec.exec_timeout is not None:
                self.task.limits = Limits(per_test_timeout_s=float(spec.exec_timeout))  # type: ignore[attr-defined]
            self.sandbox = sandbox_mode()  # "namespaces" | "fallback" (warns once, loudly)
        self.data_hash = self.task.data_fingerprint(spec.data)
        self.key_material = self._key_material()
        self.run_key = sha256_json(self.key_material)[:16]
        tag = model_tag(spec.model, session.folder)
        sampler_tag = str(self.sampler_config.get("sampler", spec.sampler))
        self.run_dir = Path(spec.output_dir) / f"{self.task.name}__{tag}__{sampler_tag}__{self.run_key[:12]}"
        if self.task.runs_code:
            self.task.forbidden_paths = [str(self._forbidden_path())]  # type: ignore[attr-defined]
        self.store = RecordStore(self.run_dir, self.rank, self.world)

    def _forbidden_path(self) -> Path:
        """What generated code may not read: the whole output folder, unless it contains the
        temporary folder or the Python installation (e.g. ``--output_dir /tmp``), then this run's
        folder only."""
        out = Path(self.spec.output_dir).resolve()
        needed = [Path(tempfile.gettempdir()).resolve(), Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()]
        if any(p == out or out in p.parents for p in needed):
            return self.run_dir.resolve()
        return out

    def _key_material(self) -> dict[str, Any]:
        s = self.spec
        model = self.session.model
        gen = self.gen_config.to_dict()
        return {
            "format": RESULTS_FORMAT,
            "model": model_fingerprint(self.session.folder) if self.session.folder else s.model,
            "dtype": str(getattr(model, "dtype", "")),
            "task": self.task.settings(),
            "data": self.data_hash,
            "prompt": {"chat_template": self.chat, "num_fewshot": self.num_fewshot},
            "sampler": self.sampler_config,
            "sampler_options": {k: v for k, v in sorted(s.sampler_options.items()) if v is not None},
            "generation": gen,
            "exec": vars(self.task.limits) if self.task.runs_code else None,  # type: ignore[attr-defined]
            # only present when on, so the keys (and resumable results) of plain runs are unchanged
            **({"lockstep": s.lockstep.config()} if s.lockstep is not None and s.lockstep.on else {}),
        }

    def describe(self) -> dict[str, Any]:
        """The human-readable run configuration written to ``config.json``."""
        s = self.spec
        return {
            "run_key": self.run_key,
            "resolved_config": s.resolved_config,
            "model": s.model,
            "model_folder": str(self.session.folder) if self.session.folder else None,
            "task": self.task.name,
            "data": s.data or str(self.task.default_data_path() or "generated"),
            "data_sha256": self.data_hash,
            "sampler": s.sampler,
            "sampler_options": s.sampler_options,
            "generation": self.gen_config.to_dict(),
            "chat_template": self.chat,
            "num_fewshot": self.num_fewshot,
            "key_material": self.key_material,
        }

    # ------------------------------------------------------------------ decode + score
    def pending(self) -> list[int]:
        done = self.store.load(self.run_key)
        idx = [i for i, it in enumerate(self.items) if str(it["id"]) not in done]
        return distributed.shard(idx, self.rank, self.world)

    def run(self, on_progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        from ..userio import ensure_dir
        from .lock import RunLock

        ensure_dir(self.spec.output_dir, "--output_dir")
        ensure_dir(self.run_dir, "run folder")
        with RunLock(self.run_dir, self.rank, self.world):
            return self._run(on_progress)

    def _run(self, on_progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        t_start = time.perf_counter()
        if self.rank == 0 and not (self.run_dir / "config.json").exists():
            atomic_write_json(self.run_dir / "config.json", self.describe())
        todo = self.pending()
        wandb_run = self._wandb_init() if self.spec.wandb and self.rank == 0 else None
        progress = on_progress
        bar = None
        if progress is None and self.spec.progress and todo:
            bar, progress = _progress_bar(f"{self.task.name} [{self.spec.sampler}]", len(todo))
        try:
            self.store.open()
            bs = self.spec.batch_size
            for b0 in range(0, len(todo), bs):
                batch = todo[b0 : b0 + bs]
                for rec in self._decode_batch(batch):
                    self.store.append(rec)
                    if wandb_run is not None:
                        wandb_run.log({**({} if rec["score"] is None else {"score": rec["score"]}), "nfe": rec["nfe"],
                                       "cumulative_entropy": rec["cumulative_entropy"],
                                       **{f"lockstep/{k}": v for k, v in rec.get("lockstep", {}).items()
                                          if isinstance(v, (int, float))}})
                    if progress is not None:
                        progress(1)
        finally:
            self.store.close()
            if bar is not None:
                bar.stop()
        summary = self.finish(time.perf_counter() - t_start)
        if wandb_run is not None:
            wandb_run.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float))})
            wandb_run.finish()
        return summary

    def _decode_batch(self, batch: list[int]) -> list[dict[str, Any]]:
        session, task = self.session, self.task
        items = [self.items[i] for i in batch]
        prompts = [task.encode(session, it, self.chat, self.num_fewshot) for it in items]
        seeds = [sample_seed(self.gen_config.seed, str(it["id"])) for it in items]
        overrides = {**self.overrides, "seed": seeds}
        spans = None
        if self.spec.lockstep is not None and self.spec.lockstep.on:

            prompts, spans, overrides = lockstep_layout(self, items, prompts, overrides)
        out = session.generate_ids(prompts, self.spec.sampler, self.spec.sampler_options, overrides)
        share = out.seconds / len(batch)
        records = []
        for j, (i, item) in enumerate(zip(batch, items)):
            if spans is None or getattr(task, "task", None) is not None:  # synthetic tasks parse the canvas
                text = task.output_text(session, out, j, self.chat)
            else:

                text = session.region_texts(out.sequences[j], spans[j])["text"]
            t0 = time.perf_counter()
            answer = task.extract(text, item)
            metrics = task.score(item, answer, text)
            score_seconds = time.perf_counter() - t0
            tr = out.traces[j]
            rec: dict[str, Any] = {
                "run": self.run_key,
                "id": str(item["id"]),
                "index": i,
                "task": task.name,
                "model": self.spec.model,
                "sampler": self.spec.sampler,
                "prompt_tokens": len(prompts[j]),
                "output": text,
                "answer": answer,
                "reference": _jsonable(task.reference(item)),
                # a task without a reference answer (writing) has no correctness to average: None, not 0
                "score": float(metrics["correct"]) if "correct" in metrics else None,
                "metrics": {k: float(v) for k, v in metrics.items() if k != "correct"},
                "nfe": int(tr.nfe),
                "forward_rows": int(tr.forward_rows),
                "forward_tokens": int(tr.forward_tokens),
                "cumulative_entropy": float(tr.cumulative_entropy),
                "generated_tokens": int(task.generated_tokens(out, j, prompts[j])),
                "seconds": share,
                "score_seconds": score_seconds,
                "batch_size": len(batch),
                "seed": seeds[j],
                "rank": self.rank,
            }
            if spans is not None:
                from ..decoding.lockstep import lockstep_metrics

                rec["lockstep"] = lockstep_metrics(tr)
                rec["generated_tokens"] = sum(1 for r in tr.tokens if r.position < tr.prompt_length)
            if task.runs_code:
                rec.update(task.exec_details())  # type: ignore[attr-defined]
            records.append(rec)
        return records

    # ------------------------------------------------------------------ summary
    def finish(self, elapsed: float) -> dict[str, Any]:
        expected = {str(it["id"]) for it in self.items}
        if self.world > 1 and self.rank != 0:
            done = self.store.load(self.run_key)
            mine = [r for k, r in done.items() if k in expected]
            return {"rank": self.rank, "world_size": self.world, "run_dir": str(self.run_dir),
                    "note": "rank 0 writes the summary", **summarize(mine, len(expected))}
        deadline = None if self.spec.merge_timeout is None else time.time() + self.spec.merge_timeout
        while True:
            done = self.store.load(self.run_key)
            recs = [r for k, r in done.items() if k in expected]
            if len(recs) >= len(expected) or self.world == 1:
                break
            if deadline is not None and time.time() > deadline:
                break
            time.sleep(0.5)
        summary = {
            "task": self.task.name,
            "model": self.spec.model,
            "sampler": self.spec.sampler,
            "sampler_options": self.spec.sampler_options,
            "run_key": self.run_key,
            "run_dir": str(self.run_dir),
            **summarize(recs, len(expected)),
            "elapsed_seconds": elapsed,
            "world_size": self.world,
            "skipped_torn_lines": self.store.skipped_lines,
            **({"sandbox": self.sandbox} if self.sandbox else {}),
            "config": {
                "generation": {k: v for k, v in self.gen_config.to_dict().items() if v is not None},
                "chat_template": self.chat,
                "num_fewshot": self.num_fewshot,
                "data": self.spec.data,
                "data_sha256": self.data_hash,
                "limit": self.spec.limit,
                "resolved": self.spec.resolved_config,
            },
        }
        atomic_write_json(self.run_dir / "summary.json", summary)
        return summary

    def _wandb_init(self):
        from ..tracking import start

        return start(self.spec.wandb_project, self.run_dir.name, self.describe(), run_id=self.run_key)


def lockstep_layout(run, items, prompts, overrides):
    """``unmask eval --lockstep``: the canvases, per-item spans and generation overrides. A task
    model's task gives its own regions; a text benchmark gets ``prompt R separator A`` (the prompt
    as the task encodes it, chat template included)."""
    from ..decoding.lockstep import task_regions

    opts = run.spec.lockstep
    synthetic = getattr(run.task, "task", None)
    if synthetic is not None:
        spans = [task_regions(synthetic, it) for it in items]
        new_prompts = prompts
    else:
        if opts.answer_separator is None:
            raise UnmaskError("eval --lockstep on a text benchmark needs --answer_separator TEXT (e.g. '\\nAnswer: ') "
                              "to place R and A after the prompt")
        new_prompts, spans = run.session.separator_canvases(prompts, opts)
    return new_prompts, spans, {**overrides, "max_new_tokens": 0, "plan": opts.plan(spans)}


def _jsonable(v: Any) -> Any:
    try:
        json.dumps(v)
        return v
    except TypeError:
        return str(v)


def _progress_bar(label: str, total: int):
    """The shared progress bar (:func:`unmask.tracking.progress_bar`)."""
    from ..tracking import progress_bar

    return progress_bar(label, total)


def run_eval(spec: EvalSpec, session=None, on_progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run (or resume) one evaluation and return its summary (see :class:`EvalRun`)."""
    return EvalRun(spec, session).run(on_progress)
