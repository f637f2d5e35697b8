"""The GRPO objective: group-relative advantages and the clipped, KL-regularised loss.

Kept free of models and data so the arithmetic can be tested by hand."""

from __future__ import annotations

import torch


def group_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """``(r - mean of its group) / (std of its group + eps)`` for rewards laid out group after
    group (``[n_prompts * group_size]``). A group whose rewards are all equal gets exactly zero:
    it carries no preference, so it must not move the policy. ``scale=False`` keeps the centred
    rewards (Dr. GRPO: dividing by the std up-weights near-uniform groups)."""
    r = rewards.reshape(-1, group_size).double()
    centred = r - r.mean(dim=1, keepdim=True)
    if scale:
        centred = centred / (r.std(dim=1, unbiased=False, keepdim=True) + eps)
    return centred.reshape(-1).to(rewards.dtype)


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    unit_mask: torch.Tensor,
    clip_eps: float,
    beta: float,
    kl_logp: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-completion loss ``[N]`` and diagnostics.

    ``logp``/``old_logp``/``ref_logp`` are ``[N, U]`` log-probabilities of the completion's units
    (tokens for the one-step estimate, decoding steps for the trajectory estimate) under the policy
    being trained, the policy that drew the rollouts, and the frozen reference; ``unit_mask``
    marks the real units. Each completion's loss is the mean over its units of
    ``-min(rho A, clip(rho, 1-eps, 1+eps) A) + beta * KL`` with ``rho = exp(logp - old_logp)`` and
    the k3 estimate ``KL = exp(ref - logp) - (ref - logp) - 1`` (non-negative, unbiased for
    KL(policy || reference) when units are drawn from the policy). ``kl_logp`` (default ``logp``)
    is what the KL compares with ``ref_logp``: the written tokens alone when the order is left free
    (``--kl_order false``)."""
    m = unit_mask.to(logp.dtype)
    ratio = torch.exp(logp - old_logp)
    adv = advantages[:, None].to(logp.dtype)
    surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv)
    per_unit = -surrogate
    kl = torch.zeros_like(logp)
    if ref_logp is not None and beta > 0:
        d = ref_logp - (logp if kl_logp is None else kl_logp)
        kl = torch.exp(d) - d - 1.0
        per_unit = per_unit + beta * kl
    count = m.sum(dim=1).clamp_min(1.0)
    loss = (per_unit * m).sum(dim=1) / count
    clipped = ((ratio - 1.0).abs() > clip_eps).to(logp.dtype) * (adv != 0).to(logp.dtype)
    stats = {
        "kl": ((kl * m).sum(dim=1) / count).detach(),
        "clip_frac": ((clipped * m).sum(dim=1) / count).detach(),
    }
    return loss, stats
