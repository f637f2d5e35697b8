"""Training tiny masked diffusion models on the synthetic tasks (see :mod:`unmask.train.trainer`)."""

from .trainer import add_train_arguments, run_train

__all__ = ["add_train_arguments", "run_train"]
