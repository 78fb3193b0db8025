"""A tiny sentiment model trained in seconds on a synthetic, separable data set (for service and export tests)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from training.data.sentiment import SentimentData

POSITIVE = ("good", "great", "superb", "fun", "lovely", "charming")
NEGATIVE = ("bad", "awful", "dull", "boring", "ugly", "tedious")
FILLER = ("the", "movie", "plot", "was", "a", "and", "film", "story", "really", "very", "cast", "ending", ",", ".")
TINY_MAX_TOKENS = 12


def synthetic_texts(n: int, seed: int) -> list[tuple[str, str]]:
    """(text, label): 1-9 filler words with one or two words of the label's polarity at random places."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        words = list(rng.choice(FILLER, size=int(rng.integers(1, 10))))
        for _ in range(int(rng.integers(1, 3))):
            words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(POSITIVE if i % 2 == 0 else NEGATIVE)))
        rows.append((" ".join(words), label))
    return rows


def tiny_sentiment_data() -> SentimentData:
    """The synthetic data set the tiny model is trained on (480 rows, negative/positive, split with seed 0)."""
    from training.data.sentiment import DEFAULT_LABELS, Example, make_data

    labels = list(DEFAULT_LABELS)
    rows = synthetic_texts(480, seed=7)
    examples = [Example(id=str(i), text=t, label=labels.index(lab)) for i, (t, lab) in enumerate(rows)]
    return make_data(examples, labels, source="synthetic (tests/fixtures_sentiment.py)", seed=0)


def build_tiny_sentiment_model(models_root: Path, ensemble: int = 2) -> Path:
    """Train and export a tiny BiLSTM on synthetic data into `models_root/sentiment/1`; returns that directory."""
    from tests.torch_threads import one_torch_thread
    from training.sentiment.config import PretrainConfig, TrainConfig
    from training.sentiment.export import export
    from training.sentiment.train import train

    data = tiny_sentiment_data()
    cfg = TrainConfig(
        seed=3,
        min_count=1,
        max_tokens=TINY_MAX_TOKENS,
        batch_size=16,
        lr=1e-2,
        epochs=4,
        patience=2,
        label_smoothing=0.0,
        ensemble=ensemble,
        model={"embedding": 16, "hidden": 16, "dropout_embedding": 0.0, "dropout_input": 0.0},
        pretrain=PretrainConfig(epochs=0),
        lexicon=False,  # (the VADER lexicon would be fetched from its package archive)
    )
    checkpoint = tiny_checkpoint_path(models_root)
    with one_torch_thread():
        train(data, cfg, checkpoint)
        return export(checkpoint, models_root, data, version=1, curve=False)


def tiny_checkpoint_path(models_root: Path) -> Path:
    """Where `build_tiny_sentiment_model` leaves the PyTorch checkpoint it exported (beside models_root)."""
    return models_root.parent / f"{models_root.name}-sentiment.pt"
