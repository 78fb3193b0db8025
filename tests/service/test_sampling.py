"""Next-token sampling (service/sampling.py): nucleus (top-p) and top-k filtering, the greedy cases, and the
vectorised batch path drawing exactly what each row would draw alone."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from service.sampling import GREEDY_BELOW, Sampler, SamplingParams, sample_rows

# A hand-made next-token distribution; sorted most likely first it is 1 (0.40), 3 (0.30), 4 (0.15), 2 (0.10), 0.
PROBS = np.array([0.05, 0.40, 0.10, 0.30, 0.15])
LOGITS = np.log(PROBS).astype(np.float32)
DRAWS = 4000


def frequencies(params: SamplingParams, logits: np.ndarray = LOGITS, seed: int = 0) -> dict[int, float]:
    sampler = Sampler(params, seed)
    counts = Counter(sampler.sample(logits) for _ in range(DRAWS))
    return {token: n / DRAWS for token, n in counts.items()}


@pytest.mark.parametrize(
    ("top_p", "kept"),
    [
        (0.35, [1]),  # 0.40 alone reaches 0.35
        (0.60, [1, 3]),  # 0.40 < 0.60 <= 0.70
        (0.75, [1, 3, 4]),  # 0.70 < 0.75 <= 0.85
        (0.99, [1, 3, 4, 2, 0]),
    ],
)
def test_top_p_keeps_the_smallest_set_reaching_p(top_p: float, kept: list[int]) -> None:
    seen = frequencies(SamplingParams(temperature=1.0, top_p=top_p))
    assert sorted(seen) == sorted(kept)
    expected = PROBS[kept] / PROBS[kept].sum()  # the kept tokens, renormalised
    for token, p in zip(kept, expected, strict=True):
        assert seen[token] == pytest.approx(p, abs=0.03), (token, seen)


def test_top_k_keeps_the_k_most_likely() -> None:
    seen = frequencies(SamplingParams(temperature=1.0, top_k=2))
    assert sorted(seen) == [1, 3]
    assert seen[1] == pytest.approx(0.4 / 0.7, abs=0.03)


def test_plain_temperature_sampling_follows_the_distribution() -> None:
    seen = frequencies(SamplingParams(temperature=1.0))
    for token, p in enumerate(PROBS):
        assert seen[token] == pytest.approx(p, abs=0.03)


def random_logits(rng: np.random.Generator, rows: int = 1, vocab: int = 40) -> np.ndarray:
    return (rng.standard_normal((rows, vocab)) * 3).astype(np.float32)


@pytest.mark.parametrize("temperature", [0.0, GREEDY_BELOW / 2, 1e-9])
def test_temperature_below_greedy_below_is_greedy(temperature: float) -> None:
    params = SamplingParams(temperature=temperature, top_k=5, top_p=0.5)
    assert params.temperature == 0.0
    sampler, rng = Sampler(params, 3), np.random.default_rng(1)
    for logits in random_logits(rng, rows=200):
        assert sampler.sample(logits) == int(logits.argmax())


def test_top_k_one_is_greedy_at_any_temperature() -> None:
    rng = np.random.default_rng(2)
    for temperature in (0.5, 1.0, 5.0):
        sampler = Sampler(SamplingParams(temperature=temperature, top_k=1), 7)
        for logits in random_logits(rng, rows=100):
            assert sampler.sample(logits) == int(logits.argmax())


BATCH = [
    SamplingParams(temperature=0.0),
    SamplingParams(temperature=0.8),
    SamplingParams(temperature=1.0, top_k=5),
    SamplingParams(temperature=1.0, top_p=0.9),
    SamplingParams(temperature=1.3),
    SamplingParams(temperature=0.7, top_k=8, top_p=0.8),
]


def test_a_vectorised_row_equals_the_same_row_sampled_alone() -> None:
    """Greedy, plain and filtered rows drawn together (one argmax, one softmax) give, step after step, exactly the
    tokens each row's sampler gives on its own with the same seed."""
    together = [Sampler(params, seed) for seed, params in enumerate(BATCH)]
    alone = [Sampler(params, seed) for seed, params in enumerate(BATCH)]
    rng = np.random.default_rng(4)
    for _ in range(50):
        logits = random_logits(rng, rows=len(BATCH))
        batch = sample_rows(together, logits)
        assert batch.tolist() == [s.sample(row) for s, row in zip(alone, logits, strict=True)]


def test_a_resumed_sampler_continues_the_same_sequence() -> None:
    """What a session keeps between calls: the generator's position, so that 2 × 10 draws equal 20 draws."""
    params = SamplingParams(temperature=1.0, top_p=0.9)
    logits = random_logits(np.random.default_rng(5), rows=20)
    straight = Sampler(params, 11)
    expected = [straight.sample(row) for row in logits]
    first = Sampler(params, 11)
    head = [first.sample(row) for row in logits[:10]]
    resumed = Sampler.resume(params, first.rng_state())
    assert head + [resumed.sample(row) for row in logits[10:]] == expected
