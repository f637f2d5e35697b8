"""``unmask train``: wires the trainer's flags into the main CLI."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from .trainer import add_train_arguments, run_train

    p = sub.add_parser("train", help="train a tiny masked diffusion model on a synthetic task")
    add_train_arguments(p)
    p.set_defaults(func=run_train)
