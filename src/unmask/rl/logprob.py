"""Estimates of the policy log-probability of a completion of a masked diffusion model.

An autoregressive policy has an exact, cheap ``log pi(y | x)``. A masked diffusion model does not:
the probability of a completion depends on the order in which it was unmasked, and summing over
orders is intractable. Two estimators are offered (docs/rl.md compares their bias and cost):

``one_step`` (diffu-GRPO, Zhao et al. 2025, "d1")
    One forward on the prompt with *every* completion position masked and each prompt token
    masked independently with probability ``p_mask_prompt``; the units are the completion tokens,
    scored by their marginal ``log p(y_i | masked input)``. One forward per completion, whatever the
    length, but it is the likelihood of a different (fully parallel, order-free) process than the
    sampler that drew the rollout, so it is biased, and it cannot see the decoding order at all.

``trajectory`` (the steps the sampler took, as in TraceRL)
    Replays the rollout's trace: the state before each decoding step is rebuilt from the committed
    order and the units are the steps, scored by ``log p(tokens committed at step s | state s)``.
    This is the exact log-probability of the *tokens* the sampler drew given its order; it costs one
    forward per step (``trajectory_steps`` samples a subset). With ``select=True`` (confidence
    sampler, one token per step, temperature > 0) it also adds the probability that the confidence
    rule picked that position: the chosen token's probability ``p_c(v)`` must beat the confidence of
    every other masked cell's own draw, ``prod_j P_{u ~ p_j}(p_j(u) < p_c(v))``. That makes the
    estimate the exact likelihood of the whole trajectory (order included), so the gradient can move
    *which cell is written first*, not only what is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

ESTIMATORS = ("one_step", "trajectory")


@dataclass
class Rollout:
    """One completion as the engine produced it (row-local token ids, no padding)."""

    initial: list[int]  # the canvas before decoding (the prompt with its masks)
    final: list[int]  # the canvas after decoding
    steps: list[tuple[list[int], list[int]]]  # (positions, tokens) committed at each step, in order

    @classmethod
    def from_trace(cls, trace) -> Rollout:
        by_step: dict[int, tuple[list[int], list[int]]] = {}
        for rec in trace.tokens:
            pos, tok = by_step.setdefault(rec.step, ([], []))
            pos.append(int(rec.position))
            tok.append(int(rec.token))
        return cls(list(trace.initial_tokens), list(trace.final_tokens), [by_step[s] for s in sorted(by_step)])


def pad_right(rows: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``[N, T]`` ids and attention mask, padded on the right (positions start at 0 for every row)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.as_tensor(list(r), dtype=torch.long)
        attn[i, : len(r)] = 1
    return ids, attn


def policy_logits(model, ids: torch.Tensor, attn: torch.Tensor, banned: torch.Tensor) -> torch.Tensor:
    """fp32 logits with the ids a decoder may never write (mask, suppressed) at ``-inf``, as the
    engine's proposal sees them."""
    logits = model(ids.to(model_device(model)), attention_mask=attn.to(model_device(model))).logits.float()
    if banned.numel():
        logits = logits.index_fill(-1, banned.to(logits.device), float("-inf"))
    return logits


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def _gather_units(values: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack per-completion unit vectors of different lengths into ``[N, U]`` + mask."""
    width = max(1, max(int(v.numel()) for v in values))
    out = torch.zeros(len(values), width, dtype=values[0].dtype, device=values[0].device)
    mask = torch.zeros(len(values), width, dtype=torch.bool, device=values[0].device)
    for i, v in enumerate(values):
        out[i, : v.numel()] = v
        mask[i, : v.numel()] = True
    return out, mask


def one_step_logp(
    model,
    rollouts: Sequence[Rollout],
    mask_id: int,
    banned: torch.Tensor,
    p_mask_prompt: float,
    seeds: Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """diffu-GRPO's estimate: ``[N, U]`` per-token log-probs of the completion tokens (the
    positions masked in ``initial``) from one forward in which the completion is fully masked and
    each given token but the first is masked with probability ``p_mask_prompt`` (drawn from
    ``seeds[i]``, so the same seed gives the same mask in every process and on every recompute)."""
    ids, attn = pad_right([r.initial for r in rollouts])
    final, _ = pad_right([r.final for r in rollouts])
    completion = (ids == mask_id) & attn.bool()
    x = ids.clone()
    if p_mask_prompt > 0:
        for i, seed in enumerate(seeds):
            g = torch.Generator().manual_seed(int(seed))
            u = torch.rand(ids.shape[1], generator=g)
            given = attn[i].bool() & ~completion[i]
            given[0] = False
            x[i, given & (u < p_mask_prompt)] = mask_id
    logp = torch.log_softmax(policy_logits(model, x, attn, banned), dim=-1)
    tok = final.to(logp.device).clamp_min(0)
    per_pos = logp.gather(-1, tok[..., None]).squeeze(-1)  # [N, T]
    units = [per_pos[i][completion[i].to(logp.device)] for i in range(len(rollouts))]
    return _gather_units(units)


def trajectory_logp(
    model,
    rollouts: Sequence[Rollout],
    mask_id: int,
    banned: torch.Tensor,
    temperature: float = 1.0,
    select: bool = False,
    steps_per_completion: int | None = None,
    seeds: Sequence[int] | None = None,
    position_temperature: float = 0.0,
    with_tokens: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per-step log-probs ``[N, S]`` of the rollouts' traces (see the module docstring), the unit
    mask, and (``with_tokens``) the same steps scored by their written tokens alone, without the
    order term (what a KL that anchors the tokens but lets the order move compares), else None.

    ``temperature`` is the rollout's token temperature (0 is scored at 1: a greedy decode has no
    density of its own). ``steps_per_completion`` scores a random subset of each trace's steps
    (drawn from ``seeds[i]``); the mean over units is then an unbiased estimate of the mean over all
    steps."""
    t = float(temperature) if temperature and temperature > 0 else 1.0
    states: list[list[int]] = []
    targets: list[tuple[list[int], list[int]]] = []
    owner: list[int] = []
    for i, r in enumerate(rollouts):
        chosen = list(range(len(r.steps)))
        if steps_per_completion is not None and steps_per_completion < len(chosen):
            g = torch.Generator().manual_seed(int(seeds[i] if seeds is not None else i))
            chosen = sorted(torch.randperm(len(chosen), generator=g)[:steps_per_completion].tolist())
        state = list(r.initial)
        want = set(chosen)
        for s, (pos, tok) in enumerate(r.steps):
            if s in want:
                states.append(list(state))
                targets.append((pos, tok))
                owner.append(i)
            for p, v in zip(pos, tok):
                state[p] = v
    if not states:
        empty = _gather_units([torch.zeros(0) for _ in rollouts])
        return (*empty, empty[0] if with_tokens else None)
    ids, attn = pad_right(states)
    logits = policy_logits(model, ids, attn, banned)
    dev = logits.device
    logp_t = torch.log_softmax(logits / t, dim=-1)
    n_rows, width = ids.shape
    tgt = torch.zeros(n_rows, width, dtype=torch.bool)
    tok = torch.zeros(n_rows, width, dtype=torch.long)
    for j, (pos, v) in enumerate(targets):
        tgt[j, pos] = True
        tok[j, pos] = torch.as_tensor(v, dtype=torch.long)
    tgt, tok = tgt.to(dev), tok.to(dev)
    per_pos = logp_t.gather(-1, tok[..., None]).squeeze(-1)
    step_logp = torch.where(tgt, per_pos, torch.zeros_like(per_pos)).sum(-1)  # [R]
    token_logp = step_logp
    if position_temperature > 0:
        step_logp = step_logp + soft_order_logp(logits, ids.to(dev), attn.to(dev), tgt, mask_id, position_temperature)
    elif select:
        step_logp = step_logp + _selection_logp(logits, logp_t, ids.to(dev), attn.to(dev), tgt, tok, mask_id)
    index = [[j for j, o in enumerate(owner) if o == i] for i in range(len(rollouts))]
    units, mask = _gather_units([step_logp[ix] for ix in index])
    tokens = _gather_units([token_logp[ix] for ix in index])[0] if with_tokens else None
    return units, mask, tokens


