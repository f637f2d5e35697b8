"""GRPO for masked diffusion models (``unmask rl``).

Rollouts go through :func:`unmask.generate` (any sampler, the same code path as decoding later),
rewards come from a task's ``score``, the code sandbox or a user function run in worker
processes, and the policy log-probability of a completion is estimated by one of the estimators
in :mod:`unmask.rl.logprob`. The loop itself runs on ``accelerate`` (see docs/rl.md for why not
TRL's ``GRPOTrainer``).
"""
