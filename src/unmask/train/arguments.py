"""The ``unmask train`` flags, apart from the trainer so that building the CLI parser (``unmask
--help``, a bad flag) never imports torch."""

from __future__ import annotations

import argparse
import json
from typing import Any


def _task_param(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--task_param wants KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Register the trainer's flags on ``parser`` (shared by ``python -m unmask.train`` and the
    ``unmask train`` subcommand). Defaults of ``None`` mean "take it from the checkpoint when
    resuming, else the documented default" so ``--resume`` needs no other flag."""
    g = parser.add_argument_group("task and output")
    from ..tasks.synthetic import task_names  # the registry, so a new task is listed without an edit here

    g.add_argument("--task", default=None, help="synthetic task name: " + ", ".join(task_names()))
    g.add_argument("--task_param", action="append", type=_task_param, default=None, metavar="KEY=VALUE",
                   help="task parameter, repeatable (e.g. --task_param n=12 --task_param p=48)")
    g.add_argument("--out", required=True, help="output folder (ckpt.pt, model/, log.jsonl, loss.png)")
    g.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt")
    g.add_argument("--init_from", default=None, metavar="MODEL",
                   help="start a new run from the weights of a model folder or built-in alias (e.g. "
                        "tiny-sudoku; the shape flags must match it); step 0, fresh optimizer")
    g = parser.add_argument_group("model")
    g.add_argument("--n_layers", type=int, default=None, help="default 4")
    g.add_argument("--d_model", type=int, default=None, help="default 128")
    g.add_argument("--n_heads", type=int, default=None, help="default 4")
    g.add_argument("--mlp_hidden_size", type=int, default=None, help="default 3 * d_model (SwiGLU)")
    g.add_argument("--positions", choices=["rope", "learned"], default=None,
                   help="rope (LLaDA-8B's) or learned absolute positions (config rope: false, OLMo's "
                        "wpe table); NAE-SAT learned much faster with learned ones, 9x9 Sudoku much slower (default rope)")
    g = parser.add_argument_group("optimisation")
    g.add_argument("--seed", type=int, default=None, help="init and data stream seed (default 0)")
    g.add_argument("--max_steps", type=int, default=None, help="default 10000; may be raised on resume")
    g.add_argument("--batch_size", type=int, default=None, help="default 64")
    g.add_argument("--lr", type=float, default=None, help="peak learning rate (default 1e-3)")
    g.add_argument("--weight_decay", type=float, default=None, help="default 0.01")
    g.add_argument("--warmup_steps", type=int, default=None, help="default 200")
    g.add_argument("--grad_clip", type=float, default=None, help="default 1.0")
    g.add_argument("--objective", choices=["discrete", "continuous"], default=None,
                   help="noise schedule of the diffusion loss (default discrete; see diffusion_loss)")
    g.add_argument("--derived_frac", type=float, default=None,
                   help="fraction of rows that mask only the task's derived tokens (product digits, NAE-SAT "
                        "observations) with the rest visible (default 0; see diffusion_loss)")
    g = parser.add_argument_group("runtime")
    g.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default 2; --resume keeps the run's: a different count "
                        "changes float summation order, so the resumed run would not be bit-exact)")
    g.add_argument("--eval_every", type=int, default=None, help="held-out evaluation period in steps (default 500)")
    g.add_argument("--eval_size", type=int, default=None, help="held-out examples per mask rate (default 256)")
    g.add_argument("--decode_eval", type=int, default=None,
                   help="held-out items decoded by the built-in greedy monitor (default 48; 0 = off)")
    g.add_argument("--log_every", type=int, default=None, help="training-loss log period in steps (default 50)")
    g.add_argument("--ckpt_minutes", type=float, default=5.0)
    g.add_argument("--max_minutes", type=float, default=None,
                   help="stop (with a checkpoint) after this much wall time in this process")
    g.add_argument("--stop_at_step", type=int, default=None,
                   help="stop (with a checkpoint) once this step is reached, without changing the schedule")
    return parser


