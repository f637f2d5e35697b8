"""What happened during a generation, per row: which position got which token at which step,
how sure the model was, and how many forwards it took.

Positions are *row-local* (0 = the row's first real token, padding excluded), so a row's trace
is the same whether it was decoded alone or in a left-padded batch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TokenRecord:
    step: int
    position: int
    token: int
    confidence: float
    entropy: float  # nats, of the predictive distribution at decode time


@dataclass
class StepRecord:
    step: int
    block: int
    committed: int
    kind: str = "select"  # select | bypass | fast_path | lookahead | fill
    info: dict[str, Any] = field(default_factory=dict)
    region: str | None = None  # the plan's region name (lockstep: "R" or "A"); None for plain blocks
    fill: dict[str, float] | None = None  # every named region's filled fraction after this commit
    nfe: int | None = None  # the row's forwards so far, when the plan names regions


@dataclass
class Trace:
    prompt_length: int
    max_new_tokens: int
    tokens: list[TokenRecord] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    nfe: int = 0  # forwards that included this row (lookahead batches count once)
    forward_rows: int = 0  # rows computed on this row's behalf (a lookahead of 8 candidates = 8)
    initial_tokens: list[int] = field(default_factory=list)  # the row's canvas before decoding
    final_tokens: list[int] = field(default_factory=list)
    regions: dict[str, list[int]] = field(default_factory=dict)  # named regions, row-local [start, end)

    @property
    def cumulative_entropy(self) -> float:
        """Sum of the entropies of every decoded token at the moment it was decoded (nats): the
        Info-Gain paper's "cumulative uncertainty"."""
        return float(sum(r.entropy for r in self.tokens))

    @property
    def cumulative_objective(self) -> float:
        """Sum of the lookahead samplers' per-step objective (J of the chosen action; -C on steps
        without a lookahead). 0 for samplers that do not score actions."""
        return float(sum(float(st.info.get("objective", 0.0)) for st in self.steps))

    @property
    def order(self) -> list[list[int]]:
        """``[step, position, token_id]`` for every committed token, in commit order."""
        return [[r.step, r.position, r.token] for r in self.tokens]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cumulative_entropy"] = self.cumulative_entropy
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trace:
        d = dict(d)
        d.pop("cumulative_entropy", None)
        tokens = [TokenRecord(**t) for t in d.pop("tokens", [])]
        steps = [StepRecord(**s) for s in d.pop("steps", [])]
        return cls(tokens=tokens, steps=steps, **d)
