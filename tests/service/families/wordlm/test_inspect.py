"""POST /inspect and GET /embeddings/neighbors on the tiny word LM of the session fixture (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from service.families.wordlm.engine import WordLMEngine
from service.manifest import read_manifest, write_manifest
from service.tokenizer import tokenize
from tests.app_state import runtime_of

TEXT = "the cat sat on the mat.\nalice said, 'oh dear!'"
HIDDEN = 24  # of the fixture model (2 layers)


def inspect(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/inspect", json={"text": TEXT, **body})
    assert response.status_code == 200, response.text
    return response.json()


def checkpoint(models_dir: Path) -> Any:
    from training.wordlm.train import load_trained

    model, vocab, _ = load_trained(models_dir.parent / "wordlm.pt")  # where the fixture trained it
    return model, vocab


def test_top_k_mode_shapes(client: TestClient) -> None:
    body = inspect(client, top_k_neurons=5)
    tokens = tokenize(TEXT)
    assert body["mode"] == "top_k" and body["unknown_tokens"] == 0
    assert [t["token"] for t in body["tokens"]] == tokens
    assert [layer["layer"] for layer in body["layers"]] == [0, 1]
    for summary in body["layers"]:
        means = [n["mean_abs_hidden"] for n in summary["neurons"]]
        assert len(means) == 5 and means == sorted(means, reverse=True)
    for position, token in enumerate(body["tokens"]):
        assert token["position"] == position and [layer["layer"] for layer in token["layers"]] == [0, 1]
        for layer, summary in zip(token["layers"], body["layers"], strict=True):
            reported = [str(n["neuron"]) for n in summary["neurons"]]
            assert list(layer["hidden"]) == reported and list(layer["cell"]) == reported
            assert layer["gates"] is None
            top = [abs(n["hidden"]) for n in layer["top"]]
            assert len(top) == 5 and top == sorted(top, reverse=True)
    # The overall summary agrees with the per-token values it summarises.
    first = body["layers"][1]["neurons"][0]
    values = [t["layers"][1]["hidden"][str(first["neuron"])] for t in body["tokens"]]
    assert first["mean_abs_hidden"] == pytest.approx(np.mean(np.abs(values)), abs=1e-5)
    assert first["peak_token"] == tokens[first["peak_position"]]
    assert first["peak_hidden"] == values[first["peak_position"]]


def test_chosen_neurons_of_one_layer_with_gates(client: TestClient) -> None:
    body = inspect(client, layer=1, neurons=[23, 0, 7], gates=True)
    assert body["mode"] == "neurons"
    assert [n["neuron"] for n in body["layers"][0]["neurons"]] == [23, 0, 7]
    for token in body["tokens"]:
        [layer] = token["layers"]
        assert layer["layer"] == 1 and layer["top"] is None
        assert list(layer["hidden"]) == ["23", "0", "7"]
        gates = layer["gates"]
        assert set(gates) == {"input", "forget", "candidate", "output"}
        for name in ("input", "forget", "output"):  # sigmoids
            assert all(0.0 <= v <= 1.0 for v in gates[name].values())
        assert all(-1.0 <= v <= 1.0 for v in gates["candidate"].values())


def test_last_token_state_equals_the_prefill_state_generation_starts_from(client: TestClient) -> None:
    """/inspect runs the activations graph; /generate prefills the step graph. After the last token of the same
    text both must hold the same (h, c), or generation would continue from a state /inspect never showed."""
    engine = runtime_of(client).current["wordlm"]
    assert isinstance(engine, WordLMEngine)
    _, (h, c) = engine.prefill(engine.encode(TEXT).ids)  # each (layers, 1, hidden)
    neurons = [0, 5, 11, HIDDEN - 1]
    body = inspect(client, neurons=neurons)
    last = body["tokens"][-1]["layers"]
    assert [layer["layer"] for layer in last] == list(range(engine.layers))
    for layer in last:
        np.testing.assert_allclose(list(layer["hidden"].values()), h[layer["layer"], 0, neurons], atol=2e-6)
        np.testing.assert_allclose(list(layer["cell"].values()), c[layer["layer"], 0, neurons], atol=2e-6)


def test_activations_match_a_pytorch_pass(client: TestClient, models_dir: Path) -> None:
    """h of every step from nn.LSTM's whole-sequence output, c from nn.LSTM stepped token by token, and the gate
    identities c_t = f c_{t-1} + i g, h_t = o tanh(c_t)."""
    body = inspect(client, neurons=list(range(HIDDEN)), gates=True)
    model, vocab = checkpoint(models_dir)
    ids = torch.tensor([vocab.encode(tokenize(TEXT))])
    with torch.no_grad():
        x = model.embed(ids)  # (1, T, E)
        for layer, lstm in enumerate(model.lstms):
            out, _ = lstm(x)  # (1, T, H) from the zero state
            state = None
            for t, token in enumerate(body["tokens"]):
                _, state = lstm(x[:, t : t + 1], state)
                got = token["layers"][layer]
                hidden = np.array(list(got["hidden"].values()))
                cell = np.array(list(got["cell"].values()))
                np.testing.assert_allclose(hidden, out[0, t].numpy(), atol=1e-5)
                np.testing.assert_allclose(cell, state[1][0, 0].numpy(), atol=1e-5)
                i, f, g, o = (
                    np.array(list(got["gates"][k].values())) for k in ("input", "forget", "candidate", "output")
                )
                previous = (
                    np.array(list(body["tokens"][t - 1]["layers"][layer]["cell"].values())) if t else np.zeros(HIDDEN)
                )
                np.testing.assert_allclose(f * previous + i * g, cell, atol=1e-5)
                np.testing.assert_allclose(o * np.tanh(cell), hidden, atol=1e-5)
            x = out


def test_unknown_tokens_are_flagged(client: TestClient) -> None:
    body = inspect(client, text="the zyzzyva sat")
    assert body["unknown_tokens"] == 1
    assert [t["unknown"] for t in body["tokens"]] == [False, True, False]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"layer": 2}, "layer", "0..1"),
        ({"layer": -1}, "layer", "greater than or equal to 0"),
        ({"neurons": [3, HIDDEN]}, "neurons.1", f"0..{HIDDEN - 1}"),
        ({"neurons": [-1]}, "neurons.0", "greater than or equal to 0"),
        ({"neurons": list(range(65))}, "neurons", "at most 64"),
        ({"neurons": []}, "neurons", "at least 1"),
        ({"neurons": [1, 1]}, "neurons", "must not repeat"),
        ({"top_k_neurons": 0}, "top_k_neurons", "greater than or equal to 1"),
        ({"top_k_neurons": 65}, "top_k_neurons", "less than or equal to 64"),
        ({"neurons": [1], "top_k_neurons": 3}, "top_k_neurons", "not both"),
        ({"text": "the " * 257}, "text", "limit is 256"),
        ({"text": "   "}, "text", "at least one word"),
        ({"layer": "1"}, "layer", "valid integer"),
        ({"neuron": [1]}, "neuron", "unknown field"),
    ],
)
def test_invalid_requests_are_422_naming_the_field(
    client: TestClient, body: dict[str, Any], field: str, words: str
) -> None:
    response = client.post("/inspect", json={"text": TEXT, **body})
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["error"] == "validation_error"
    assert field in [d["field"] for d in error["detail"]], error
    assert words in error["message"], error


def test_neighbors_are_nearest_by_cosine(client: TestClient, models_dir: Path) -> None:
    response = client.get("/embeddings/neighbors", params={"word": "Cat", "k": 4})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["word"] == "cat" and body["model"]["version"] == 1
    model, vocab = checkpoint(models_dir)
    weights = model.embed.weight.detach().numpy()
    unit = weights / np.linalg.norm(weights, axis=1, keepdims=True)
    similarity = unit @ unit[vocab.stoi["cat"]]
    expected = [i for i in np.argsort(-similarity) if vocab.itos[i] not in {"cat", "<eos>", "<unk>"}][:4]
    assert [n["word"] for n in body["neighbors"]] == [vocab.itos[i] for i in expected]
    np.testing.assert_allclose([n["similarity"] for n in body["neighbors"]], similarity[expected], atol=1e-5)


def test_neighbors_default_k_and_exclusions(client: TestClient) -> None:
    body = client.get("/embeddings/neighbors", params={"word": "the"}).json()
    words = [n["word"] for n in body["neighbors"]]
    assert len(words) == 10 and "the" not in words and not {"<eos>", "<unk>"} & set(words)
    similarities = [n["similarity"] for n in body["neighbors"]]
    assert similarities == sorted(similarities, reverse=True)


def test_unknown_word_is_404_naming_it(client: TestClient) -> None:
    response = client.get("/embeddings/neighbors", params={"word": "zyzzyva"})
    assert response.status_code == 404
    assert response.json()["error"] == "not_found" and "'zyzzyva'" in response.json()["message"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"word": "cat", "k": 0}, "query.k"),
        ({"word": "cat", "k": 101}, "query.k"),
        ({"word": "cat", "k": "many"}, "query.k"),
        ({"k": 3}, "query.word"),
        ({"word": ""}, "query.word"),
        ({"word": "x" * 65}, "query.word"),
        ({"word": "white rabbit"}, "word"),
    ],
)
def test_neighbors_validation_is_422(client: TestClient, params: dict[str, Any], field: str) -> None:
    response = client.get("/embeddings/neighbors", params=params)
    assert response.status_code == 422, response.text
    assert [d["field"] for d in response.json()["detail"]] == [field]


def test_a_version_without_the_activations_graph_is_served_but_not_inspected(copied_models_dir: Path) -> None:
    version_dir = copied_models_dir / "wordlm" / "1"
    manifest = read_manifest(version_dir)
    del manifest.graphs["activations"]
    del manifest.config["embeddings_file"]
    write_manifest(version_dir, manifest)
    with TestClient(create_app(Settings(models_dir=copied_models_dir, intra_op_threads=1))) as client:
        assert client.post("/next-word", json={"text": "the cat"}).status_code == 200
        response = client.post("/inspect", json={"text": TEXT})
        assert response.status_code == 503 and "no activations graph" in response.json()["message"]
        response = client.get("/embeddings/neighbors", params={"word": "cat"})
        assert response.status_code == 503 and "no embeddings" in response.json()["message"]


def test_no_word_model_is_503(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(models_dir=tmp_path, intra_op_threads=1))) as client:
        assert client.post("/inspect", json={"text": TEXT}).status_code == 503
        assert client.get("/embeddings/neighbors", params={"word": "cat"}).status_code == 503
