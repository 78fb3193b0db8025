"""The sentiment models: padding changes nothing, the pre-trained LM maps exactly onto the classifier, one pooling
list."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from tests.torch_threads import one_torch_thread
from training.sentiment.model import (
    POOLINGS,
    BiLanguageModel,
    BiLSTMClassifier,
    Pooling,
    SentimentConfig,
    reverse_padded,
)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def _random_batch(vocab: int, lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for i, n in enumerate(lengths):
        tokens[i, :n] = torch.randint(1, vocab, (n,), generator=gen)
    return tokens, torch.tensor(lengths)


@pytest.mark.parametrize("pooling", ["last", "max", "mean", "concat"])
def test_padding_changes_nothing(pooling: Pooling) -> None:
    torch.manual_seed(0)
    model = BiLSTMClassifier(SentimentConfig(vocab_size=40, num_classes=3, embedding=8, hidden=6, pooling=pooling))
    model.eval()
    tokens, lengths = _random_batch(40, [1, 9, 4, 1, 12, 2])
    with torch.no_grad():
        batched = model(tokens, lengths)
        for i, n in enumerate(lengths.tolist()):
            alone = model(tokens[i : i + 1, :n], lengths[i : i + 1])
            torch.testing.assert_close(alone[0], batched[i], atol=1e-6, rtol=0)
            # Extra padding columns change nothing either.
            wider = torch.cat([tokens[i : i + 1, :n], torch.zeros(1, 5, dtype=torch.long)], dim=1)
            torch.testing.assert_close(model(wider, lengths[i : i + 1])[0], batched[i], atol=1e-6, rtol=0)


def test_reverse_padded_keeps_padding_in_place() -> None:
    tokens = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0], [6, 0, 0, 0]])
    assert reverse_padded(tokens, torch.tensor([3, 2, 1])).tolist() == [[3, 2, 1, 0], [5, 4, 0, 0], [6, 0, 0, 0]]


def test_pretrained_lm_maps_exactly_onto_the_bidirectional_lstm() -> None:
    """After transfer, the classifier's top-layer outputs are [forward LM, backward LM] outputs."""
    torch.manual_seed(1)
    cfg = SentimentConfig(vocab_size=30, num_classes=2, embedding=8, hidden=5)
    lm = BiLanguageModel(cfg, cutoffs=(10,)).eval()
    classifier = BiLSTMClassifier(cfg).eval()
    lm.transfer_to(classifier)
    tokens, lengths = _random_batch(30, [6, 3, 1])
    pack = torch.nn.utils.rnn.pack_padded_sequence
    unpack = torch.nn.utils.rnn.pad_packed_sequence

    def run(lstm: torch.nn.LSTM, x: torch.Tensor) -> torch.Tensor:
        return unpack(lstm(pack(x, lengths, batch_first=True, enforce_sorted=False))[0], batch_first=True)[0]

    with torch.no_grad():
        both = run(classifier.lstm, classifier.embed(tokens))  # (B, T, 2H)
        forward = run(lm.forward_lstm, lm.embed(tokens))
        backward = run(lm.backward_lstm, lm.embed(reverse_padded(tokens, lengths)))
        # reverse_padded of a (B, T, H) tensor, one feature at a time, puts the backward outputs back in time order.
        backward = torch.stack([reverse_padded(backward[..., h], lengths) for h in range(backward.size(-1))], dim=-1)
    torch.testing.assert_close(both[..., :5], forward, atol=1e-6, rtol=0)
    torch.testing.assert_close(both[..., 5:], backward, atol=1e-6, rtol=0)


def test_one_pooling_list_and_unknown_poolings_are_refused() -> None:
    assert POOLINGS == ("last", "max", "mean", "concat")
    with pytest.raises(ValueError, match="pooling must be one of"):
        SentimentConfig(vocab_size=10, num_classes=2, pooling="sum")
    features = [SentimentConfig(vocab_size=10, num_classes=2, hidden=5, pooling=p).features for p in POOLINGS]
    assert features == [10, 10, 10, 30]
