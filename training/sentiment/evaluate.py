"""Predictions and metrics: the PyTorch model during training, the exported graph at export, and the baselines."""

from __future__ import annotations

import itertools
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


def evaluate_baselines(
    data: SentimentData, out_of_domain: dict[str, list[Example]], pairs: Sequence[dict[str, Any]] = ()
) -> dict[str, dict[str, Any]]:
    """TF-IDF + logistic regression (any labels) and VADER (negative/positive only) on test, valid, each domain's
    test split, any out-of-domain sets and the minimal pairs."""
    n_labels = len(data.labels)
    domains = [d for d in data.domains() if d]

    def texts(rows: Sequence[Example]) -> list[str]:
        return [e.text for e in rows]

    def labels(rows: Sequence[Example]) -> list[int]:
        return [e.label for e in rows]

    def scored(predict: Any) -> dict[str, Any]:
        result: dict[str, Any] = {
            "test": classification_metrics(labels(data.test), predict(texts(data.test)), n_labels),
            "valid": classification_metrics(labels(data.valid), predict(texts(data.valid)), n_labels),
        }
        for d in domains:
            rows = [e for e in data.test if e.domain == d]
            result[f"test_{d}"] = classification_metrics(labels(rows), predict(texts(rows)), n_labels)
        for name, rows in out_of_domain.items():
            result[f"out_of_domain_{name}"] = classification_metrics(labels(rows), predict(texts(rows)), n_labels)
        if pairs:
            result["minimal_pairs"] = minimal_pair_scores(pairs, predict([r["text"] for r in pairs]), data.labels)
        return result

    log.info("baseline: TF-IDF + logistic regression")
    tfidf, search = fit_tfidf_logreg(
        (texts(data.train), labels(data.train)), (texts(data.valid), labels(data.valid)), n_labels
    )
    results: dict[str, dict[str, Any]] = {"tfidf_logreg": {**scored(tfidf.predict), "selection": search}}
    if tuple(data.labels) == DEFAULT_LABELS:
        log.info("baseline: VADER")
        results["vader"] = {**scored(Vader().predict), "rule": "compound >= 0 -> positive"}
    return results


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE: |accuracy - confidence| of the predicted label, averaged over equal-width confidence bins by their size."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for low, high in itertools.pairwise(edges):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def temperature_scaled(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): what SentimentProbs computes in the graph for a temperature T."""
    logits = np.log(np.clip(probs, 1e-12, None)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=1, keepdims=True)


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean())


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature in [0.25, 4] (log-spaced grid, then a finer one around the best) with the lowest NLL."""
    grid = np.exp(np.linspace(np.log(0.25), np.log(4.0), 81))
    best = min(grid, key=lambda t: negative_log_likelihood(temperature_scaled(probs, t), labels))
    fine = best * np.exp(np.linspace(-0.05, 0.05, 21))
    return float(min(fine, key=lambda t: negative_log_likelihood(temperature_scaled(probs, t), labels)))


def minimal_pair_scores(
    pairs: Sequence[dict[str, Any]], predicted: np.ndarray, labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy over the sentences, per category, and the share of pairs with both sentences right."""
    correct = np.asarray([labels[int(p)] == row["label"] for row, p in zip(pairs, predicted, strict=True)])
    by_pair: dict[str, list[bool]] = {}
    by_category: dict[str, list[bool]] = {}
    for row, ok in zip(pairs, correct, strict=True):
        by_pair.setdefault(row["pair"], []).append(bool(ok))
        by_category.setdefault(row["category"], []).append(bool(ok))
    return {
        "sentences": len(pairs),
        "accuracy": round(float(correct.mean()), 4),
        "pairs_both_right": round(float(np.mean([all(v) for v in by_pair.values()])), 4),
        "accuracy_by_category": {c: round(float(np.mean(v)), 4) for c, v in sorted(by_category.items())},
    }
