"""POST /sentiment against a real onnxruntime session of a tiny exported BiLSTM ensemble, alone and micro-batched."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from service.families.sentiment.engine import SentimentEngine
from service.registry import load_model
from tests.fixtures_sentiment import NEGATIVE, POSITIVE, TINY_MAX_TOKENS

TEXTS = [
    "the movie was great and the cast was lovely",
    "a dull , boring film",
    "superb",
    "the plot was really awful .",
    "fun",
    "the ending was very tedious and the story was ugly and the cast was bad",
]
EXPECTED = ["positive", "negative", "positive", "negative", "positive", "negative"]


@pytest.fixture(scope="module")
def sentiment_client(sentiment_models_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(models_dir=sentiment_models_dir, intra_op_threads=1))) as c:
        yield c


@pytest.fixture(scope="module")
def engine(sentiment_models_dir: Path) -> SentimentEngine:
    return SentimentEngine(load_model(sentiment_models_dir / "sentiment" / "1", Settings(intra_op_threads=1)))


def classify(client: TestClient, texts: Any) -> dict[str, Any]:
    response = client.post("/sentiment", json={"texts": texts})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def error_of(client: TestClient, body: Any) -> str:
    response = client.post("/sentiment", json=body)
    assert response.status_code == 422, response.text
    payload = response.json()
    assert payload["error"] == "validation_error"
    message: str = payload["message"]
    return message


def test_results_in_input_order_with_probabilities(sentiment_client: TestClient) -> None:
    body = classify(sentiment_client, TEXTS)
    assert body["model"]["version"] == 1 and body["model"]["name"].startswith("sentiment-bilstm")
    assert [r["label"] for r in body["results"]] == EXPECTED
    for result in body["results"]:
        probs = result["probabilities"]
        assert set(probs) == {"negative", "positive"}
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert result["label"] == max(probs, key=probs.get)
        assert result["unknown_tokens"] == 0
    assert [r["tokens"] for r in body["results"]] == [9, 5, 1, 6, 1, TINY_MAX_TOKENS]
    assert [r["truncated"] for r in body["results"]] == [False] * 5 + [True]  # the last text has 15 tokens


def test_bucketing_and_batching_do_not_change_results(sentiment_client: TestClient, engine: SentimentEngine) -> None:
    # Lengths 1..12 land in different buckets; each text alone must give the same probabilities as in the batch.
    rng = np.random.default_rng(5)
    words = [*POSITIVE, *NEGATIVE, "the", "movie", "and", "was"]
    texts = [" ".join(rng.choice(words, size=int(n))) for n in rng.integers(1, TINY_MAX_TOKENS + 1, size=40)]
    plan = engine.bucket_plan([len(t.split()) for t in texts])
    assert len(plan) > 1 and sorted(np.concatenate(plan).tolist()) == list(range(len(texts)))
    together = classify(sentiment_client, texts)["results"]
    for text, result in zip(texts, together, strict=True):
        [alone] = classify(sentiment_client, [text])["results"]
        for label, p in alone["probabilities"].items():
            assert result["probabilities"][label] == pytest.approx(p, abs=1e-6)
    # Buckets of one width give the same numbers as the default plan (one call per bucket vs one call).
    single = SentimentEngine(engine.model, buckets=())
    assert len(single.bucket_plan([len(t.split()) for t in texts])) == 1
    a = np.array([list(r.probabilities.values()) for r in engine.classify(texts)])
    b = np.array([list(r.probabilities.values()) for r in single.classify(texts)])
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_long_text_is_truncated_and_says_so(sentiment_client: TestClient) -> None:
    long_text = " ".join(["great"] + ["movie"] * 40)
    [result] = classify(sentiment_client, [long_text])["results"]
    assert result["truncated"] is True and result["tokens"] == TINY_MAX_TOKENS
    [short] = classify(sentiment_client, ["great movie"])["results"]
    assert short["truncated"] is False and short["tokens"] == 2


def test_unknown_words_are_counted(sentiment_client: TestClient) -> None:
    [result] = classify(sentiment_client, ["great zorblax qwertyuiop"])["results"]
    assert result["tokens"] == 3 and result["unknown_tokens"] == 2


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"texts": ["good", "bad", ""]}, "texts.2"),
        ({"texts": ["good", "   \n\t "]}, "texts.1"),
        ({"texts": ["good", 3, "bad"]}, "texts.1"),
        ({"texts": ["good", None]}, "texts.1"),
        ({"texts": []}, "texts"),
        ({"texts": ["good"] * 257}, "texts"),
        ({"texts": "good"}, "texts"),
        ({}, "texts"),
        ({"texts": ["good"], "lang": "en"}, "lang"),
        ({"texts": ["x" * 20_001]}, "texts.0"),
    ],
)
def test_bad_requests_are_422_naming_the_field(sentiment_client: TestClient, body: Any, expected: str) -> None:
    message = error_of(sentiment_client, body)
    assert message.startswith(f"{expected}:"), message


def test_error_messages_state_the_rule(sentiment_client: TestClient) -> None:
    assert "empty or whitespace" in error_of(sentiment_client, {"texts": ["good", " "]})
    assert "256" in error_of(sentiment_client, {"texts": ["good"] * 257})
    assert "string" in error_of(sentiment_client, {"texts": [1]})


def test_labels_and_limits_come_from_the_manifest(sentiment_models_dir: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(sentiment_models_dir, models)
    manifest_path = models / "sentiment" / "1" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["config"]["labels"] = ["thumbs-down", "thumbs-up"]
    manifest["config"]["max_tokens"] = 3
    manifest_path.write_text(json.dumps(manifest))
    with TestClient(create_app(Settings(models_dir=models, intra_op_threads=1))) as c:
        [result] = classify(c, ["great fun , the movie was"])["results"]
    assert result["label"] == "thumbs-up" and set(result["probabilities"]) == {"thumbs-down", "thumbs-up"}
    assert result["tokens"] == 3 and result["truncated"] is True


def test_models_endpoint_lists_the_metrics(sentiment_client: TestClient) -> None:
    [model] = [m for m in sentiment_client.get("/models").json() if m["family"] == "sentiment"]
    assert {"test", "valid", "onnx_parity_max_abs_diff"} <= set(model["metrics"]["model"])
    assert {"tfidf_logreg", "vader"} <= set(model["metrics"]["baselines"])
    assert model["graphs"]["classify"]["inputs"][1] == {"name": "lengths", "dtype": "int64", "dims": ["batch"]}


def test_concurrent_sentiment_requests_are_micro_batched(sentiment_models_dir: Path) -> None:
    texts = [["good fun"], ["terrible and boring", "a fine film"], ["bad"], ["great great great", "awful"]]
    with TestClient(create_app(Settings(models_dir=sentiment_models_dir, batching=False))) as c:
        alone = [c.post("/sentiment", json={"texts": t}).json()["results"] for t in texts]
    settings = Settings(models_dir=sentiment_models_dir, microbatch_max_wait_ms=30)
    with TestClient(create_app(settings)) as c, ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda t: c.post("/sentiment", json={"texts": t}).json()["results"], texts * 2))
    for got, want in zip(together, alone * 2, strict=True):
        assert [r["label"] for r in got] == [r["label"] for r in want]
        for g, w in zip(got, want, strict=True):
            assert g["probabilities"] == pytest.approx(w["probabilities"], abs=1e-6)
