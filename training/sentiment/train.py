"""Fine-tuning: `cfg.ensemble` classifiers (seeds seed, seed + 1, ...) with early stopping on validation accuracy,
optionally from a pre-trained encoder with gradual unfreezing; their average goes into one checkpoint."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from service.tokenizer import Vocab
from training.baselines_sentiment import classification_metrics
from training.data.archives import DEFAULT_CACHE
from training.data.sentiment import DEFAULT_LABELS, SentimentData, load_auxiliary_labelled, load_valence_lexicon
from training.kit.checkpoint import Checkpoint, build_model, load_checkpoint, save_checkpoint
from training.kit.loop import Stopping, fit, progress
from training.kit.seed import set_seed
from training.sentiment.config import TrainConfig
from training.sentiment.encoding import (
    Encoded,
    bucketed_batches,
    build_vocab,
    encode,
    pad_batch,
    shuffled_batches,
    valence_table,
)
from training.sentiment.evaluate import accuracy, predict_probs
from training.sentiment.model import BiLanguageModel, BiLSTMClassifier, SentimentConfig, SentimentProbs
from training.sentiment.pretrain import pretrained_lm

log = logging.getLogger(__name__)

FAMILY = "sentiment"
METRIC = "valid_accuracy"


def train_classifier(
    model: BiLSTMClassifier, train: Encoded, valid: Encoded, cfg: TrainConfig, seed: int, pretrained: bool
) -> tuple[dict[str, Tensor], list[dict[str, Any]]]:
    """Fine-tune with early stopping on validation accuracy; returns the best weights and the history."""
    set_seed(seed)
    rng = np.random.default_rng(seed)
    encoder = [*model.embed.parameters(), *model.lstm.parameters()]
    encoder_lr = cfg.lr * (cfg.encoder_lr_scale if pretrained else 1.0)
    optimizer = torch.optim.Adam(
        [{"params": encoder, "lr": encoder_lr}, {"params": model.head.parameters(), "lr": cfg.lr}],
        weight_decay=cfg.weight_decay,
    )
    frozen = False

    def train_epoch(epoch: int) -> dict[str, Any]:
        nonlocal frozen
        frozen = pretrained and epoch <= cfg.freeze_epochs
        for p in encoder:
            p.requires_grad_(not frozen)
        model.train()
        total_loss, seen, correct = 0.0, 0, 0
        batches = list(
            bucketed_batches(train.ids, cfg.batch_size, rng)
            if cfg.length_buckets
            else shuffled_batches(len(train), cfg.batch_size, rng)
        )
        if cfg.max_batches:
            batches = batches[: cfg.max_batches]
        bar = progress(batches, f"seed {seed} epoch {epoch:2d}")
        for b, index in enumerate(bar):
            tokens, lengths = pad_batch([train.ids[i] for i in index])
            targets = torch.from_numpy(train.labels[index])
            logits = model(tokens, lengths)
            loss = F.cross_entropy(logits, targets, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            optimizer.step()
            total_loss += loss.item() * len(index)
            seen += len(index)
            correct += int((logits.argmax(1) == targets).sum())
            if b % 20 == 0:
                bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
        return {"train_loss": total_loss / seen, "train_accuracy": correct / seen}

    def report(record: dict[str, Any], improved: bool) -> None:
        log.info(
            "seed %d epoch %2d%s | train loss %.3f acc %.3f | valid acc %.4f%s | %.1f min",
            seed,
            record["epoch"],
            " (encoder frozen)" if frozen else "",
            record["train_loss"],
            record["train_accuracy"],
            record[METRIC],
            " (best)" if improved else "",
            record["minutes"],
        )

    result = fit(
        cfg.epochs,
        train_epoch,
        lambda: accuracy(predict_probs(model, valid.ids), valid.labels),
        Stopping(METRIC, maximize=True, patience=cfg.patience, max_minutes=cfg.max_minutes),
        model=model,
        report=report,
    )
    for p in encoder:
        p.requires_grad_(True)
    assert result.best_state is not None
    return result.best_state, result.history


def train(
    data: SentimentData,
    cfg: TrainConfig,
    checkpoint: Path | None,
    cache_dir: Path = DEFAULT_CACHE,
    lm_cache: Path | None = None,
) -> Checkpoint:
    """Pre-train (optional), fine-tune `cfg.ensemble` classifiers, save a self-describing checkpoint (when given a
    path) and return it. Validation metrics only: the test split is read at export."""
    started = time.monotonic()
    set_seed(cfg.seed)
    lexicon: dict[str, float] = {}
    lexicon_source = ""
    if cfg.lexicon:
        lexicon, lexicon_source = load_valence_lexicon(cache_dir)
    vocab = build_vocab(data.train, cfg.min_count, lexicon)
    train_rows = list(data.train)
    if cfg.nyt_labels:
        if tuple(data.labels) != DEFAULT_LABELS:
            raise ValueError("nyt_labels needs the labels negative/positive")
        if "nyt" in data.domains():
            raise ValueError("nyt_labels: the NYT snippets are already a domain of the data")
        extra, _ = load_auxiliary_labelled(cache_dir)
        train_rows += extra
        log.info("training rows: %d movie reviews + %d labelled NYT editorial snippets", len(data.train), len(extra))
    train_set = encode(train_rows, vocab, cfg.max_tokens)
    valid_set = encode(data.valid, vocab, cfg.max_tokens)
    model_cfg = SentimentConfig(
        vocab_size=len(vocab), num_classes=len(data.labels), **{"valence": cfg.lexicon, **cfg.model}
    )
    valence = valence_table(vocab, lexicon) if model_cfg.valence else None
    log.info("data %s | labels %s | vocab %d | model %s", data.sizes(), data.labels, len(vocab), model_cfg)

    lm_state: dict[str, Tensor] | None = None
    pretrain_record: dict[str, Any] = {"epochs": 0}
    if cfg.pretrain.epochs > 0:
        lm_state, pretrain_record = pretrained_lm(data, vocab, valid_set, model_cfg, cfg, cache_dir, lm_cache)

    members, histories, member_valid = [], [], []
    for k in range(cfg.ensemble):
        seed = cfg.seed + k
        set_seed(seed)
        model = BiLSTMClassifier(model_cfg)
        if valence is not None:
            model.get_buffer("valence").copy_(valence)
        if lm_state is not None:
            lm = BiLanguageModel(model_cfg, cfg.pretrain.cutoffs)
            lm.load_state_dict(lm_state)
            lm.transfer_to(model)
        state, history = train_classifier(model, train_set, valid_set, cfg, seed, pretrained=lm_state is not None)
        members.append(state)
        histories.append(history)
        member_valid.append(max(h[METRIC] for h in history))

    ensemble = build_ensemble(model_cfg, members)
    valid_probs = predict_probs(ensemble, valid_set.ids)
    metrics: dict[str, Any] = {
        "valid": classification_metrics(valid_set.labels, valid_probs.argmax(1), len(data.labels)),
        "valid_accuracy_per_member": member_valid,
    }
    minutes = (time.monotonic() - started) / 60
    log.info(
        "valid accuracy: members %s | ensemble %.4f | %.1f min",
        [round(a, 4) for a in member_valid],
        metrics["valid"]["accuracy"],
        minutes,
    )
    ckpt = Checkpoint(
        family=FAMILY,
        model_config=model_cfg.to_dict(),
        model_state=ensemble.state_dict(),
        train_config=asdict(cfg),
        epoch=max(len(h) for h in histories),
        best_metric=metrics["valid"]["accuracy"],
        metric=METRIC,
        history=histories,  # one list of epoch records per member
        extra={
            "members": len(members),
            "vocab": vocab.itos,
            "labels": data.labels,
            "pretrain": pretrain_record,
            "lexicon": {"source": lexicon_source, "words": len(lexicon)} if cfg.lexicon else None,
            "metrics": metrics,
            "data": {"source": data.source, "sha256": data.sha256, "split": data.split},
            "minutes": minutes,
            "parameters": sum(p.numel() for p in ensemble.parameters()),
        },
    )
    if checkpoint is not None:
        save_checkpoint(ckpt, checkpoint)
    return ckpt


def build_ensemble(model_cfg: SentimentConfig, members: Sequence[dict[str, Tensor]]) -> SentimentProbs:
    models = []
    for state in members:
        model = BiLSTMClassifier(model_cfg)
        model.load_state_dict(state)
        models.append(model)
    return SentimentProbs(models).eval()


def load_trained(path: Path) -> tuple[SentimentProbs, Vocab, Checkpoint]:
    """The trained ensemble (eval mode), its vocabulary and the whole checkpoint."""
    ckpt = load_checkpoint(path, FAMILY)
    members = ckpt.extra["members"]
    ensemble = build_model(ckpt, lambda cfg: SentimentProbs.untrained(cfg, members), SentimentConfig)
    return ensemble, Vocab(ckpt.extra["vocab"]), ckpt
