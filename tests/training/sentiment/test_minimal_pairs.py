"""The committed minimal pairs load, every pair is one negative and one positive sentence, and the set is balanced."""

from __future__ import annotations

from collections import Counter

import numpy as np

from training.data.sentiment import DEFAULT_LABELS, load_minimal_pairs
from training.sentiment.evaluate import minimal_pair_scores


def test_minimal_pairs_load_and_are_balanced() -> None:
    rows = load_minimal_pairs()
    assert len(rows) >= 40 and all(set(r) == {"pair", "category", "text", "label"} for r in rows)
    assert Counter(r["label"] for r in rows) == {"negative": len(rows) // 2, "positive": len(rows) // 2}
    pairs: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        pairs.setdefault(r["pair"], []).append(r)
    for members in pairs.values():
        assert sorted(m["label"] for m in members) == ["negative", "positive"]
        assert members[0]["category"] == members[1]["category"] and members[0]["text"] != members[1]["text"]
    assert {"negation", "but", "intensifier", "sarcasm"} <= {r["category"] for r in rows}
    assert len({r["text"] for r in rows}) == len(rows)


def test_minimal_pair_scores() -> None:
    rows = load_minimal_pairs()
    truth = np.asarray([DEFAULT_LABELS.index(r["label"]) for r in rows])
    assert minimal_pair_scores(rows, truth, list(DEFAULT_LABELS))["pairs_both_right"] == 1.0
    always_positive = minimal_pair_scores(rows, np.ones(len(rows), dtype=int), list(DEFAULT_LABELS))
    assert always_positive["accuracy"] == 0.5 and always_positive["pairs_both_right"] == 0.0
