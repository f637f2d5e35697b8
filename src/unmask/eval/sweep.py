"""``unmask sweep CONFIG.yaml``: a grid of models x tasks x samplers x settings.

Config (YAML)::

    output_dir: results/sweep_tiny      # run folders, table and plots go here
    limit: 3                            # defaults for every run (any EvalSpec field)
    batch_size: 4
    device: cpu
    models: [tiny-multiply]             # names/paths, or {name: label, path: folder, ...}
                                        # (other keys: settings for that model only)
    tasks: [auto]                       # names ("auto": a tiny model's own task), or
                                        # {name: gsm8k, limit: 10, num_fewshot: 0, data: f.jsonl}
    samplers:                           # names, or {name: info_gain, options: {candidate_number: 4}}
      - confidence
      - {name: info_gain, options: {candidate_number: 4}}
    settings:                           # grid: every combination of these values
      tokens_per_step: [1, 2, 3]
    common: {temperature: 0.0}          # fixed settings for every run

Setting and option keys that are :class:`~unmask.decoding.engine.GenerationConfig` fields
(``tokens_per_step``, ``steps``, ``block_size``, ``max_new_tokens``, ``temperature``, ...) set the
decoding; ``num_fewshot``, ``chat_template``, ``batch_size`` and ``limit`` set the run; any other
key is passed to the sampler (``threshold``, ``candidate_number``, ...).

Every run is an ordinary ``unmask eval`` run (same folders and results key), so a finished run
is skipped and an interrupted one resumes. Each model is loaded once. At the end the sweep writes
``sweep_summary.md`` and ``sweep_summary.csv`` (one row per run) and, when matplotlib is
installed, ``accuracy_vs_nfe.png`` and ``entropy_vs_accuracy.png``.
"""

from __future__ import annotations

import csv
import itertools
import json
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..config_schema import LOCKSTEP_KEYS, RUN_KEYS, generation_fields
from ..errors import UnmaskError
from ..options import layer
from .runner import EvalRun, EvalSpec

TABLE_COLUMNS = ("model", "task", "sampler", "sampler_options", "settings", "n", "accuracy", "accuracy_stderr",
                 "metrics", "mean_nfe", "mean_forward_rows", "mean_forward_tokens",
                 "tokens_per_second", "mean_cumulative_entropy", "mean_generated_tokens", "wall_seconds",
                 "status", "run_dir")


def load_config(path: str | Path) -> dict[str, Any]:
    """Read and validate a sweep file (see :mod:`unmask.config_schema`): unknown keys, misspelt
    settings, unknown samplers and bad numbers are errors before any run starts."""
    import yaml

    from ..config_schema import validate_sweep_config
    from ..userio import read_text

    p = Path(path)
    try:
        cfg = yaml.safe_load(read_text(p, "sweep config")) or {}  # read_text: missing/folder/binary/non-UTF-8
    except yaml.YAMLError as e:
        raise UnmaskError(f"{p}: not valid YAML ({e})") from None
    return validate_sweep_config(cfg, str(p))


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def _norm_model(m: Any) -> tuple[str, str, dict[str, Any]]:
    """``(label, path, per-model settings)``; a dict entry's keys other than name/path are
    settings for that model's runs only (e.g. greedy decoding for a puzzle model)."""
    if isinstance(m, dict):
        path = m.get("path") or m.get("name")
        if path is None:
            raise UnmaskError(f"each model entry needs a 'name' or 'path': {m}")
        extra = {k: v for k, v in m.items() if k not in ("name", "path")}
        return str(m.get("name", path)), str(path), extra
    return str(m), str(m), {}


def _norm_named(x: Any, what: str) -> tuple[str, dict[str, Any]]:
    if isinstance(x, dict):
        if "name" not in x:
            raise UnmaskError(f"each {what} entry needs a 'name': {x}")
        rest = {k: v for k, v in x.items() if k != "name"}
        return str(x["name"]), rest
    return str(x), {}


