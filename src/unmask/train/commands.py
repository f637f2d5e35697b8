"""``unmask train``: wires the trainer's flags into the main CLI."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from .arguments import add_train_arguments

    p = sub.add_parser("train", help="train a tiny masked diffusion model on a synthetic task")
    add_train_arguments(p)
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from .trainer import run_train

    return run_train(args)
