"""Leave-one-domain-out evaluation: for each domain of the default data, a classifier trained without it (its rows
left out of train and valid), scored on that domain's test split beside VADER and a TF-IDF + LR trained the same way.

These are short runs (one member, `cfg.epochs` epochs, typically far fewer than the shipped model's), so they
measure transfer to an unseen kind of text, not the best reachable accuracy. Each domain is one independent job
(`python -m training.sentiment lodo --domains tweets`); each appends one JSON line to the results file, which the
export copies into the manifest (`metrics.leave_one_domain_out`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from service.tokenizer import Vocab
from training.baselines_sentiment import Vader, classification_metrics, fit_tfidf_logreg
from training.data.archives import DEFAULT_CACHE
from training.data.sentiment import Example, SentimentData
from training.kit.checkpoint import build_model
from training.sentiment.config import TrainConfig
from training.sentiment.encoding import encode
from training.sentiment.evaluate import predict_probs
from training.sentiment.model import SentimentConfig, SentimentProbs
from training.sentiment.train import train

log = logging.getLogger(__name__)


def rows_of(rows: Sequence[Example], domain: str) -> list[Example]:
    return [e for e in rows if e.domain == domain]


def held_out_scores(data: SentimentData, domain: str, cfg: TrainConfig, cache_dir: Path) -> dict[str, Any]:
    """Train on every domain but `domain` (one member), score it and the baselines on `domain`'s test split."""
    started = time.monotonic()
    rest = data.without(domain)
    held = rows_of(data.test, domain)
    n_labels = len(data.labels)
    labels = [e.label for e in held]
    texts = [e.text for e in held]

    ckpt = train(rest, replace(cfg, ensemble=1), None, cache_dir)
    model = build_model(ckpt, lambda c: SentimentProbs.untrained(c, 1), SentimentConfig)
    vocab = Vocab(ckpt.extra["vocab"])
    encoded = encode(held, vocab, cfg.max_tokens)
    model_scores = classification_metrics(labels, predict_probs(model, encoded.ids).argmax(1), n_labels)
    unk = sum(i == vocab.unk_id for ids in encoded.ids for i in ids) / sum(len(ids) for ids in encoded.ids)

    tfidf, search = fit_tfidf_logreg(
        ([e.text for e in rest.train], [e.label for e in rest.train]),
        ([e.text for e in rest.valid], [e.label for e in rest.valid]),
        n_labels,
    )
    return {
        "held_out": domain,
        "test_rows": len(held),
        "bilstm": model_scores,
        "bilstm_valid_accuracy_other_domains": round(ckpt.extra["metrics"]["valid"]["accuracy"], 4),
        "bilstm_epochs_run": len(ckpt.history[0]),
        "unk_rate": round(unk, 4),
        "tfidf_logreg": {**classification_metrics(labels, tfidf.predict(texts), n_labels), "C": search["C"]},
        "vader": classification_metrics(labels, Vader().predict(texts), n_labels),
        "config": {"ensemble": 1, "epochs": cfg.epochs, "patience": cfg.patience, "lexicon": cfg.lexicon},
        "minutes": round((time.monotonic() - started) / 60, 2),
    }


def leave_one_domain_out(
    data: SentimentData, cfg: TrainConfig, domains: Sequence[str], results: Path, cache_dir: Path = DEFAULT_CACHE
) -> None:
    """Run `held_out_scores` for each domain and append each record to `results` (JSONL)."""
    if not data.builtin:
        raise ValueError("leave-one-domain-out needs the default (multi-domain) data")
    results.parent.mkdir(parents=True, exist_ok=True)
    for domain in domains:
        if domain not in data.domains():
            raise ValueError(f"unknown domain {domain!r}; the data has {data.domains()}")
        record = held_out_scores(data, domain, cfg, cache_dir)
        log.info("leave out %s -> %s", domain, record)
        with results.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def read_results(path: Path | None) -> list[dict[str, Any]]:
    """The last record per held-out domain."""
    if path is None or not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return list({r["held_out"]: r for r in records}.values())
