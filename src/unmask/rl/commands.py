"""``unmask rl``: the parser and the handler (the main CLI only registers this module)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..cli import add_flag, add_sampling_flags, parse_bool

    g = p.add_argument_group("model and data (--model_name_or_path: the policy, also the frozen KL reference)")
    add_flag(g, "out", required=True,
             help="run folder: metrics.jsonl, checkpoint.pt (resumed automatically), model/ (loads with --model_name_or_path)")
    add_flag(g, "task", default=None,
             help="synthetic task whose training split gives the prompts (default: the model folder's task.json)")
    add_flag(g, "prompts", default=None, help="JSONL file of items with a 'prompt' field (instead of --task)")
    g = p.add_argument_group("rewards")
    add_flag(g, "reward", default="task",
             help="task (the task's score), code (sandboxed tests in item['tests']) or package.module:function "
                  "called as f(item, completion_text) -> float")
    add_flag(g, "reward_weights", default="correct",
             help="with --reward task: score fields summed into the reward, NAME[:WEIGHT],... (e.g. correct:1,r_correct:0.5)")
    add_flag(g, "reward_workers", type=int, default=1,
             help="processes that compute rewards (0: in the trainer's process)")
    g = p.add_argument_group("groups")
    add_flag(g, "group_size", type=int, default=8, help="completions per prompt, G (at least 2)")
    add_flag(g, "prompts_per_step", type=int, default=16,
             help="prompts per optimiser step (global batch = prompts x group size; a multiple of the process count)")
    g = p.add_argument_group("objective")
    add_flag(g, "estimator", default="one_step", choices=("one_step", "trajectory"),
             help="policy log-probability: one_step (diffu-GRPO, one forward) or trajectory (replays the trace's steps)")
    add_flag(g, "p_mask_prompt", type=float, default=0.15, help="one_step: probability of masking each prompt token")
    add_flag(g, "trajectory_steps", type=int, default=None,
             help="trajectory: score this many random steps per completion (default: all)")
    add_flag(g, "order_term", type=parse_bool, default=None,
             help="trajectory + confidence sampler: add the probability of the chosen position (default: on when it applies)")
    add_flag(g, "beta", type=float, default=0.02, help="KL penalty to the frozen reference (0: no reference model)")
    add_flag(g, "clip_eps", type=float, default=0.2, help="GRPO ratio clipping epsilon")
    add_flag(g, "iterations", type=int, default=1, help="optimiser steps per batch of rollouts (mu)")
    add_flag(g, "scale_rewards", type=parse_bool, default=True,
             help="divide advantages by the group's reward std (False: Dr. GRPO centring only)")
    g = p.add_argument_group("optimisation and run")
    add_flag(g, "max_steps", type=int, default=100, help="optimiser steps (resume continues to this count)")
    add_flag(g, "lr", type=float, default=1e-5, help="AdamW learning rate")
    add_flag(g, "weight_decay", type=float, default=0.0, help="AdamW weight decay")
    add_flag(g, "max_grad_norm", type=float, default=1.0, help="gradient clipping norm")
    add_flag(g, "micro_batch", type=int, default=64, help="completions per forward/backward chunk (memory)")
    add_flag(g, "lora_rank", type=int, default=0, help="> 0: train LoRA adapters of this rank (peft) instead of all weights")
    add_flag(g, "lora_alpha", type=float, default=16.0, help="LoRA scaling alpha (the update is alpha/rank * B A)")
    add_flag(g, "save_every", type=int, default=10, help="steps between checkpoints (and at the end)")
    add_flag(g, "save_dtype", default=None, help="dtype of the exported model/ (default: the source's)")
    add_flag(g, "threads", type=int, default=1, help="torch CPU threads per process")
    add_flag(g, "device", default="cpu", choices=("cpu", "cuda"), help="cpu, or cuda (one device per process)")
    add_flag(g, "overwrite", action="store_true", help="delete --out first instead of resuming from it")
    # the rollouts' decoding settings: the option table's rows, as in `unmask sample` (with --preset,
    # --config, key=value); --seed also seeds the prompts and the estimator's masks
    add_sampling_flags(p, "rl")


DESCRIPTION = (
    "Train a masked diffusion model with GRPO. Several processes: `accelerate launch --num_processes N -m unmask.rl "
    "...` (same flags). Rollouts are decoded by unmask.generate with the decoding options below, set exactly as for "
    "`unmask sample` (flags, --preset, --config, group.key=value; --temperature defaults to 1.0 here, so that a "
    "group's rows differ). With --sampler confidence, --position_temperature TAU > 0 draws each committed cell from "
    "softmax(max prob / TAU) (exploring confidence decoding; needs --estimator trajectory, which scores the drawn "
    "order); with Info-Gain it is that sampler's option. --lockstep decodes the rollouts in lockstep, as `unmask "
    "sample --lockstep` does (a task's R/A regions, or prompt R --answer_separator A for --prompts).")

#: the rollout temperature when no flag, preset or config sets one (the table's 0 = argmax would
#: make the G rows of a group identical for deterministic samplers)
ROLLOUT_TEMPERATURE = 1.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rl", help="GRPO reinforcement learning with verifiable rewards (rollouts through unmask.generate)",
        description=DESCRIPTION,
    )
    add_arguments(p)
    p.set_defaults(func=cmd_rl)


def config_from_args(args: argparse.Namespace):
    """The trainer's settings from the resolved arguments: the rl flags by name, the sampler rows
    as ``sampler_options``, the other generation rows as ``decoding``."""
    from dataclasses import asdict

    from ..errors import UnmaskError
    from ..options import lockstep_options, values
    from .trainer import RLConfig

    if not getattr(args, "model_name_or_path", None):
        raise UnmaskError("unmask rl needs --model_name_or_path (the policy to train)")
    if getattr(args, "option_sources", {}).get("temperature") == "default":
        args.temperature = ROLLOUT_TEMPERATURE
    fields = set(RLConfig.__dataclass_fields__)
    kwargs = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    options = values(args, "sampler")
    if args.sampler == "confidence" and "position_temperature" in options:
        kwargs["position_temperature"] = options.pop("position_temperature")  # the exploring rollouts
    else:
        kwargs.pop("position_temperature", None)
    kwargs["sampler_options"] = options
    kwargs["decoding"] = {k: v for k, v in values(args, "generation").items() if k not in fields}
    lock = lockstep_options(args)  # the same reading as `unmask sample --lockstep`
    kwargs["lockstep"] = asdict(lock) if lock.on else {}
    return RLConfig(**kwargs)


def cmd_rl(args: argparse.Namespace) -> int:
    from .trainer import GRPOTrainer

    cfg = config_from_args(args)
    cfg.check()
    trainer = GRPOTrainer(cfg)
    folder = trainer.train()
    if trainer.acc.is_main_process:
        print(folder)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (``python -m unmask.rl``, ``accelerate launch -m unmask.rl``): exactly
    ``unmask rl`` (the same parser, option resolution and error convention)."""
    from ..cli import main as cli_main

    return cli_main(["rl", *(sys.argv[1:] if argv is None else argv)])
