"""The activations export, and the visualization CLI: embedding map, firing pictures, neuron search."""

from __future__ import annotations

import re
from pathlib import Path
from typing import cast

import numpy as np
import onnxruntime as ort
import pytest
import torch

from service.families.wordlm.inspect import ActivationWalker
from service.manifest import read_manifest, verify_files
from service.tokenizer import Vocab
from training import visualize
from training.activations import GRAPH_FILE, WordLMActivationStep, export_activations
from training.kit.export import ParityError
from training.wordlm.model import WordLM, WordLMConfig
from training.wordlm.train import load_trained

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_exported_version_has_the_activations_graph_and_embeddings(models_dir: Path) -> None:
    version_dir = models_dir / "wordlm" / "1"
    manifest = read_manifest(version_dir)
    assert verify_files(version_dir, manifest) == []
    assert {"activations.onnx", "embeddings.npy"} <= set(manifest.files)
    graph = manifest.graphs["activations"]
    assert [(t.name, t.dims) for t in graph.inputs] == [
        ("tokens", ["batch", 1]), ("h0", [2, "batch", 24]), ("c0", [2, "batch", 24])
    ]  # fmt: skip
    assert [(t.name, t.dims) for t in graph.outputs] == [
        ("hidden", [2, "batch", 24]), ("cell", [2, "batch", 24]), ("gates", [2, "batch", 4, 24])
    ]  # fmt: skip
    assert manifest.metrics["model"]["activations_parity_max_abs_diff"] <= 1e-5
    model, _, _ = load_trained(models_dir.parent / "wordlm.pt")
    embeddings = np.load(version_dir / manifest.config["embeddings_file"], allow_pickle=False)
    assert embeddings.dtype == np.float32
    np.testing.assert_array_equal(embeddings, model.embed.weight.detach().numpy())


def test_batched_walk_equals_walking_each_text_alone(models_dir: Path) -> None:
    """Dynamic batch: rows of a batch never mix."""
    model = visualize.load_model_dir(models_dir / "wordlm")
    ids = np.random.default_rng(0).integers(0, len(model.vocab), size=(3, 9))
    together = model.walker.walk(ids)
    for row in range(3):
        alone = model.walker.walk(ids[row : row + 1])
        np.testing.assert_allclose(alone.hidden[0], together.hidden[row], atol=1e-6)
        assert together.gates is not None and alone.gates is not None
        np.testing.assert_allclose(alone.gates[0], together.gates[row], atol=1e-6)


def test_a_graph_that_disagrees_with_the_model_writes_nothing(models_dir: Path, tmp_path: Path) -> None:
    model, _, _ = load_trained(models_dir.parent / "wordlm.pt")
    assert isinstance(model, WordLM)  # the tiny fixture trains one member
    wrong = WordLMActivationStep(model)
    with torch.no_grad():
        wrong.bias[1][3] += 1e-3  # one gate of one neuron of layer 1, slightly off
    with pytest.raises(ParityError, match="activations graph"):
        export_activations(model, tmp_path, step=wrong)
    assert list(tmp_path.iterdir()) == []


def test_auc_handles_ties_like_counting_pairs() -> None:
    rng = np.random.default_rng(1)
    values = rng.integers(0, 4, size=(60, 3)).astype(np.float64)  # many ties
    positive = rng.random(60) < 0.3
    got = visualize.auc_columns(values, positive)
    for j in range(3):
        on, off = values[positive, j], values[~positive, j]
        pairs = (on[:, None] > off[None, :]).sum() + 0.5 * (on[:, None] == off[None, :]).sum()
        assert got[j] == pytest.approx(pairs / (len(on) * len(off)))


# ---- a constructed model with a planted detector ---------------------------------------------------------------
TARGET = 7  # the token id the planted neurons detect
PLANTED = {(0, 3), (1, 5)}  # (layer, neuron): layer 0's detector feeds layer 1's


