"""Language-model pre-training of the classifier's encoder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from tests.torch_threads import one_torch_thread
from training.sentiment.config import PretrainConfig
from training.sentiment.model import BiLanguageModel, SentimentConfig
from training.sentiment.pretrain import lm_perplexity, pretrain, sentence_pieces


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def test_language_model_pretraining_lowers_perplexity() -> None:
    torch.manual_seed(0)
    cfg = SentimentConfig(
        vocab_size=12,
        num_classes=2,
        embedding=12,
        hidden=16,
        dropout_embedding=0.0,
        dropout_input=0.0,
        dropout_hidden=0.0,
        dropout_output=0.0,
    )
    # A deterministic cycle 2 3 4 ... 11: both directions can learn to predict it exactly.
    corpus = [[2 + (s + i) % 10 for i in range(8)] for s in range(40)]
    lm = BiLanguageModel(cfg, cutoffs=())
    before = lm_perplexity(lm, corpus)
    history = pretrain(lm, corpus, corpus[:10], PretrainConfig(epochs=6, batch_size=8, lr=2e-2), max_batches=0)
    assert history[-1]["valid_perplexity"] < 2.0 < before


def test_books_are_cut_into_sentences_without_specials() -> None:
    tokens = ["a", "b", ".", "<eos>", "c", "d", "e", "f", "g", "!", "h"]
    assert sentence_pieces(tokens, max_tokens=3) == [["a", "b", "."], ["c", "d", "e"], ["f", "g", "!"], ["h"]]