def expand(cfg: dict[str, Any], output_dir: str | None = None) -> list[tuple[str, EvalSpec, dict[str, Any]]]:
    """The runs of a sweep as ``(model label, spec, settings)`` in a stable order."""
    gen = generation_fields()
    spec_fields = {f.name for f in fields(EvalSpec)}
    base_kwargs = {k: v for k, v in cfg.items() if k in spec_fields and k not in ("model", "task", "sampler")}
    if output_dir is not None:
        base_kwargs["output_dir"] = output_dir
    base_kwargs.setdefault("output_dir", "results/sweep")
    grid = cfg.get("settings") or {}
    if not isinstance(grid, dict):
        raise UnmaskError("'settings' must map a setting name to a list of values")
    keys = sorted(grid)
    combos = [dict(zip(keys, vals)) for vals in itertools.product(*[_as_list(grid[k]) for k in keys])] or [{}]
    common = dict(cfg.get("common") or {})
    runs = []
    for m in _as_list(cfg["models"]):
        label, path, mkw = _norm_model(m)
        for t in _as_list(cfg["tasks"]):
            tname, tkw = _norm_named(t, "task")
            for s in _as_list(cfg["samplers"]):
                sname, skw = _norm_named(s, "sampler")
                sopts = dict(skw.get("options") or {})
                for combo in combos:
                    spec_kw = dict(base_kwargs)
                    overrides: dict[str, Any] = {}
                    lockstep: dict[str, Any] = {}
                    opts = dict(sopts)
                    # precedence: common (preset < YAML < overrides) < grid settings < model entry <
                    # task entry; a later steps/tokens_per_step replaces an earlier one
                    specific = {**mkw, **tkw}
                    merged = layer(common, combo, {k: v for k, v in specific.items() if k not in RUN_KEYS})
                    for k, v in merged.items():
                        if k in gen:
                            overrides[k] = v
                        elif k in RUN_KEYS:
                            spec_kw[k] = v
                        elif k in LOCKSTEP_KEYS:
                            lockstep[k] = v
                        else:
                            opts[k] = v
                    for k in RUN_KEYS:
                        if k in specific:
                            spec_kw[k] = specific[k]
                    spec = EvalSpec(model=path, task=None if tname == "auto" else tname, sampler=sname, sampler_options=opts,
                                    overrides=overrides, progress=False, lockstep=_lockstep(lockstep), **spec_kw)
                    spec.resolved_config = {"model": path, "task": tname, "sampler": {"name": sname, **opts},
                                            "generation": dict(overrides), "decode": dict(lockstep),
                                            "run": {k: spec_kw[k] for k in RUN_KEYS if k in spec_kw},
                                            "_source": cfg.get("_source")}
                    runs.append((label, spec, combo))
    return runs


def _lockstep(settings: dict[str, Any]):
    """The grid point's lockstep options (``decode.*`` / ``lockstep`` keys); off when none."""
    from ..decoding.lockstep import LockstepOptions

    kw = {k: v for k, v in settings.items() if v is not None}
    mode = kw.pop("lockstep", None)
    if kw and mode is None:
        raise UnmaskError(f"sweep: {', '.join(sorted(kw))} apply only with lockstep (decode.mode) set")
    return LockstepOptions(mode=mode, **kw)


def _settings_str(d: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in d.items())


