"""The MaskGIT position rule that MMaDA's ``t2i_generate`` uses, as an unmask :class:`Sampler`.

Every step the reference scores each masked position by ``log p(token) + tau * g`` (``g``
standard Gumbel noise, ``p`` the probability of the token sampled there) and keeps the ``k`` best;
the rest go back to the mask (``mask_by_random_topk``). ``tau`` starts at ``temperature`` and is
annealed after every step by ``tau <- tau * (1 - (step + 1) / steps)``. Note that this *compounds*
(the reference reassigns its ``temperature`` argument inside the loop), unlike the original
MaskGIT's ``temperature * (1 - ratio)``; we match the reference.

The noise is drawn for a fixed frame of ``noise_width`` positions (the whole image) and read at
``noise_index``, both set by the decoding loop: the random stream then does not depend on how many
positions are still masked, and a one-row run draws exactly what the reference draws.
"""

from __future__ import annotations

import torch

from ..samplers.base import Action, Sampler, StepView, top_k_stable


def _log(t: torch.Tensor) -> torch.Tensor:
    return torch.log(t.clamp(min=1e-20))


def annealed_temperature(temperature: float, step: int, steps: int) -> float:
    """``tau`` used at ``step`` (0-based): the initial value times ``prod_{i<=step}(1 - (i+1)/steps)``,
    in Python floats as the reference computes it."""
    tau = float(temperature)
    for i in range(step + 1):
        tau = tau * (1.0 - 1.0 * (i + 1) / steps)
    return tau


class MaskGITSampler(Sampler):
    """Gumbel-perturbed log-confidence top-k (MMaDA / MaskGIT)."""

    name = "maskgit"
    stochastic = True
    options = ("position_temperature",)

    def __init__(self, position_temperature: float = 1.0) -> None:
        self.position_temperature = float(position_temperature)

    def select(self, view: StepView) -> Action:
        n = view.n
        width = int(view.extra.get("noise_width", n))
        index = view.extra.get("noise_index")
        steps = int(view.extra.get("steps", 1))
        tau = annealed_temperature(self.position_temperature, view.step, steps)
        u = torch.zeros(width, dtype=view.confidence.dtype).uniform_(0, 1, generator=view.generator)
        g = -_log(-_log(u))
        g = (g if index is None else g[index.cpu()]).to(view.confidence.device)
        score = _log(view.confidence) + tau * g
        k = n if view.k is None else max(0, min(view.k, n))
        return Action(top_k_stable(score, k), info={"tau": tau})

    def config(self) -> dict:
        return {"sampler": self.name, "position_temperature": self.position_temperature}
