"""Sentiment fine-tuning: learnability, and a checkpoint that rebuilds the ensemble it measured."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.tokenizer import PAD, UNK
from tests.fixtures_sentiment import TINY_MAX_TOKENS, synthetic_texts, tiny_checkpoint_path, tiny_sentiment_data
from tests.torch_threads import one_torch_thread
from training.data.sentiment import Example, make_data
from training.sentiment.config import PretrainConfig, TrainConfig
from training.sentiment.encoding import build_vocab, encode
from training.sentiment.evaluate import accuracy, predict_probs
from training.sentiment.model import BiLSTMClassifier, SentimentConfig
from training.sentiment.train import load_trained, train


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def test_tiny_model_learns_a_separable_set() -> None:
    """Learnability: a few seconds of training separates the synthetic set; the untrained model cannot."""
    labels = ["negative", "positive"]
    rows = synthetic_texts(320, seed=11)
    examples = [Example(str(i), t, labels.index(lab)) for i, (t, lab) in enumerate(rows)]
    data = make_data(examples, labels, "synthetic", seed=1)
    cfg = TrainConfig(
        seed=5,
        min_count=1,
        max_tokens=TINY_MAX_TOKENS,
        batch_size=16,
        lr=1e-2,
        epochs=4,
        patience=4,
        label_smoothing=0.0,
        ensemble=1,
        model={"embedding": 12, "hidden": 12, "dropout_embedding": 0.0, "dropout_input": 0.0},
        pretrain=PretrainConfig(epochs=0),
        lexicon=False,  # (the VADER lexicon would be fetched from its package archive)
    )
    vocab = build_vocab(data.train, 1)
    assert vocab.itos[:2] == [PAD, UNK]
    valid = encode(data.valid, vocab, TINY_MAX_TOKENS)
    untrained = BiLSTMClassifier(SentimentConfig(vocab_size=len(vocab), num_classes=2, embedding=12, hidden=12))
    assert accuracy(predict_probs(untrained, valid.ids), valid.labels) < 0.8
    ckpt = train(data, cfg, checkpoint=None)
    assert ckpt.extra["metrics"]["valid"]["accuracy"] >= 0.95
    assert ckpt.extra["vocab"] == vocab.itos


def test_checkpoint_rebuilds_the_ensemble_it_measured(sentiment_models_dir: Path) -> None:
    ensemble, vocab, ckpt = load_trained(tiny_checkpoint_path(sentiment_models_dir))
    assert len(ensemble.members) == ckpt.extra["members"] == 2 and not ensemble.training
    assert ckpt.model_config["embedding"] == 16 and len(ckpt.history) == 2
    valid = encode(tiny_sentiment_data().valid, vocab, TINY_MAX_TOKENS)
    valid_accuracy = accuracy(predict_probs(ensemble, valid.ids), valid.labels)
    assert valid_accuracy == ckpt.best_metric == ckpt.extra["metrics"]["valid"]["accuracy"]