def run_sweep(config_path: str | Path, output_dir: str | None = None, dry_run: bool = False,
              progress: bool = True, preset_tree: dict[str, Any] | None = None,
              override_tree: dict[str, Any] | None = None, source: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run every grid point (skipping finished ones), then write the table and the plots.
    ``preset_tree``/``override_tree`` (from ``--preset`` and ``key=value``) layer under/over the
    YAML's settings (see :func:`unmask.config.layer_sweep`)."""
    from .runner import load_session

    cfg = load_config(config_path)
    if preset_tree or override_tree:
        from ..config import layer_sweep

        cfg = layer_sweep(cfg, preset_tree, override_tree)
    cfg["_source"] = {"sweep": str(config_path), **(source or {})}
    runs = expand(cfg, output_dir)
    check_runs(runs)
    out_dir = Path(runs[0][1].output_dir)
    if dry_run:
        rows = [{"model": label, "task": spec.task or "auto", "sampler": spec.sampler, "settings": _settings_str(st)}
                for label, spec, st in runs]
        if progress:
            for r in rows:
                print(f"{r['model']}  {r['task']}  {r['sampler']}  {r['settings']}", flush=True)
        return {"runs": rows}

    from ..userio import ensure_dir

    ensure_dir(out_dir, "sweep output_dir")  # before hours of decoding, not after
    bar = _SweepProgress.create(progress, len(runs))
    rows: list[dict[str, Any]] = []
    try:
        by_model: dict[tuple[str, str, str], list[int]] = {}
        for i, (_, spec, _) in enumerate(runs):
            by_model.setdefault((spec.model or "", spec.device, spec.dtype), []).append(i)
        results: dict[int, dict[str, Any]] = {}
        for (model, device, dtype), idxs in by_model.items():
            from ..cli import resolve_device

            session = load_session(model, resolve_device(device), dtype)
            for i in idxs:
                label, spec, settings = runs[i]
                try:
                    run = EvalRun(spec, session)
                except UnmaskError as e:  # a bad grid point (e.g. task/model mismatch): report, go on
                    results[i] = {"task": spec.task or "auto", "_status": f"error: {e}"}
                    bar.start_run(f"{label} {spec.task} {spec.sampler}: error", 0)
                    bar.end_run()
                    continue
                todo = len(run.pending())
                status = "skipped (finished)" if todo == 0 else ("resumed" if todo < len(run.items) else "ran")
                bar.start_run(f"{label} {spec.task} {spec.sampler} {_settings_str(settings)}", todo)
                summary = run.run(on_progress=bar.advance)
                bar.end_run()
                results[i] = {**summary, "_status": status}
            del session
        for i, (label, spec, settings) in enumerate(runs):
            s = results[i]
            if "run_dir" not in s:
                rows.append({"model": label, "task": s["task"], "sampler": spec.sampler,
                             "sampler_options": _settings_str(spec.sampler_options),
                             "settings": _settings_str(settings), "status": s["_status"]})
                continue
            rows.append({
                "model": label, "task": s["task"], "sampler": spec.sampler,
                "sampler_options": _settings_str(spec.sampler_options), "settings": _settings_str(settings),
                "n": s["n"], "accuracy": s["accuracy"], "accuracy_stderr": s["accuracy_stderr"],
                "metrics": _metrics_str(s.get("metrics", {})),
                "mean_nfe": s["mean_nfe"], "mean_forward_rows": s.get("mean_forward_rows", 0.0),
                "mean_forward_tokens": s.get("mean_forward_tokens", 0.0), "tokens_per_second": s["tokens_per_second"],
                "mean_cumulative_entropy": s["mean_cumulative_entropy"],
                "mean_generated_tokens": s["mean_generated_tokens"], "wall_seconds": s["wall_seconds"],
                "status": s["_status"], "run_dir": s["run_dir"], "config": spec.resolved_config,
            })
    finally:
        bar.stop()
    ensure_dir(out_dir, "sweep output_dir")
    failed = [r for r in rows if "accuracy" not in r]
    suffix = _summary_suffix(out_dir, len(rows) - len(failed))
    files = write_tables(rows, out_dir, suffix)
    if not suffix:
        # a task without a reference answer (accuracy None) has no point on an accuracy axis
        files.update(write_plots([r for r in rows if r.get("accuracy") is not None], out_dir))
    if progress:  # results on stdout, where they can be piped; file names and notes on stderr
        print(markdown_table(rows), flush=True)
        for name, path in files.items():
            sys.stderr.write(f"{name}: {path}\n")
    if suffix:
        sys.stderr.write(f"note: the existing sweep_summary in {out_dir} has more finished runs than this sweep; "
                         f"it is kept, and this sweep's table went to sweep_summary{suffix}.*\n")
    return {"rows": rows, "files": {k: str(v) for k, v in files.items()}, "failed": len(failed)}


def check_runs(runs: list[tuple[str, EvalSpec, dict[str, Any]]]) -> None:
    """Every grid point's decoding settings, checked before any model is loaded: a conflict such
    as steps with tokens_per_step in one point is one error line, not a table of error rows."""
    from ..decoding.engine import GenerationConfig

    for label, spec, settings in runs:
        try:
            GenerationConfig(**spec.overrides).validate()
        except (UnmaskError, TypeError) as e:
            where = " ".join(x for x in (label, spec.task or "auto", spec.sampler, _settings_str(settings)) if x)
            raise UnmaskError(f"sweep grid point [{where}]: {e}") from None


def _summary_suffix(out_dir: Path, finished: int) -> str:
    """``""`` to write ``sweep_summary.*``, or ``".partial"`` when the summary already there has
    more finished runs than this sweep (a sweep with failed points must not replace a better
    table in silence)."""
    old = out_dir / "sweep_summary.json"
    try:
        before = sum(1 for r in json.loads(old.read_text()) if "accuracy" in r)
    except (OSError, ValueError, TypeError):
        return ""
    return ".partial" if finished < before else ""


def _metrics_str(metrics: dict[str, float]) -> str:
    """The task's secondary metrics in one cell (e.g. NAE-SAT's ``obs_accuracy``), because the
    headline accuracy alone hides partial progress (a NAE-SAT canvas is rarely right as a whole)."""
    return " ".join(f"{k}={float(v):.4f}" for k, v in sorted(metrics.items()))


def markdown_table(rows: list[dict[str, Any]]) -> str:
    cols = [c for c in TABLE_COLUMNS if c != "run_dir"]
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols)
    lines = [head]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cells.append(f"{v:.4f}" if isinstance(v, float) else "n/a" if v is None else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_tables(rows: list[dict[str, Any]], out_dir: Path, suffix: str = "") -> dict[str, Path]:
    md = out_dir / f"sweep_summary{suffix}.md"
    md.write_text(markdown_table(rows) + "\n")
    csv_path = out_dir / f"sweep_summary{suffix}.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(TABLE_COLUMNS))
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in TABLE_COLUMNS})
    (out_dir / f"sweep_summary{suffix}.json").write_text(json.dumps(rows, indent=2) + "\n")
    return {"markdown": md, "csv": csv_path}


