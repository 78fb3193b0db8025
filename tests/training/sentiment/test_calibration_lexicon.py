"""The lexicon input channel and the folded temperature keep the export's contract: parity with PyTorch and a
text's probabilities the same alone as inside a padded batch; the temperature moves probabilities, never the label."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from service.tokenizer import PAD, UNK, Vocab
from tests.torch_threads import one_torch_thread
from training.data.sentiment import Example
from training.kit.export import check_parity, export_onnx
from training.sentiment import export
from training.sentiment.encoding import build_vocab, unk_rate, valence_table
from training.sentiment.evaluate import (
    expected_calibration_error,
    fit_temperature,
    predict_probs,
    temperature_scaled,
)
from training.sentiment.model import BiLSTMClassifier, SentimentConfig, SentimentProbs


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


LEXICON = {"good": 1.9, "bad": -2.5, "awful": -3.1, "great": 3.1}


def _ensemble(temperature: float = 1.0) -> tuple[SentimentProbs, Vocab]:
    train = [Example("1", "a good film", 1), Example("2", "a bad film", 0), Example("3", "a film", 1)]
    vocab = build_vocab(train, min_count=1, extra_words=LEXICON)
    cfg = SentimentConfig(vocab_size=len(vocab), num_classes=2, embedding=8, hidden=8, valence=True)
    members = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        member = BiLSTMClassifier(cfg)
        member.valence.copy_(valence_table(vocab, LEXICON))
        members.append(member)
    return SentimentProbs(members, temperature).eval(), vocab


def test_lexicon_words_join_the_vocabulary_and_carry_their_valence() -> None:
    _, vocab = _ensemble()
    assert vocab.itos[:2] == [PAD, UNK] and {"awful", "great"} <= set(vocab.itos)
    table = valence_table(vocab, LEXICON)
    assert table.shape == (len(vocab), 1) and table[vocab.stoi["awful"], 0] == pytest.approx(-3.1 / 4, abs=1e-3)
    assert table[vocab.stoi[PAD], 0] == 0 and table[vocab.stoi["film"], 0] == 0
    texts = [Example("x", "an awful film", 0)]
    assert unk_rate(texts, vocab, 10) == pytest.approx(1 / 3)  # "an" only
    assert unk_rate(texts, build_vocab([Example("1", "a film", 1)], 1), 10) == pytest.approx(2 / 3)


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_export_with_lexicon_and_temperature_is_padding_invariant(tmp_path: Path, temperature: float) -> None:
    model, vocab = _ensemble(temperature)
    path = tmp_path / "model.onnx"
    cases = export.parity_cases(len(vocab), max_tokens=24, seed=4)
    example = tuple(torch.from_numpy(v) for v in cases[2].values())
    export_onnx(model, example, path, export.INPUTS, export.OUTPUTS, export.DYNAMIC_AXES)
    assert check_parity(model, path, cases, 1e-5) <= 1e-5
    assert export.check_padding_invariance(path, cases, 1e-6) <= 1e-6


def test_temperature_changes_probabilities_but_not_the_label() -> None:
    plain, vocab = _ensemble(1.0)
    seqs = [vocab.encode(t.split()) for t in ("a good film", "awful", "a bad bad film", "great great film a")]
    p1 = predict_probs(plain, seqs)
    plain.temperature = 0.5
    p2 = predict_probs(plain, seqs)
    assert not np.allclose(p1, p2, atol=1e-4)
    assert (p1.argmax(1) == p2.argmax(1)).all()
    assert np.allclose(temperature_scaled(p1, 0.5), p2, atol=1e-5)  # the graph computes what the fit assumed
    assert np.allclose(temperature_scaled(p2, 2.0), p1, atol=1e-5)  # and it can be undone (ECE before scaling)


def test_fitted_temperature_lowers_ece_of_overconfident_probabilities() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=2000)
    right = rng.random(2000) < 0.75  # 75% accurate ...
    predicted = np.where(right, labels, 1 - labels)
    probs = np.full((2000, 2), 0.02)
    probs[np.arange(2000), predicted] = 0.98  # ... but 98% sure
    t = fit_temperature(probs, labels)
    assert t > 1.5
    assert expected_calibration_error(temperature_scaled(probs, t), labels) < 0.05
    assert expected_calibration_error(probs, labels) > 0.2