def _plant(lstm: torch.nn.LSTM, neuron: int, source: int, weight: float, hidden: int) -> None:
    """Make `neuron` of this layer fire (c ~ 1) only when input feature `source` is on, and forget at once.
    Gate rows of nn.LSTM: input [0, H), forget [H, 2H), candidate [2H, 3H), output [3H, 4H)."""
    i, f, g, o = (k * hidden + neuron for k in range(4))
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
        getattr(lstm, name)[[i, f, g, o]] = 0.0
    lstm.weight_ih_l0[i, source] = weight  # input gate opens on the feature...
    lstm.bias_ih_l0[i] = -4.0  # ...and stays nearly shut otherwise
    lstm.weight_ih_l0[g, source] = weight  # candidate ~ 1 on the feature, tanh(0) = 0 otherwise
    lstm.bias_ih_l0[f] = -10.0  # forget everything at each step: the neuron reports the current token only
    lstm.bias_ih_l0[o] = 10.0  # output gate open


def planted_model(vocab_size: int = 20, hidden: int = 8) -> WordLM:
    torch.manual_seed(0)
    model = WordLM(WordLMConfig(vocab_size=vocab_size, embedding=hidden, hidden=hidden, layers=2))
    model.eval()
    with torch.no_grad():
        model.embed.weight[:, 0] = 0.0
        model.embed.weight[TARGET, 0] = 3.0  # embedding feature 0 is on for the target token only
        _plant(cast(torch.nn.LSTM, model.lstms[0]), neuron=3, source=0, weight=4.0, hidden=hidden)
        _plant(
            cast(torch.nn.LSTM, model.lstms[1]), neuron=5, source=3, weight=10.0, hidden=hidden
        )  # reads layer 0's detector
    return model


def test_neuron_search_finds_the_planted_detector(tmp_path: Path) -> None:
    model = planted_model()
    export_activations(model, tmp_path)
    session = ort.InferenceSession(str(tmp_path / GRAPH_FILE), providers=["CPUExecutionProvider"])
    vocab = Vocab(["<unk>", "<eos>", *(f"w{i}" for i in range(2, 20))])
    inspectable = visualize.InspectableModel("planted", vocab, ActivationWalker(session, 2, 8), np.zeros((20, 8)))
    tokens = [vocab.itos[i] for i in np.random.default_rng(3).integers(2, 20, size=1600)]
    sample = visualize.walk_sample(inspectable, tokens, columns=8, warmup=5)
    ranked = visualize.search_neurons(sample, {TARGET}, top=6)
    found = [(s.layer, s.neuron) for s in ranked[:4]]
    assert set(found) == PLANTED and {s.state for s in ranked[:4]} == {"hidden", "cell"}, ranked
    assert all(s.selectivity > 0.999 for s in ranked[:4])
    only_top = visualize.search_neurons(sample, {TARGET}, top=1, layers=[1])
    assert (only_top[0].layer, only_top[0].neuron) == (1, 5)
    assert only_top[0].label("w7") == f"layer 1, {only_top[0].state} neuron 5: w7 detector"


# ---- the command line on the session's tiny model ----------------------------------------------------------------
def test_embedding_map_and_neuron_picture(models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model_dir = str(models_dir / "wordlm" / "1")
    visualize.main(["embeddings", "--model", model_dir, "--words", "20", "--out", str(tmp_path / "map.png")])
    text = "the cat sat on the mat.\nalice said, 'oh dear!'"
    neuron = ["--layer", "1", "--neuron", "3", "--text", text, "--out", str(tmp_path / "neuron.png")]
    visualize.main(["neuron", "--model", model_dir, *neuron])
    for name in ("map.png", "neuron.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG_SIGNATURE)
    assert "wrote" in capsys.readouterr().out


def test_search_command_ranks_and_draws(
    models_dir: Path, tiny_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "best.png"
    sample = ["--corpus", str(tiny_corpus), "--split", "train", "--max-tokens", "2000"]
    visualize.main(["search", "--model", str(models_dir / "wordlm"), "--class", "articles", *sample, "--top", "5",
                    "--out", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert re.search(r"a/the: \d+ occurrences of the a\n", printed)  # "an" is not in the tiny corpus
    rows = [line.split() for line in printed.splitlines() if line[:4].strip().isdigit()]
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4, 5]
    selectivities = [abs(float(r[4])) for r in rows]
    assert selectivities == sorted(selectivities, reverse=True)
    assert "best: layer" in printed and "a/the detector" in printed
    assert out.read_bytes().startswith(PNG_SIGNATURE)
