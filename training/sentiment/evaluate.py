"""Predictions and metrics: the PyTorch model during training, the exported graph at export, and the baselines."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from training.baselines_sentiment import Vader, classification_metrics, fit_tfidf_logreg
from training.data.sentiment import DEFAULT_LABELS, Example, SentimentData
from training.kit.export import ort_session
from training.sentiment.encoding import length_sorted_batches, pad_batch, padded_case
from training.sentiment.model import SentimentProbs

log = logging.getLogger(__name__)


@torch.no_grad()
def predict_probs(model: torch.nn.Module, seqs: Sequence[Sequence[int]], batch_size: int = 256) -> np.ndarray:
    """(N, classes) probabilities of a classifier or of a SentimentProbs ensemble, in input order."""
    model.eval()
    out: np.ndarray | None = None
    for index in length_sorted_batches(seqs, batch_size):
        tokens, lengths = pad_batch([seqs[i] for i in index])
        result = model(tokens, lengths)
        probs = result if isinstance(model, SentimentProbs) else F.softmax(result, dim=-1)
        if out is None:
            out = np.zeros((len(seqs), probs.size(1)), dtype=np.float32)
        out[index] = probs.numpy()
    assert out is not None
    return out


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float((probs.argmax(axis=1) == labels).mean())


def onnx_probs(path: Path, seqs: Sequence[Sequence[int]], batch_size: int = 256) -> np.ndarray:
    """Run the exported graph over many texts (length-sorted batches), in input order."""
    session = ort_session(path)
    out: np.ndarray | None = None
    for index in length_sorted_batches(seqs, batch_size):
        probs = session.run(None, padded_case([seqs[i] for i in index]))[0]
        if out is None:
            out = np.zeros((len(seqs), probs.shape[1]), dtype=np.float32)
        out[index] = probs
    assert out is not None
    return out


def evaluate_baselines(data: SentimentData, out_of_domain: dict[str, list[Example]]) -> dict[str, dict[str, Any]]:
    """TF-IDF + logistic regression (any labels) and VADER (negative/positive only) on test, valid, out of domain."""
    n_labels = len(data.labels)

    def texts(rows: Sequence[Example]) -> list[str]:
        return [e.text for e in rows]

    def labels(rows: Sequence[Example]) -> list[int]:
        return [e.label for e in rows]

    log.info("baseline: TF-IDF + logistic regression")
    tfidf, search = fit_tfidf_logreg(
        (texts(data.train), labels(data.train)), (texts(data.valid), labels(data.valid)), n_labels
    )
    results: dict[str, dict[str, Any]] = {
        "tfidf_logreg": {
            "test": classification_metrics(labels(data.test), tfidf.predict(texts(data.test)), n_labels),
            "valid": classification_metrics(labels(data.valid), tfidf.predict(texts(data.valid)), n_labels),
            "selection": search,
        }
    }
    for name, rows in out_of_domain.items():
        results["tfidf_logreg"][f"out_of_domain_{name}"] = classification_metrics(
            labels(rows), tfidf.predict(texts(rows)), n_labels
        )
    if tuple(data.labels) == DEFAULT_LABELS:
        log.info("baseline: VADER")
        vader = Vader()
        results["vader"] = {
            "test": classification_metrics(labels(data.test), vader.predict(texts(data.test)), n_labels),
            "valid": classification_metrics(labels(data.valid), vader.predict(texts(data.valid)), n_labels),
            "rule": "compound >= 0 -> positive",
        }
        for name, rows in out_of_domain.items():
            results["vader"][f"out_of_domain_{name}"] = classification_metrics(
                labels(rows), vader.predict(texts(rows)), n_labels
            )
    return results
