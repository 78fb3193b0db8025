"""Dropout variants of the AWD-LSTM recipe, shared by the text models."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def locked_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Dropout with one mask per sequence, shared across time steps. x: (B, T, C)."""
    if not training or p == 0.0:
        return x
    mask = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1 - p) / (1 - p)
    return x * mask


def embedding_dropout(embed: nn.Embedding, tokens: Tensor, p: float, training: bool) -> Tensor:
    """Drop whole words: a dropped row of the embedding matrix is zero for every occurrence in the batch."""
    if not training or p == 0.0:
        return embed(tokens)
    mask = embed.weight.new_empty(embed.weight.size(0), 1).bernoulli_(1 - p) / (1 - p)
    return F.embedding(tokens, embed.weight * mask)
