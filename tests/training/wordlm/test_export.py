"""Word LM export: the published version, its step contract, and nothing published when a check fails."""

import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from service.manifest import read_manifest, verify_files
from training.data.text import load_corpus
from training.kit.export import ParityError
from training.wordlm import export
from training.wordlm.config import TrainConfig
from training.wordlm.train import train


def test_exported_version_is_complete_and_verified(models_dir: Path) -> None:
    version_dir = models_dir / "wordlm" / "1"
    manifest = read_manifest(version_dir)
    assert verify_files(version_dir, manifest) == []
    assert set(manifest.files) == {"model.onnx", "model.int8.onnx", "vocab.json", "activations.onnx", "embeddings.npy"}
    step = manifest.graphs["step"]
    assert [t.name for t in step.inputs] == ["tokens", "h0", "c0"]
    assert [t.name for t in step.outputs] == ["logits", "hn", "cn"]
    assert step.inputs[0].dims == ["batch", "seq"]
    model, baseline = manifest.metrics["model"], manifest.metrics["baselines"]["kneser_ney_3gram"]
    assert model["onnx_parity_max_abs_diff"] <= 1e-4
    assert math.isfinite(model["test_perplexity"]) and math.isfinite(baseline["test_perplexity"])
    assert manifest.training["seed"] == 1111 and manifest.data.sha256
    assert manifest.tokenizer is not None and manifest.tokenizer.eos == "line"  # the fixture's corpus setting


def test_export_refuses_a_corpus_read_with_another_eos_mode(
    models_dir: Path, tiny_corpus: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="eos paragraph vs line"):
        export.export(models_dir.parent / "wordlm.pt", tmp_path, load_corpus(tiny_corpus), curve=False)


def test_an_ensemble_exports_as_one_step_model_with_stacked_state(tiny_corpus: Path, tmp_path: Path) -> None:
    corpus = load_corpus(tiny_corpus)
    cfg = TrainConfig(
        epochs=1, batch_size=4, bptt=8, min_count=1, max_batches=3, members=2, workers=1,
        model={"embedding": 8, "hidden": 8},
    )  # fmt: skip
    train(corpus, cfg, tmp_path / "e.pt")
    version_dir = export.export(tmp_path / "e.pt", tmp_path / "models", corpus, curve=False)
    manifest = read_manifest(version_dir)
    assert manifest.name == "wordlm-2x8-x2" and manifest.tokenizer.eos == "paragraph"
    assert (manifest.config["layers"], manifest.config["members"], manifest.config["member_layers"]) == (4, 2, 2)
    assert manifest.graphs["step"].inputs[1].dims == [4, "batch", 8]
    assert manifest.graphs["activations"].outputs[0].dims == [4, "batch", 8]
    assert len(manifest.metrics["model"]["members"]) == 2
    assert np.load(version_dir / "embeddings.npy").shape == (manifest.tokenizer.vocab_size, 16)
    session = ort.InferenceSession(str(version_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    zeros = np.zeros((4, 1, 8), dtype=np.float32)
    logits, h, _ = session.run(None, {"tokens": np.array([[1, 2, 3]]), "h0": zeros, "c0": zeros})
    np.testing.assert_allclose(np.exp(logits).sum(-1), 1.0, rtol=1e-5)  # log-probabilities of the mixture
    assert h.shape == (4, 1, 8)


def test_greedy_prefill_then_steps_equals_one_full_sequence_pass(models_dir: Path) -> None:
    version_dir = models_dir / "wordlm" / "1"
    session = ort.InferenceSession(str(version_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    manifest = read_manifest(version_dir)
    layers, hidden = manifest.config["layers"], manifest.config["hidden"]
    tokens = np.array([[5, 9, 2, 7, 3, 3, 11, 4]], dtype=np.int64)
    zeros = np.zeros((layers, 1, hidden), dtype=np.float32)
    full, _, _ = session.run(None, {"tokens": tokens, "h0": zeros, "c0": zeros})
    # prefill the first 3 tokens, then one token per call carrying (h, c)
    logits, h, c = session.run(None, {"tokens": tokens[:, :3], "h0": zeros, "c0": zeros})
    stepped = [logits[0, i] for i in range(3)]
    for t in range(3, tokens.shape[1]):
        logits, h, c = session.run(None, {"tokens": tokens[:, t : t + 1], "h0": h, "c0": c})
        stepped.append(logits[0, 0])
    np.testing.assert_allclose(np.stack(stepped), full[0], atol=1e-5)


def test_export_writes_nothing_when_parity_fails(
    models_dir: Path, tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "PARITY_ATOL", -1.0)  # no difference can pass
    out = tmp_path / "models"
    with pytest.raises(ParityError):
        export.export(models_dir.parent / "wordlm.pt", out, load_corpus(tiny_corpus, eos="line"), curve=False)
    assert list((out / "wordlm").iterdir()) == []
