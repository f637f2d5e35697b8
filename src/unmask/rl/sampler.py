"""Exploring confidence decoding for rollouts: positions drawn from ``softmax(max prob / tau)``.

Greedy confidence decoding picks the most certain cell. When the model is certain of the wrong
cell first (the judge trap: the answer before the walk), every rollout takes the same order, every
row of a group reaches the same verdict, all advantages are zero and GRPO has nothing to learn
from. Drawing the cell from ``softmax(max_prob / tau)`` (Gumbel-top-k, per-row generator, so seeds
still fix every row) keeps confidence decoding's preference and makes other orders occur; as
``tau -> 0`` it is greedy confidence decoding again. The score is the cell's top probability (not
the probability of the drawn token, as the plain ``confidence`` sampler at temperature > 0 uses),
so the chance of each choice is a function of the state alone and the trajectory estimator can
score it exactly (:func:`unmask.rl.logprob.soft_order_logp`).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from ..samplers.base import Action, Sampler, StepView


class SoftConfidenceSampler(Sampler):
    name = "soft_confidence"
    stochastic: ClassVar[bool] = True

    def __init__(self, position_temperature: float) -> None:
        if not position_temperature > 0:
            raise ValueError("position_temperature must be > 0")
        self.position_temperature = float(position_temperature)

    def select(self, view: StepView) -> Action:
        k = view.n if view.k is None else max(1, min(view.k, view.n))
        score = view.probs.max(-1).values.double() / self.position_temperature
        u = torch.rand(score.shape, generator=view.generator, dtype=torch.float64).to(score.device)
        gumbel = -torch.log(-torch.log(u.clamp_min(1e-300)))
        return Action(torch.sort(-(score + gumbel), stable=True).indices[:k])

    def config(self) -> dict:
        return {"sampler": self.name, "position_temperature": self.position_temperature}
