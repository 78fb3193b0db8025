"""The recorded experiments (validation only): each variant changes the default recipe in one respect; `sweep`
trains it (one member) and appends its validation accuracy to a JSONL file. Test accuracy is never looked at while
choosing. training/sentiment_experiments.jsonl holds the runs the README reports; the export copies them into the
manifest.

The rows before "all-domains" ran on the movie snippets alone, without the lexicon and with plain shuffled batches
(the defaults of their time; each record's `config` says so); re-running them today trains on all four domains.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from training.data.sentiment import SentimentData
from training.sentiment.config import TrainConfig
from training.sentiment.train import train

log = logging.getLogger(__name__)

VARIANTS: dict[str, dict[str, Any]] = {
    # The first recipe: embedding/hidden 128, batch 32, lr 2e-3, patience 4, from scratch or after 3 epochs of
    # bidirectional LM pre-training (fine-tuned with the encoder frozen for 1 epoch, then at half the head's lr).
    "e128-b32-scratch": {
        "batch_size": 32,
        "lr": 2e-3,
        "patience": 4,
        "epochs": 15,
        "model": {"embedding": 128, "hidden": 128},
    },
    "e128-b32-pretrained": {
        "batch_size": 32,
        "lr": 2e-3,
        "patience": 4,
        "epochs": 15,
        "pretrain": {"epochs": 3},
        "model": {"embedding": 128, "hidden": 128},
    },
    # Batch 64 at lr 3e-3: as good, in half the epochs.
    "e128-b64-scratch": {"patience": 2, "epochs": 15, "model": {"embedding": 128, "hidden": 128}},
    # Extra training rows: the NYT editorial snippets labelled by the sign of their rating.
    "e128-b64-scratch-nyt-labels": {
        "patience": 2,
        "epochs": 15,
        "nyt_labels": True,
        "model": {"embedding": 128, "hidden": 128},
    },
    # Smaller: embedding 64, hidden 96 (the default size).
    "e64-h96-b64-scratch": {"patience": 2, "epochs": 15},
    # Ablations at the default size (no-smoothing was run after the default model was exported).
    "e64-h96-last-pooling": {"model": {"pooling": "last"}},
    "e64-h96-no-smoothing": {"label_smoothing": 0.0},
    # Issue 16: every labelled domain of the archive (movie, tweets, Amazon, NYT) in train/valid, valid accuracy
    # over all domains; short runs (at most 5 epochs, length-bucketed batches) to fit a shared machine.
    "all-domains": {"epochs": 5, "patience": 2, "lexicon": False},
    # + the VADER lexicon: its words in the vocabulary, their valence as an input channel.
    "all-domains-lexicon": {"epochs": 5, "patience": 2, "lexicon": True},
    # The default recipe itself (one member: member 1 of `make models-sentiment`).
    "default": {},
}


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    pre = replace(cfg.pretrain, **overrides.get("pretrain", {}))
    model = {**cfg.model, **overrides.get("model", {})}
    rest = {k: v for k, v in overrides.items() if k not in ("pretrain", "model")}
    return replace(cfg, pretrain=pre, model=model, **rest)


def sweep(
    data: SentimentData, base: TrainConfig, names: Sequence[str], results: Path, cache_dir: Path, lm_cache: Path
) -> None:
    """Train each variant with one member and append `{variant, overrides, valid metrics, minutes}` to `results`."""
    results.parent.mkdir(parents=True, exist_ok=True)
    for name in names:
        cfg = apply_overrides(replace(base, ensemble=1), VARIANTS[name])
        log.info("variant %s: %s", name, VARIANTS[name])
        ckpt = train(data, cfg, None, cache_dir, lm_cache)
        metrics, pretrained = ckpt.extra["metrics"], ckpt.extra["pretrain"]
        record = {
            "variant": name,
            "overrides": VARIANTS[name],
            "valid_accuracy": round(metrics["valid"]["accuracy"], 4),
            "valid_macro_f1": round(metrics["valid"]["macro_f1"], 4),
            "epochs_run": len(ckpt.history[0]),
            "minutes": round(ckpt.extra["minutes"], 2),
            "seed": cfg.seed,
            "config": {k: v for k, v in asdict(cfg).items() if k not in ("max_batches", "max_minutes")},
        }
        if pretrained.get("history"):
            record["pretrain_valid_perplexity"] = round(pretrained["history"][-1]["valid_perplexity"], 1)
        log.info("variant %s -> %s", name, record)
        with results.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def read_experiments(path: Path | None) -> list[dict[str, Any]]:
    if path is None or not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
