"""Sentiment export: parity cases, the exported graph against PyTorch, nothing published when a check fails."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.fixtures_sentiment import TINY_MAX_TOKENS, tiny_checkpoint_path, tiny_sentiment_data
from tests.torch_threads import one_torch_thread
from training.kit.export import ParityError, check_parity, ort_session, round_weights_to_fp16
from training.sentiment import export
from training.sentiment.train import load_trained


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


def test_parity_cases_cover_length_one_and_the_maximum() -> None:
    cases = export.parity_cases(vocab_size=50, max_tokens=128)
    lengths = np.concatenate([c["lengths"] for c in cases])
    assert lengths.min() == 1 and lengths.max() == 128
    mixed = cases[2]
    assert {1, 128} <= set(mixed["lengths"].tolist()) and (mixed["tokens"][mixed["lengths"] == 1, 1:] == 0).all()


def test_exported_graph_matches_pytorch_on_padded_batches(sentiment_models_dir: Path) -> None:
    """The committed-style artifact: ONNX == packed PyTorch (<= 1e-5) incl. length 1 and max length, any batch."""
    model, vocab, ckpt = load_trained(tiny_checkpoint_path(sentiment_models_dir))
    round_weights_to_fp16(model)  # the file stores float16 weights (float32 compute)
    path = sentiment_models_dir / "sentiment" / "1" / "model.onnx"
    model.temperature = json.loads(path.with_name("manifest.json").read_text())["config"]["temperature"]  # folded in
    cases = export.parity_cases(len(vocab), TINY_MAX_TOKENS, seed=9)
    assert check_parity(model, path, cases, 1e-5) <= 1e-5
    assert export.check_padding_invariance(path, cases, 1e-6) <= 1e-6
    session = ort_session(path)
    tokens, lengths = _random_batch(len(vocab), [TINY_MAX_TOKENS, 1, 5])
    [probs] = session.run(None, {"tokens": tokens.numpy(), "lengths": lengths.numpy()})
    assert probs.shape == (3, 2) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    manifest = json.loads((sentiment_models_dir / "sentiment" / "1" / "manifest.json").read_text())
    assert manifest["tokenizer"]["eos"] == "none" and manifest["config"]["labels"] == ["negative", "positive"]
    assert manifest["config"]["weights"] == "float16 storage, float32 compute"
    assert manifest["data"]["splits"]["ids_sha256"]["test"] == ckpt.extra["data"]["split"]["ids_sha256"]["test"]


def test_failed_check_publishes_nothing(
    sentiment_models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = tiny_checkpoint_path(sentiment_models_dir)
    data = tiny_sentiment_data()
    assert data.sha256 == load_trained(checkpoint)[2].extra["data"]["sha256"]
    models = tmp_path / "models"
    monkeypatch.setattr(export, "INVARIANCE_ATOL", -1.0)  # any difference, even 0, fails the check
    with pytest.raises(ParityError, match="padding changes"):
        export.export(checkpoint, models, data, version=1, curve=False, baselines=False)
    assert not any((models / "sentiment").iterdir())
