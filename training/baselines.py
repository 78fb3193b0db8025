"""Baselines every model is measured against.

Word LM: an interpolated modified Kneser-Ney n-gram model (Chen & Goodman, 1998) on the same splits and vocabulary.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence

Context = tuple[int, ...]


class KneserNeyLM:
    """Interpolated modified Kneser-Ney over token ids in one continuous stream.

    The highest order uses raw counts; lower orders use continuation counts (how many distinct words precede the
    n-gram); the unigram level interpolates with the uniform distribution over the vocabulary, so no token ever
    has probability zero. Three discounts per order (for counts 1, 2 and 3+) estimated from count-of-counts.
    """

    def __init__(self, order: int, vocab_size: int) -> None:
        assert order >= 1
        self.order = order
        self.vocab_size = vocab_size
        # counts[k][context][word] for k = 1..order (context length k-1)
        self.counts: list[dict[Context, Counter[int]]] = [defaultdict(Counter) for _ in range(order + 1)]
        self.discounts: list[tuple[float, float, float]] = [(0.0, 0.0, 0.0)] * (order + 1)
        # per context: (total, n1, n2, n3+)
        self.context_stats: list[dict[Context, tuple[int, int, int, int]]] = [{} for _ in range(order + 1)]

    def fit(self, ids: Sequence[int]) -> KneserNeyLM:
        n = self.order
        top = self.counts[n]
        for i in range(len(ids)):
            for k in (n,):
                if i - k + 1 < 0:
                    continue
                top[tuple(ids[i - k + 1 : i])][ids[i]] += 1
        # Shorter n-grams at the start of the stream have no left neighbour: count them as raw occurrences at
        # the highest order they reach, so the stream's first tokens are not lost.
        for i in range(min(n - 1, len(ids))):
            self.counts[i + 1][tuple(ids[:i])][ids[i]] += 1
        # Continuation counts: for each n-gram of order k+1 seen, its suffix of order k gains one left context.
        for k in range(n - 1, 0, -1):
            seen: set[tuple[int, ...]] = set()
            for ctx, words in self.counts[k + 1].items():
                for w in words:
                    gram = (*ctx, w)
                    if gram not in seen:
                        seen.add(gram)
                        self.counts[k][ctx[1:]][w] += 1
        for k in range(1, n + 1):
            self.discounts[k] = self._estimate_discounts(self.counts[k])
            stats = self.context_stats[k]
            for ctx, words in self.counts[k].items():
                values = words.values()
                stats[ctx] = (
                    sum(values),
                    sum(1 for c in values if c == 1),
                    sum(1 for c in values if c == 2),
                    sum(1 for c in values if c >= 3),
                )
        return self

    @staticmethod
    def _estimate_discounts(table: dict[Context, Counter[int]]) -> tuple[float, float, float]:
        coc = Counter(c for words in table.values() for c in words.values() if c <= 4)
        n1, n2, n3, n4 = (coc.get(i, 0) for i in (1, 2, 3, 4))
        if min(n1, n2, n3, n4) == 0:  # tiny data: fall back to the usual constant
            return (0.75, 0.75, 0.75)
        y = n1 / (n1 + 2 * n2)
        return (
            max(1 - 2 * y * n2 / n1, 0.05),
            max(2 - 3 * y * n3 / n2, 0.05),
            max(3 - 4 * y * n4 / n3, 0.05),
        )

    def prob(self, context: Sequence[int], word: int) -> float:
        """P(word | last order-1 tokens of context)."""
        ctx = tuple(context[-(self.order - 1) :]) if self.order > 1 else ()
        p = 1.0 / self.vocab_size
        # From the unigram level up, each level interpolates with the one below.
        for k in range(1, len(ctx) + 2):
            sub = ctx[len(ctx) - (k - 1) :] if k > 1 else ()
            stats = self.context_stats[k].get(sub)
            if stats is None:
                continue
            total, n1, n2, n3 = stats
            d1, d2, d3 = self.discounts[k]
            c = self.counts[k][sub].get(word, 0)
            d = 0.0 if c == 0 else d1 if c == 1 else d2 if c == 2 else d3
            gamma = (d1 * n1 + d2 * n2 + d3 * n3) / total
            p = max(c - d, 0.0) / total + gamma * p
        return p

    def perplexity(self, ids: Sequence[int], history: Sequence[int] = ()) -> float:
        """exp of the mean negative log-likelihood of `ids`, each token predicted from the tokens before it."""
        stream = [*history[-(self.order - 1) :], *ids] if self.order > 1 else list(ids)
        offset = len(stream) - len(ids)
        nll = 0.0
        for i in range(offset, len(stream)):
            nll -= math.log(self.prob(stream[max(0, i - self.order + 1) : i], stream[i]))
        return math.exp(nll / max(len(ids), 1))
