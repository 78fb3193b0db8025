"""Sentiment training side: data loading and splits, padding invariance, LM transfer, learnability, export checks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from service.tokenizer import PAD, UNK
from tests.fixtures_sentiment import TINY_MAX_TOKENS, synthetic_texts, tiny_checkpoint_path
from tests.torch_threads import one_torch_thread
from training import sentiment
from training.data.sentiment import (
    DataFormatError,
    Example,
    load_sentiment_data,
    make_data,
    polarity_examples,
    read_ground_truth,
    stratified_split,
)
from training.kit.export import ParityError, ort_session
from training.models import BiLanguageModel, BiLSTMClassifier, SentimentConfig, reverse_padded


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


# ---- data ------------------------------------------------------------------------------------------------------------
def test_ground_truth_rows_and_polarity(tmp_path: Path) -> None:
    path = tmp_path / "movieReviewSnippets_GroundTruth.txt"
    path.write_bytes(b"1\t2.5\tA fine film.\r\n2\t-1.25\tDull.\r\n3\t0.0\tMeh.\r\n4\t0.1\tOkay\tish\r\n")
    with pytest.raises(DataFormatError, match="line 4"):
        read_ground_truth(path)
    path.write_bytes(b"1\t2.5\tA fine film.\r\n2\t-1.25\tDull.\r\n3\t0.0\tMeh.\r\n")
    rows = read_ground_truth(path)
    assert rows == [("1", 2.5, "A fine film."), ("2", -1.25, "Dull."), ("3", 0.0, "Meh.")]
    assert polarity_examples(rows) == [Example("1", "A fine film.", 1), Example("2", "Dull.", 0)]  # zero dropped


def _user_rows(n: int = 60) -> list[tuple[str, str]]:
    labels = ["joy", "anger", "fear"]
    return [(f"text number {i} , {labels[i % 3]} here", labels[i % 3]) for i in range(n)]


def test_user_csv_and_jsonl_give_the_same_data(tmp_path: Path) -> None:
    rows = _user_rows()
    csv_path = tmp_path / "mine.csv"
    csv_path.write_text("Text,label,extra\n" + "".join(f'"{t}",{lab},x\n' for t, lab in rows), encoding="utf-8")
    jsonl_path = tmp_path / "mine.jsonl"
    jsonl_path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows), encoding="utf-8")
    from_csv = load_sentiment_data(csv_path, seed=3)
    from_jsonl = load_sentiment_data(jsonl_path, seed=3)
    assert from_csv.labels == from_jsonl.labels == ["anger", "fear", "joy"]  # any number of labels, sorted
    assert from_csv.sizes() == {"train": 48, "valid": 6, "test": 6}
    # Same texts and labels in both formats; ids are line numbers (CSV has a header line, so they differ).
    assert [(e.text, e.label) for e in from_csv.test] == [(e.text, e.label) for e in from_jsonl.test]
    for split in (from_csv.train, from_csv.valid, from_csv.test):  # stratified: every label in every split
        assert {e.label for e in split} == {0, 1, 2}
    assert from_csv.split["sizes"] == from_csv.sizes() and set(from_csv.split["ids_sha256"]) == {
        "train",
        "valid",
        "test",
    }


@pytest.mark.parametrize(
    ("name", "content", "error"),
    [
        ("a.csv", "words,label\nhi,1\n", "lacks column"),
        ("a.csv", "text,label\nhi,1\nho,1\n", "at least 2 distinct labels"),
        ("a.jsonl", '{"text": "hi", "label": "a"}\n{"text": "  ", "label": "b"}\n', "line 2: empty"),
        ("a.jsonl", '{"text": "hi", "label": "a"}\nnot json\n', "line 2: not JSON"),
        ("a.jsonl", '{"text": "hi", "label": true}\n', "label must be"),
        ("a.txt", "hi\n", ".csv or .jsonl"),
    ],
)
def test_user_file_errors_say_where(tmp_path: Path, name: str, content: str, error: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataFormatError, match=error):
        load_sentiment_data(path)


def test_split_is_seeded_stratified_and_disjoint() -> None:
    examples = [Example(str(i), f"t{i}", int(i % 4 == 0)) for i in range(1000)]
    a = stratified_split(examples, seed=1)
    b = stratified_split(examples, seed=1)
    c = stratified_split(examples, seed=2)
    assert a == b and a != c
    ids = [{e.id for e in part} for part in a]
    assert sum(map(len, ids)) == 1000 and not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert [len(p) for p in a] == [800, 100, 100]
    assert [sum(e.label for e in p) for p in a] == [200, 25, 25]  # label ratio kept in each split


# ---- model -----------------------------------------------------------------------------------------------------------
def _random_batch(vocab: int, lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for i, n in enumerate(lengths):
        tokens[i, :n] = torch.randint(1, vocab, (n,), generator=gen)
    return tokens, torch.tensor(lengths)


@pytest.mark.parametrize("pooling", ["last", "max", "mean", "concat"])
def test_padding_changes_nothing(pooling: str) -> None:
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
    before = sentiment.lm_perplexity(lm, corpus)
    history = sentiment.pretrain(
        lm, corpus, corpus[:10], sentiment.PretrainConfig(epochs=6, batch_size=8, lr=2e-2), max_batches=0
    )
    assert history[-1]["valid_perplexity"] < 2.0 < before


def test_tiny_model_learns_a_separable_set() -> None:
    """Learnability: a few seconds of training separates the synthetic set; the untrained model cannot."""
    labels = ["negative", "positive"]
    rows = synthetic_texts(320, seed=11)
    examples = [Example(str(i), t, labels.index(lab)) for i, (t, lab) in enumerate(rows)]
    data = make_data(examples, labels, "synthetic", seed=1)
    cfg = sentiment.TrainConfig(
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
        pretrain=sentiment.PretrainConfig(epochs=0),
    )
    vocab = sentiment.build_vocab(data.train, 1)
    assert vocab.itos[:2] == [PAD, UNK]
    valid = sentiment.encode(data.valid, vocab, TINY_MAX_TOKENS)
    untrained = BiLSTMClassifier(SentimentConfig(vocab_size=len(vocab), num_classes=2, embedding=12, hidden=12))
    assert sentiment.accuracy(sentiment.predict_probs(untrained, valid.ids), valid.labels) < 0.8
    ckpt = sentiment.train(data, cfg, checkpoint=None)
    assert ckpt["metrics"]["valid"]["accuracy"] >= 0.95
    assert ckpt["vocab"] == vocab.itos


# ---- export ----------------------------------------------------------------------------------------------------------
def test_parity_cases_cover_length_one_and_the_maximum() -> None:
    cases = sentiment.parity_cases(vocab_size=50, max_tokens=128)
    lengths = np.concatenate([c["lengths"] for c in cases])
    assert lengths.min() == 1 and lengths.max() == 128
    mixed = cases[2]
    assert {1, 128} <= set(mixed["lengths"].tolist()) and (mixed["tokens"][mixed["lengths"] == 1, 1:] == 0).all()


def test_exported_graph_matches_pytorch_on_padded_batches(sentiment_models_dir: Path) -> None:
    """The committed-style artifact: ONNX == packed PyTorch (<= 1e-5) incl. length 1 and max length, any batch."""
    model, vocab, ckpt = sentiment.load_checkpoint(tiny_checkpoint_path(sentiment_models_dir))
    sentiment.round_weights_to_fp16(model)  # the file stores float16 weights (float32 compute)
    path = sentiment_models_dir / "sentiment" / "1" / "model.onnx"
    cases = sentiment.parity_cases(len(vocab), TINY_MAX_TOKENS, seed=9)
    assert sentiment.check_parity(model, path, cases, 1e-5) <= 1e-5
    assert sentiment.check_padding_invariance(path, cases, 1e-6) <= 1e-6
    session = ort_session(path)
    tokens, lengths = _random_batch(len(vocab), [TINY_MAX_TOKENS, 1, 5])
    [probs] = session.run(None, {"tokens": tokens.numpy(), "lengths": lengths.numpy()})
    assert probs.shape == (3, 2) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    manifest = json.loads((sentiment_models_dir / "sentiment" / "1" / "manifest.json").read_text())
    assert manifest["tokenizer"]["eos"] == "none" and manifest["config"]["labels"] == ["negative", "positive"]
    assert manifest["config"]["weights"] == "float16 storage, float32 compute"
    assert manifest["data"]["splits"]["ids_sha256"]["test"] == ckpt["data"]["split"]["ids_sha256"]["test"]


def test_failed_check_publishes_nothing(
    sentiment_models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fixtures_sentiment import build_tiny_sentiment_model  # noqa: F401  (same data recipe)

    checkpoint = tiny_checkpoint_path(sentiment_models_dir)
    _, _, ckpt = sentiment.load_checkpoint(checkpoint)
    labels = ["negative", "positive"]
    rows = synthetic_texts(480, seed=7)
    examples = [Example(str(i), t, labels.index(lab)) for i, (t, lab) in enumerate(rows)]
    data = make_data(examples, labels, source="synthetic (tests/fixtures_sentiment.py)", seed=0)
    assert data.sha256 == ckpt["data"]["sha256"]
    models = tmp_path / "models"
    monkeypatch.setattr(sentiment, "INVARIANCE_ATOL", -1.0)  # any difference, even 0, fails the check
    with pytest.raises(ParityError, match="padding changes"):
        sentiment.export(checkpoint, models, data, version=1, curve=False, baselines=False)
    assert not any((models / "sentiment").iterdir())


def test_float16_storage_is_exact_for_rounded_weights(tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = sentiment.SentimentProbs(
        [BiLSTMClassifier(SentimentConfig(vocab_size=2000, num_classes=2, embedding=32, hidden=32))]
    ).eval()
    sentiment.round_weights_to_fp16(model)
    cases = sentiment.parity_cases(2000, 20)
    path = tmp_path / "m.onnx"
    example = tuple(torch.from_numpy(v) for v in cases[2].values())
    sentiment.export_onnx(
        model,
        example,
        path,
        ["tokens", "lengths"],
        ["probs"],
        {"tokens": {0: "batch", 1: "seq"}, "lengths": {0: "batch"}, "probs": {0: "batch"}},
    )
    before = [ort_session(path).run(None, c)[0] for c in cases]
    size = path.stat().st_size
    sentiment.store_weights_as_fp16(path)
    after = [ort_session(path).run(None, c)[0] for c in cases]
    assert path.stat().st_size < 0.6 * size
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
