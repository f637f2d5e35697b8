"""``unmask rl``: the parser and the handler (the main CLI only registers this module)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Every flag is a row of the option table (:mod:`unmask.options`): the rl rows (run folder,
    rewards, groups, objective, optimisation) and the rollouts' decoding rows, resolved exactly as
    in ``unmask sample`` (flag > key=value > --config > --preset > default; rl keys are ``rl.*``)."""
    from ..cli import add_sampling_flags

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
    if not getattr(args, "out", None):
        raise UnmaskError("unmask rl needs --out RUN_FOLDER (metrics, checkpoint.pt, model/)")
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
