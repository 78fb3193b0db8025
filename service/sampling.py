"""Next-token sampling: greedy, temperature, top-k and top-p (nucleus), with a seeded generator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0  # 0 = greedy
    top_k: int = 0  # 0 = no limit
    top_p: float = 1.0  # 1 = no limit


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


class Sampler:
    """Draws token ids from logits. Its state is the generator's, so a generation can be resumed exactly."""

    def __init__(self, params: SamplingParams, seed: int | None) -> None:
        self.params = params
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def rng_state(self) -> dict[str, Any]:
        """The generator's exact position (JSON-able), kept in a session between calls."""
        return dict(self.rng.bit_generator.state)

    @classmethod
    def resume(cls, params: SamplingParams, rng_state: dict[str, Any]) -> Sampler:
        sampler = cls(params, None)
        sampler.rng.bit_generator.state = rng_state
        return sampler

    def sample(self, logits: np.ndarray) -> int:
        """logits (V,) -> token id."""
        p = self.params
        if p.temperature == 0.0:
            return int(np.argmax(logits))
        candidates = np.arange(logits.shape[-1])
        scores = logits.astype(np.float64) / p.temperature
        if 0 < p.top_k < scores.shape[-1]:
            candidates = np.argpartition(scores, -p.top_k)[-p.top_k :]
            scores = scores[candidates]
        probs = softmax(scores)
        if p.top_p < 1.0:
            order = np.argsort(-probs, kind="stable")
            cumulative = np.cumsum(probs[order])
            keep = order[: int(np.searchsorted(cumulative, p.top_p)) + 1]  # smallest set reaching top_p
            candidates, probs = candidates[keep], probs[keep] / probs[keep].sum()
        cumulative = np.cumsum(probs)
        index = int(np.searchsorted(cumulative, self.rng.random() * cumulative[-1], side="right"))
        return int(candidates[min(index, len(candidates) - 1)])
