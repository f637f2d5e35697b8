"""L&O-NAE-SAT (latents and observations, Kim et al., ICML 2025, Definition 3.1).

A sequence is ``N`` latent bits drawn uniformly at random followed by ``P`` observation bits;
observation ``j`` is ``NAE(x_a, x_b, x_c) = 1 - [x_a = x_b = x_c]`` for a triple ``(a, b, c)`` of
distinct latent indices. The triples are part of the task definition: they are drawn once from
``seed`` and saved with a trained model (``task.json``), so the model and the verifier agree.

The point of the task: observations are trivial given the latents but latents are hard to infer
from observations, so a sampler that fills latents first does well and one that commits
observations early (random order) tends to write observations no latent assignment satisfies.

Canvas: ``[BOS]`` + ``N`` latent bits + ``P`` observation bits, all masked (unconditional). Text:
``N + P`` characters from ``01``. Score: ``obs_accuracy`` = fraction of observation bits equal to
the NAE of the generated latents (guessing all ones gives 0.75); verify = all consistent.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from .synthetic import SyntheticTask, register


def make_triples(n: int, p: int, seed: int) -> list[tuple[int, int, int]]:
    """``p`` triples of distinct latent indices in ``[0, n)``, a pure function of the arguments."""
    if n < 3:
        raise ValueError("NAE-SAT needs at least 3 latent bits")
    rng = random.Random(f"nae-sat-{n}-{p}-{seed}")
    return [tuple(sorted(rng.sample(range(n), 3))) for _ in range(p)]  # type: ignore[misc]


def nae(a: int, b: int, c: int) -> int:
    return 0 if a == b == c else 1


@register("nae_sat")
class NAESatTask(SyntheticTask):
    """Params: ``n`` latent bits, ``p`` observations, ``seed`` for the triples."""

    name = "nae_sat"
    alphabet = "01"
    answer_alphabet = "01"  # what a decoder may write into a masked cell

    def __init__(self, n: int = 12, p: int = 48, seed: int = 0) -> None:
        super().__init__(n=n, p=p, seed=seed)
        self.n, self.p, self.triple_seed = n, p, seed
        self.seq_len = n + p
        self.triples = make_triples(n, p, seed)

    def observations(self, latents: Sequence[int]) -> list[int]:
        return [nae(latents[a], latents[b], latents[c]) for a, b, c in self.triples]

    def text_of(self, latents: Sequence[int]) -> str:
        return "".join(map(str, latents)) + "".join(map(str, self.observations(latents)))

    def derived_positions(self) -> list[int]:
        return list(range(1 + self.n, 1 + self.seq_len))

    def sample(self, rng: random.Random, **difficulty: Any) -> dict[str, Any]:
        latents = [rng.randint(0, 1) for _ in range(self.n)]
        return {"puzzle": "_" * self.seq_len, "reference": self.text_of(latents)}

    def training_example(self, rng: random.Random) -> tuple[list[int], list[bool]]:
        bits = rng.getrandbits(self.n)
        latents = [(bits >> i) & 1 for i in range(self.n)]
        zero, one = self.char_ids["0"], self.char_ids["1"]
        seq = latents + self.observations(latents)
        ids = [self.bos_id] + [one if v else zero for v in seq]
        return ids, [False] + [True] * self.seq_len

    def prompt_ids(self, item: dict[str, Any] | None = None, tokenizer=None) -> list[int]:
        bos, mask = self._special_ids(tokenizer)
        return [bos] + [mask] * self.seq_len

    def parse(self, text_or_ids: str | Sequence[int]) -> str:
        return self.answer_text(text_or_ids)

    def score(self, item: dict[str, Any] | None, answer: str | Sequence[int]) -> dict[str, float]:
        """``obs_accuracy`` (0 for a malformed answer) and ``correct`` (all observations hold)."""
        text = self.completion_text(answer)
        if len(text) != self.seq_len or any(ch not in "01" for ch in text):
            return {"correct": 0.0, "obs_accuracy": 0.0}
        latents = [int(ch) for ch in text[: self.n]]
        want = self.observations(latents)
        got = [int(ch) for ch in text[self.n:]]
        acc = sum(w == g for w, g in zip(want, got)) / self.p
        return {"correct": float(acc == 1.0), "obs_accuracy": acc}

    def verify(self, item: dict[str, Any] | None, answer: str | Sequence[int]) -> bool:
        return self.score(item, answer)["correct"] == 1.0
