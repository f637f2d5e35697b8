"""``unmask eval``, ``unmask sweep`` and ``unmask lm-eval``: wiring into the main CLI.

``register(sub)`` is called by :func:`unmask.cli.build_parser`; heavy imports happen only when a
command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..cli import add_flag, add_sampling_flags, config_overrides, sampler_options
from ..options import add_run_config_flags


def _format_summary(s: dict[str, Any]) -> str:
    lines = [
        f"{s['task']}  model={s['model']}  sampler={s['sampler']}  n={s['n']}/{s['n_expected']}"
        + ("" if s["complete"] else "  (incomplete)"),
        ("accuracy=n/a (no reference answer: see the metrics and the judge)  " if s["accuracy"] is None
         else f"accuracy={s['accuracy']:.4f} ± {s['accuracy_stderr']:.4f}  ")
        + f"mean_nfe={s['mean_nfe']:.1f}  "
        f"mean_forward_rows={s.get('mean_forward_rows', 0.0):.1f}  "
        f"mean_forward_tokens={s.get('mean_forward_tokens', 0.0):.0f}  "
        f"tokens/s={s['tokens_per_second']:.1f}  mean_cumulative_entropy={s['mean_cumulative_entropy']:.3f}  "
        f"wall={s['wall_seconds']:.1f}s",
    ]
    extra = {k: v for k, v in s.get("metrics", {}).items()}
    if extra:
        lines.append("  ".join(f"{k}={v:.4f}" for k, v in extra.items()))
    if s.get("n_empty") or s.get("n_unparsable"):
        lines.append(f"empty outputs: {s['n_empty']}  unparsable answers: {s['n_unparsable']}")
    if "lockstep" in s:
        m = s["lockstep"]
        first = "-" if m["mean_a_first_step"] is None else f"{m['mean_a_first_step']:.1f}"
        fill = "-" if m["mean_r_fill_at_a_first"] is None else f"{100 * m['mean_r_fill_at_a_first']:.0f}%"
        lines.append(f"lockstep: steps={m['mean_steps']:.1f}  nfe/step={m['nfe_per_step']:.2f}  A first at step {first} "
                     f"(R {fill} filled)  premature={100 * m['premature_rate']:.1f}%")
    lines.append(f"results: {s['run_dir']}")
    return "\n".join(lines)


def cmd_eval(args: argparse.Namespace) -> int:
    from ..options import lockstep_options
    from .runner import EvalSpec, run_eval

    if args.list_tasks:
        return _list_tasks()
    if args.task == "geneval":  # text-to-image: images laid out for GenEval's own scorer
        from .geneval import cmd_geneval

        return cmd_geneval(args)
    if args.task == "shapes_geneval":  # tiny-shapes text-to-image, scored by the shapes detector
        from .shapes_geneval import cmd_shapes_geneval

        return cmd_shapes_geneval(args)
    if args.check_sandbox:
        from .sandbox import isolation_report

        print(json.dumps(isolation_report()))
        return 0
    spec = EvalSpec(
        model=args.model_name_or_path,
        task=args.task,
        sampler=args.sampler,
        sampler_options=sampler_options(args),
        overrides=config_overrides(args),
        limit=args.limit,
        data=args.data,
        output_dir=args.output_dir,
        batch_size=args.batch_size,
        chat_template=args.chat_template,
        num_fewshot=args.num_fewshot,
        device=args.device,
        dtype=args.dtype,
        exec_timeout=args.exec_timeout,
        wandb=args.wandb,
        wandb_project=args.wandb_project,
        progress=not args.json,
        threads=args.threads,
        lockstep=lockstep_options(args),
        resolved_config=getattr(args, "resolved_config", None),
    )
    summary = run_eval(spec)
    if "note" in summary:  # a non-zero rank of a multi-process run: rank 0 reports
        return 0
    from .writing_judge import after_eval

    extra = after_eval(args, summary)  # writing: judge-free metrics and the LLM judge
    print(json.dumps(summary) if args.json else _format_summary(summary))
    if extra and not args.json:
        print(extra)
    return 0


def _list_tasks() -> int:
    from ..tasks.benchmarks import get_benchmark
    from ..tasks.benchmarks.registry import synthetic_names, task_names

    syn = set(synthetic_names())
    for name in task_names():
        if name in syn:
            print(f"{name:16s} synthetic task of the built-in tiny models (infilling)")
        else:
            t = get_benchmark(name)
            d = t.generation_defaults()
            print(f"{name:16s} {t.description}  [max_new_tokens={d.get('max_new_tokens')} "
                  f"block_size={d.get('block_size')}]")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import run_sweep

    rc = getattr(args, "run_config", None) or {}
    result = run_sweep(args.config, output_dir=args.output_dir, dry_run=args.dry_run, progress=not args.json,
                       preset_tree=rc.get("preset_tree"), override_tree=rc.get("override_tree"),
                       source=rc.get("source"))
    if args.json:
        print(json.dumps(result))
    failed = result.get("failed", 0)
    if failed:  # a sweep whose grid points errored is not a success, whatever else it wrote
        first = next(r["status"] for r in result["rows"] if "accuracy" not in r)
        sys.stderr.write(f"error: {failed} of {len(result['rows'])} sweep grid points failed (first: {first})\n")
        return 2
    return 0


def cmd_lm_eval(args: argparse.Namespace) -> int:
    try:
        from .lm_eval_adapter import run_lm_eval_cli
    except ImportError as e:
        from ..errors import UnmaskError

        raise UnmaskError(str(e)) from None

    return run_lm_eval_cli(list(args.lm_eval_args))


def add_eval_flags(p: argparse.ArgumentParser) -> None:
    add_flag(p, "json", action="store_true", help="print the summary as one JSON object")
    add_flag(p, "list_tasks", action="store_true", help="list the tasks and exit")
    add_flag(p, "check_sandbox", action="store_true", help="print which code-sandbox layers work on this machine and exit")
    add_sampling_flags(p, "eval")
    add_flag(p, "vq_model_path", default=None, help="MAGVIT-v2 folder (text-to-image tasks: geneval, shapes_geneval)")
    add_flag(p, "guidance_scale", type=float, default=None,
             help="classifier-free guidance w of text-to-image tasks (default 3.5)")
    from .writing_judge import add_judge_flags

    add_judge_flags(p)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a model + sampler on a benchmark (resumable)")
    add_eval_flags(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("sweep", help="run a grid of models x tasks x samplers x settings from a YAML file")
    p.add_argument("config", help="sweep YAML (see benchmarks/sweep_tiny.yaml)")
    add_flag(p, "output_dir", default=None, help="override the YAML's output_dir")
    add_flag(p, "dry_run", action="store_true", help="list the runs without decoding")
    add_flag(p, "json", action="store_true", help="print the sweep table as JSON")
    add_run_config_flags(p, "sweep")
    p.set_defaults(func=cmd_sweep)

    # prefix_chars="+": every "-" argument belongs to lm_eval, so argparse must not parse them
    p = sub.add_parser("lm-eval", help="run lm-evaluation-harness with the `unmask` model registered "
                       "(arguments as for `lm_eval`)", add_help=False, prefix_chars="+")
    p.add_argument("lm_eval_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_lm_eval)
