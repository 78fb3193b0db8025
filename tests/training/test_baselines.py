"""The word LM's n-gram baseline."""

import pytest

from training.baselines import KneserNeyLM


def test_kneser_ney_is_a_distribution_and_beats_a_unigram_guess() -> None:
    stream = [1, 2, 3, 1, 2, 4, 1, 2, 3, 1, 2, 3] * 20
    lm = KneserNeyLM(order=3, vocab_size=6).fit(stream)
    for context in ([], [1], [1, 2], [5, 5]):
        assert sum(lm.prob(context, w) for w in range(6)) == pytest.approx(1.0)
    assert lm.prob([1, 2], 3) > lm.prob([1, 2], 4) > lm.prob([1, 2], 5) > 0
    assert lm.perplexity(stream[:24]) < 3.0
