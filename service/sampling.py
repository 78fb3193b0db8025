"""Next-token sampling: greedy, temperature, top-k and top-p (nucleus), with a seeded generator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# Temperatures below this decode greedily: logits / 1e-38 overflow float32 and would sample noise, and anything
# this cold is greedy in effect (the top token's probability rounds to 1).
GREEDY_BELOW = 1e-3


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0  # 0 (or below GREEDY_BELOW) = greedy
    top_k: int = 0  # 0 = no limit
    top_p: float = 1.0  # 1 = no limit

    def __post_init__(self) -> None:
        if self.temperature < GREEDY_BELOW:
            object.__setattr__(self, "temperature", 0.0)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    probs: np.ndarray = z / z.sum(axis=-1, keepdims=True)
    return probs


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

    @property
    def plain(self) -> bool:
        """Temperature sampling over the whole vocabulary (no top-k/top-p): can share a vectorised softmax."""
        return self.params.temperature > 0 and self.params.top_k == 0 and self.params.top_p >= 1.0

    def sample(self, logits: np.ndarray) -> int:
        """logits (V,) -> token id."""
        return int(sample_rows([self], logits[None, :])[0])

    def sample_filtered(self, logits: np.ndarray) -> int:
        """Top-k / top-p sampling of one row (the uncommon path, not vectorised)."""
        p = self.params
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
        return int(candidates[draw(self.rng, np.cumsum(probs))])


def draw(rng: np.random.Generator, cumulative: np.ndarray) -> int:
    """Index i with probability proportional to cumulative[i] - cumulative[i-1] (an unnormalised CDF)."""
    index = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
    return min(index, len(cumulative) - 1)


def sample_rows(samplers: list[Sampler], logits: np.ndarray) -> np.ndarray:
    """One token per row. logits (B, V); samplers[i] draws row i.

    Greedy rows share one argmax and plain-temperature rows one softmax, so a batch of 64 costs little
    more than a single row; every row's arithmetic is the same whatever else is in the batch.
    """
    out = np.empty(len(samplers), dtype=np.int64)
    greedy = [i for i, s in enumerate(samplers) if s.params.temperature == 0.0]
    plain = [i for i, s in enumerate(samplers) if s.plain]
    if greedy:
        out[greedy] = logits[greedy].argmax(axis=-1)
    if plain:
        # float32 throughout: exp in float64 costs ~5x here, and a CDF off by 1e-7 relative changes nothing.
        temperatures = np.array([samplers[i].params.temperature for i in plain], dtype=np.float32)[:, None]
        scores = logits[plain] / temperatures
        scores -= scores.max(axis=-1, keepdims=True)
        cumulative = np.cumsum(np.exp(scores, out=scores), axis=-1)
        for row, i in enumerate(plain):
            out[i] = draw(samplers[i].rng, cumulative[row])
    for i, sampler in enumerate(samplers):
        if sampler.params.temperature > 0 and not sampler.plain:
            out[i] = sampler.sample_filtered(logits[i])
    return out
