"""/generate and /next-word against a real onnxruntime session of a tiny exported model."""

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings

PROMPT = "the cat sat on the"


def generate(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/generate", json={"prompt": PROMPT, **body})
    assert response.status_code == 200, response.text
    return response.json()


def test_generate_reports_usage_and_model(client: TestClient) -> None:
    body = generate(client, max_new_tokens=7, seed=3, ignore_eos=True)
    assert body["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 7, "unknown_tokens": 0}
    assert body["model"] == {"name": "wordlm-2x24", "version": 1, "precision": "fp32"}
    assert body["text"].strip() and "<unk>" not in body["text"]


def test_same_seed_same_text_and_seeds_matter(client: TestClient) -> None:
    params = {"max_new_tokens": 30, "temperature": 1.5, "seed": 42, "ignore_eos": True}
    first = generate(client, **params)["text"]
    assert generate(client, **params)["text"] == first
    others = {generate(client, **{**params, "seed": s})["text"] for s in range(1, 6)}
    assert len(others | {first}) > 1


def test_greedy_is_deterministic_without_a_seed(client: TestClient) -> None:
    texts = {generate(client, temperature=0, max_new_tokens=12)["text"] for _ in range(3)}
    assert len(texts) == 1


def test_top_k_one_is_greedy(client: TestClient) -> None:
    greedy = generate(client, temperature=0, max_new_tokens=10, ignore_eos=True)["text"]
    assert generate(client, temperature=1.0, top_k=1, seed=9, max_new_tokens=10, ignore_eos=True)["text"] == greedy


def test_stop_string_ends_the_text_before_it(client: TestClient) -> None:
    full = generate(client, temperature=0, max_new_tokens=20, ignore_eos=True)["text"]
    word = full.split()[2]
    body = generate(client, temperature=0, max_new_tokens=20, ignore_eos=True, stop=[word])
    assert body["finish_reason"] == "stop"
    assert body["text"] == full[: full.index(word)]


def test_unknown_words_are_counted(client: TestClient) -> None:
    body = generate(client, prompt="the zyzzyva sat on the quokka", max_new_tokens=1)
    assert body["usage"]["unknown_tokens"] == 2


def test_next_word_gives_k_words_most_likely_first(client: TestClient) -> None:
    response = client.post("/next-word", json={"text": "the cat sat on the", "k": 4})
    assert response.status_code == 200
    words = response.json()["words"]
    assert len(words) == 4
    probabilities = [w["probability"] for w in words]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1
    assert not {"<eos>", "<unk>"} & {w["word"] for w in words}


GENERATE_RULES: list[tuple[dict[str, Any], str, str]] = [
    ({"prompt": ""}, "prompt", "at least 1 character"),
    ({"prompt": "   \n "}, "prompt", "at least one word"),
    ({"prompt": "x" * 20_001}, "prompt", "at most 20000 characters"),
    ({"prompt": "hi", "max_new_tokens": 0}, "max_new_tokens", "greater than or equal to 1"),
    ({"prompt": "hi", "max_new_tokens": 1025}, "max_new_tokens", "less than or equal to 1024"),
    ({"prompt": "hi", "max_new_tokens": "5"}, "max_new_tokens", "valid integer"),
    ({"prompt": "hi", "temperature": -0.1}, "temperature", "greater than or equal to 0"),
    ({"prompt": "hi", "top_p": 0}, "top_p", "greater than 0"),
    ({"prompt": "hi", "top_k": -1}, "top_k", "greater than or equal to 0"),
    ({"prompt": "hi", "seed": -1}, "seed", "greater than or equal to 0"),
    ({"prompt": "hi", "stop": ["a"] * 9}, "stop", "at most 8 items"),
    ({"prompt": "hi", "stop": [""]}, "stop.0", "at least 1 character"),
    ({"prompt": 5}, "prompt", "valid string"),
    ({"prompt": "hi", "temprature": 1}, "temprature", "unknown field"),
    ({}, "prompt", "field required"),
]
NEXT_WORD_RULES: list[tuple[dict[str, Any], str, str]] = [
    ({"text": ""}, "text", "at least 1 character"),
    ({"text": "  "}, "text", "at least one word"),
    ({"text": "the", "k": 0}, "k", "greater than or equal to 1"),
    ({"text": "the", "k": 51}, "k", "less than or equal to 50"),
    ({"text": "the", "k": "3"}, "k", "valid integer"),
    ({"text": "the", "top_k": 3}, "top_k", "unknown field"),
    ({}, "text", "field required"),
]


@pytest.mark.parametrize(
    ("path", "body", "field", "phrase"),
    [("/generate", *rule) for rule in GENERATE_RULES] + [("/next-word", *rule) for rule in NEXT_WORD_RULES],
)
def test_bad_requests_name_the_field_and_rule(
    client: TestClient, path: str, body: dict[str, Any], field: str, phrase: str
) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 422
    error = response.json()
    assert error["error"] == "validation_error"
    assert any(d["field"] == field for d in error["detail"]), error
    assert phrase in error["message"], error["message"]
    assert error["request_id"]


def test_malformed_json_is_a_422(client: TestClient) -> None:
    response = client.post("/generate", content=b'{"prompt": "hi",', headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "not valid JSON" in response.json()["message"]


def test_prompt_token_limit_is_a_422_naming_the_limit(models_dir: Path) -> None:
    with TestClient(create_app(Settings(models_dir=models_dir, max_prompt_tokens=4))) as c:
        response = c.post("/generate", json={"prompt": "the cat sat on the mat"})
    assert response.status_code == 422
    assert response.json()["message"] == "prompt is 6 tokens long; the limit is 4"


def test_request_id_is_echoed(client: TestClient) -> None:
    response = client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"


def test_tampered_model_file_is_refused(copied_models_dir: Path) -> None:
    onnx_path = copied_models_dir / "wordlm" / "1" / "model.onnx"
    data = bytearray(onnx_path.read_bytes())
    data[-10] ^= 0xFF
    onnx_path.write_bytes(bytes(data))
    with TestClient(create_app(Settings(models_dir=copied_models_dir))) as c:
        ready = c.get("/ready")
        assert ready.status_code == 503
        assert "model.onnx: sha256 mismatch" in ready.json()["failures"]["wordlm/1"]
        response = c.post("/generate", json={"prompt": "hello"})
        assert response.status_code == 503 and "no wordlm model is loaded" in response.json()["message"]


def test_service_never_imports_torch() -> None:
    code = "import sys, service.app, service.__main__; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