def write_plots(rows: list[dict[str, Any]], out_dir: Path) -> dict[str, Path]:
    if not rows:
        return {}
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        sys.stderr.write("matplotlib is not installed: no plots (pip install 'unmask[plots]')\n")
        return {}
    from .plots import plot_accuracy_vs_nfe, plot_entropy_vs_accuracy

    return {
        "accuracy_vs_nfe": plot_accuracy_vs_nfe(rows, out_dir / "accuracy_vs_nfe.png"),
        "entropy_vs_accuracy": plot_entropy_vs_accuracy(rows, out_dir / "entropy_vs_accuracy.png"),
    }


class _SweepProgress:
    """Two rich bars on stderr: runs done, and samples of the current run with an ETA.

    When stderr is not a terminal (``nohup``, CI logs) bars would only fill the log with control
    codes, so one plain line per finished run is written instead, with elapsed time and an ETA."""

    def __init__(self, prog=None, runs_task=None, n_runs: int = 0, plain: bool = False) -> None:
        self.prog = prog
        self.runs_task = runs_task
        self.sample_task = None
        self.plain = plain
        self.n_runs = n_runs
        self.done = 0
        self.label = ""
        self.t0 = time.monotonic()

    @classmethod
    def create(cls, enabled: bool, n_runs: int):
        if not enabled:
            return cls()
        if not sys.stderr.isatty():
            return cls(n_runs=n_runs, plain=True)
        from ..tracking import rich_progress

        prog = rich_progress(transient=False)
        tid = prog.add_task("runs", total=n_runs)
        prog.start()
        return cls(prog, tid)

    def start_run(self, label: str, todo: int) -> None:
        self.label = label
        if self.prog is None:
            return
        self.sample_task = self.prog.add_task(label[:70], total=max(todo, 1))
        if todo == 0:
            self.prog.update(self.sample_task, completed=1)

    def advance(self, n: int) -> None:
        if self.prog is not None and self.sample_task is not None:
            self.prog.advance(self.sample_task, n)

    def end_run(self) -> None:
        self.done += 1
        if self.plain:
            elapsed = time.monotonic() - self.t0
            eta = elapsed / self.done * (self.n_runs - self.done)
            sys.stderr.write(f"[sweep] {self.done}/{self.n_runs} {self.label} "
                             f"(elapsed {_hms(elapsed)}, eta {_hms(eta)})\n")
            sys.stderr.flush()
        if self.prog is None:
            return
        if self.sample_task is not None:
            self.prog.remove_task(self.sample_task)
            self.sample_task = None
        self.prog.advance(self.runs_task, 1)

    def stop(self) -> None:
        if self.prog is not None:
            self.prog.stop()



def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
