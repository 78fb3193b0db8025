"""Baselines the sentiment model is measured against, on the same splits.

- VADER (Hutto & Gilbert, 2014): the `vaderSentiment` lexicon and rules, no training; compound >= 0 -> positive.
  Only meaningful for the two labels negative/positive.
- TF-IDF + logistic regression: word uni- and bigrams with the service's tokenizer, sublinear tf; the inverse
  regularisation strength C is chosen on the validation split (never on test).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import Pipeline

from service.tokenizer import tokenize

log = logging.getLogger(__name__)

Labels = Sequence[int] | np.ndarray  # class ids

TFIDF_C_GRID = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)


def classification_metrics(y_true: Labels, y_pred: Labels, n_labels: int) -> dict[str, float]:
    """Accuracy and macro-F1 (F1 averaged over every label, also the ones never predicted)."""
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=list(range(n_labels)), average="macro", zero_division=0)),
    }


def _analyzer_tokens(text: str) -> list[str]:
    return tokenize(text, add_eos=False)


@dataclass
class TfidfLogReg:
    """Word 1-2-gram TF-IDF features + L2 logistic regression."""

    C: float = 4.0
    seed: int = 0

    def fit(self, texts: Sequence[str], labels: Sequence[int]) -> TfidfLogReg:
        self.pipeline = Pipeline(
            [
                (
                    "tfidf",
                    TfidfVectorizer(
                        tokenizer=_analyzer_tokens,
                        lowercase=False,  # the tokenizer lower-cases
                        token_pattern=None,
                        ngram_range=(1, 2),
                        sublinear_tf=True,
                        min_df=1,
                    ),
                ),
                ("lr", LogisticRegression(C=self.C, max_iter=2000, random_state=self.seed)),
            ]
        )
        self.pipeline.fit(list(texts), list(labels))
        return self

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.pipeline.predict(list(texts)))


def fit_tfidf_logreg(
    train: tuple[Sequence[str], Sequence[int]], valid: tuple[Sequence[str], Sequence[int]], n_labels: int
) -> tuple[TfidfLogReg, dict[str, Any]]:
    """Fit one model per C in the grid, keep the best on validation accuracy. Returns it and the search record."""
    scores: dict[str, float] = {}
    best: TfidfLogReg | None = None
    for c in TFIDF_C_GRID:
        model = TfidfLogReg(C=c).fit(*train)
        accuracy = classification_metrics(valid[1], model.predict(valid[0]), n_labels)["accuracy"]
        scores[str(c)] = round(accuracy, 4)
        if best is None or accuracy > scores[str(best.C)]:
            best = model
    assert best is not None
    log.info("TF-IDF + LR: valid accuracy by C %s -> C=%g", scores, best.C)
    return best, {"C": best.C, "valid_accuracy_by_C": scores}


class Vader:
    """VADER lexicon baseline for two labels: compound >= 0 -> positive (label 1), else negative (label 0)."""

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.analyzer = SentimentIntensityAnalyzer()

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray([int(self.analyzer.polarity_scores(t)["compound"] >= 0) for t in texts])
