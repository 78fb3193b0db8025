"""The sentiment training recipe: fine-tuning and the optional language-model pre-training (model sizes are
`model.SentimentConfig`, whose defaults are the default model's)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class PretrainConfig:
    """Bidirectional LM pre-training of the embedding and LSTM on unlabelled text (epochs 0 = none).

    Off by default: 3 epochs (4.5 minutes, validation perplexity 378) gave no measurable gain (README, Sentiment).
    """

    epochs: int = 0
    batch_size: int = 64
    lr: float = 2e-3
    max_tokens: int = 60  # longer unlabelled sequences are cut into pieces of this size
    use_train_texts: bool = True  # the labelled train split's snippets, labels unused (never valid/test)
    use_nyt: bool = True
    use_books: bool = True
    cutoffs: tuple[int, ...] = (2000,)  # adaptive softmax: the 2000 most frequent words in the head
    max_minutes: float = 0.0


@dataclass
class TrainConfig:
    seed: int = 1234
    split_seed: int = 1234  # the data split (fixed, so experiments with other seeds see the same rows)
    min_count: int = 2
    # The VADER lexicon (same pinned archive): its one-token words join the vocabulary (after the train split's
    # words) and every token gets its valence as one more input channel (SentimentConfig.valence).
    lexicon: bool = True
    max_tokens: int = 128  # longer texts are truncated (the service does the same and says so)
    batch_size: int = 64
    # Batches of similar lengths (encoding.bucketed_batches): 2-3x fewer LSTM steps per epoch. The rows recorded
    # before issue 16 (movie snippets only) used plain shuffled batches.
    length_buckets: bool = True
    lr: float = 3e-3
    encoder_lr_scale: float = 0.5  # learning rate of the pre-trained embedding + LSTM relative to the head
    freeze_epochs: int = 1  # epochs with the pre-trained embedding + LSTM frozen (gradual unfreezing)
    weight_decay: float = 0.0
    clip: float = 1.0
    # 6 epochs of all four domains (291 batches each) hold as many updates as ~13 epochs of the movie snippets
    # alone; with patience 2 and 18 minutes per member the 3 members fit in about an hour on a busy 2-core machine.
    epochs: int = 6
    patience: int = 2  # stop after this many epochs without a new best validation accuracy
    label_smoothing: float = 0.1
    # Add the NYT editorial snippets, labelled by the sign of their rating, to the training rows (default data
    # only; vocabulary, validation and test stay movie reviews).
    nyt_labels: bool = False
    ensemble: int = 3  # classifiers fine-tuned with seeds seed, seed+1, ...; their probabilities are averaged
    max_minutes: float = 18.0  # per classifier (0 = no budget)
    max_batches: int = 0  # per epoch (0 = all); for tests
    model: dict[str, Any] = field(default_factory=dict)  # SentimentConfig overrides
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