def _selection_logp(logits, logp_t, ids, attn, tgt, tok, mask_id) -> torch.Tensor:
    """log P(the confidence rule picks the committed cell | each masked cell proposed its own
    draw) for rows committing one cell: ``sum_j log sum_u p_j^T(u) [p_j(u) < p_c(v)]`` over the
    other masked cells ``j``. The comparison is taken on detached probabilities (it is a step
    function); the gradient flows through the draw probabilities ``p_j^T``."""
    probs = torch.softmax(logits, dim=-1)
    chosen = tgt.float().argmax(-1)  # one committed cell per row
    rows = torch.arange(ids.shape[0], device=ids.device)
    thr = probs[rows, chosen, tok[rows, chosen]].detach()  # [R]
    below = probs.detach() < thr[:, None, None]
    q = (logp_t.exp() * below).sum(-1).clamp_min(1e-6)  # [R, T]
    others = (ids == mask_id) & attn.bool() & ~tgt
    single = tgt.sum(-1) == 1
    return torch.where(others, torch.log(q), torch.zeros_like(q)).sum(-1) * single


def soft_order_logp(logits, ids, attn, tgt, mask_id, position_temperature: float) -> torch.Tensor:
    """log-probability that :class:`unmask.rl.sampler.SoftConfidenceSampler` drew the committed
    cells: Plackett-Luce over ``max prob / tau`` of the masked cells (one cell: a softmax).
    Differentiable through every cell's top probability, which is what lets GRPO lower the
    certainty of a cell that is written too early."""
    score = torch.softmax(logits, dim=-1).max(-1).values / position_temperature  # [R, T]
    masked = (ids == mask_id) & attn.bool()
    score = score.masked_fill(~masked, float("-inf"))
    out = torch.zeros(ids.shape[0], device=ids.device)
    remaining = score
    for _ in range(int(tgt.sum(-1).max())):  # Plackett-Luce: the committed cells one after another
        pick = (tgt & torch.isfinite(remaining)).float().argmax(-1)
        has = (tgt & torch.isfinite(remaining)).any(-1)
        rows = torch.arange(ids.shape[0], device=ids.device)
        lse = torch.logsumexp(remaining, dim=-1)
        out = out + torch.where(has, remaining[rows, pick] - lse, torch.zeros_like(lse))
        remaining = remaining.clone()
        remaining[rows[has], pick[has]] = float("-inf")
    return out
