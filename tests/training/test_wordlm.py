"""Word LM training and export, on the tiny model the session fixture trains (see tests/conftest.py)."""

import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from service.manifest import read_manifest, verify_files
from training import wordlm
from training.baselines import KneserNeyLM
from training.data.text import load_corpus
from training.export import ParityError


def test_batch_targets_are_inputs_shifted_by_one() -> None:
    data = wordlm.batchify(list(range(20)), batch_size=2)  # columns 0..9 and 10..19
    assert data.shape == (10, 2)
    inputs, targets = wordlm.get_batch(data, 0, bptt=4)
    assert inputs.tolist() == [[0, 1, 2, 3], [10, 11, 12, 13]]
    assert torch.equal(targets[:, :-1], inputs[:, 1:])
    assert targets[:, -1].tolist() == [4, 14]
    last_inputs, last_targets = wordlm.get_batch(data, 8, bptt=4)  # the final window is shorter
    assert last_inputs.tolist() == [[8], [18]] and last_targets.tolist() == [[9], [19]]


def test_exported_version_is_complete_and_verified(models_dir: Path) -> None:
    version_dir = models_dir / "wordlm" / "1"
    manifest = read_manifest(version_dir)
    assert verify_files(version_dir, manifest) == []
    assert set(manifest.files) == {"model.onnx", "vocab.json", "activations.onnx", "embeddings.npy"}
    step = manifest.graphs["step"]
    assert [t.name for t in step.inputs] == ["tokens", "h0", "c0"]
    assert [t.name for t in step.outputs] == ["logits", "hn", "cn"]
    assert step.inputs[0].dims == ["batch", "seq"]
    model, baseline = manifest.metrics["model"], manifest.metrics["baselines"]["kneser_ney_3gram"]
    assert model["onnx_parity_max_abs_diff"] <= 1e-4
    assert math.isfinite(model["test_perplexity"]) and math.isfinite(baseline["test_perplexity"])
    assert manifest.training["seed"] == 1111 and manifest.data.sha256


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
    monkeypatch.setattr(wordlm, "PARITY_ATOL", -1.0)  # no difference can pass
    out = tmp_path / "models"
    with pytest.raises(ParityError):
        wordlm.export(models_dir.parent / "wordlm.pt", out, load_corpus(tiny_corpus), curve=False)
    assert list((out / "wordlm").iterdir()) == []


def test_training_is_deterministic_with_a_seed(tiny_corpus: Path, tmp_path: Path) -> None:
    corpus = load_corpus(tiny_corpus)
    cfg = wordlm.TrainConfig(
        epochs=1, batch_size=4, bptt=8, min_count=1, max_batches=5, model={"embedding": 8, "hidden": 8}
    )
    runs = [wordlm.train(corpus, cfg, tmp_path / f"{i}.pt") for i in range(2)]
    assert runs[0] == runs[1]
    a, b = (torch.load(tmp_path / f"{i}.pt", weights_only=True)["state_dict"] for i in range(2))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_tiny_model_learns_the_tiny_corpus(models_dir: Path) -> None:
    """Three epochs on a repetitive corpus must do far better than a uniform guess over the vocabulary."""
    manifest = read_manifest(models_dir / "wordlm" / "1")
    assert manifest.metrics["model"]["valid_perplexity"] < manifest.tokenizer.vocab_size / 3  # type: ignore[union-attr]


def test_kneser_ney_is_a_distribution_and_beats_a_unigram_guess() -> None:
    stream = [1, 2, 3, 1, 2, 4, 1, 2, 3, 1, 2, 3] * 20
    lm = KneserNeyLM(order=3, vocab_size=6).fit(stream)
    for context in ([], [1], [1, 2], [5, 5]):
        assert sum(lm.prob(context, w) for w in range(6)) == pytest.approx(1.0)
    assert lm.prob([1, 2], 3) > lm.prob([1, 2], 4) > lm.prob([1, 2], 5) > 0
    assert lm.perplexity(stream[:24]) < 3.0


def test_weight_average_is_the_mean_of_the_steps_and_swaps_back() -> None:
    model = torch.nn.Linear(3, 2)
    seen = []
    average = wordlm.WeightAverage(model)
    seen.append(model.weight.detach().clone())
    for _ in range(4):
        with torch.no_grad():
            model.weight.add_(torch.randn_like(model.weight))
        average.update()
        seen.append(model.weight.detach().clone())
    own = model.weight.detach().clone()
    with average.swapped_in():
        torch.testing.assert_close(model.weight.detach(), torch.stack(seen).mean(0))
    assert torch.equal(model.weight.detach(), own)
