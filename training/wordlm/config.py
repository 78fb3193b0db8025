"""The word LM's training recipe (the model's own sizes are `model.WordLMConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainConfig:
    seed: int = 1111
    min_count: int = 2
    batch_size: int = 20
    bptt: int = 35
    lr: float = 20.0
    lr_decay: float = 4.0  # lr /= lr_decay whenever validation perplexity stalls
    clip: float = 0.25
    weight_decay: float = 1.2e-6
    epochs: int = 60
    patience: int = 4  # stop after this many epochs without a new best validation perplexity
    # NT-ASGD (Merity et al., 2017): at the first stall, keep the learning rate and start averaging the weights
    # of every step from then on; the average is what is evaluated and kept. Later stalls divide the lr as usual.
    average: bool = True
    max_minutes: float = 0.0  # wall-clock budget (0 = none)
    max_batches: int = 0  # per epoch (0 = all); for tests
    eval_batch_size: int = 10
    kn_order: int = 5
    # Models trained with seeds seed, seed+1, ...; with more than one, their next-word distributions are averaged
    # (an ensemble: on validation 2 members beat 1 by the figures in the README's word-LM section).
    members: int = 2
    workers: int = 0  # processes training members side by side (0 = one per member, at most the cores)
    model: dict[str, Any] = field(default_factory=dict)  # WordLMConfig overrides
