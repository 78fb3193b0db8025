"""Every error is the JSON envelope naming its cause, with a status the spec documents (service/errors.py)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from tests.test_openapi import REPO

JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("body", "headers", "says"),
    [
        (b'{"prompt": "\xff\xfe"}', JSON, "not valid UTF-8"),
        (b"[" * 1000 + b"]" * 1000, JSON, "nested too deeply"),
        (b'{"prompt": "a", "seed": ' + b"9" * 5000 + b"}", JSON, "too many digits"),
        (b'{"prompt": "a"}', {"content-type": "application/x-www-form-urlencoded"}, "Content-Type: application/json"),
        (b'{"prompt": "a"}', {"content-type": "text/plain"}, "got `text/plain`"),
        (b'{"prompt": "a", "temperature": NaN}', JSON, "temperature: Input should be a finite number"),
        (b'{"prompt": "a", "stream": true}', JSON, "stream with POST /generate/stream"),
        (b'{"prompt": "a", "seed": 9007199254740992}', JSON, "seed: Input should be less than or equal to"),
    ],
)
def test_unreadable_or_invalid_bodies_are_422_naming_the_cause(
    client: TestClient, body: bytes, headers: dict[str, str], says: str
) -> None:
    response = client.post("/generate", content=body, headers=headers)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["error"] == "validation_error" and says in error["message"], error["message"]
    assert error["detail"][0]["field"] and error["request_id"]


def test_tiny_temperatures_are_greedy(client: TestClient) -> None:
    """1e-38 once overflowed float32 and sampled noise; below 1e-3 a temperature decodes greedily."""
    body = {"prompt": "the cat", "max_new_tokens": 12, "ignore_eos": True}
    greedy = client.post("/generate", json={**body, "temperature": 0}).json()["text"]
    for temperature in (1e-38, 1e-30, 1e-4):
        for seed in (1, 2):
            got = client.post("/generate", json={**body, "temperature": temperature, "seed": seed}).json()["text"]
            assert got == greedy, temperature


def test_every_status_an_operation_answers_is_documented() -> None:
    """The domain errors a route raises are mapped once and listed in its responses (no undocumented 410/503)."""
    spec = json.loads((REPO / "openapi.json").read_text())
    generate = spec["paths"]["/generate"]["post"]["responses"]
    assert {"404", "409", "413", "422", "503"} <= generate.keys()
    forecast = spec["paths"]["/forecast"]["post"]["responses"]
    assert {"404", "409", "410", "503"} <= forecast.keys()
    assert "session store" in generate["503"]["description"] and "waiting" in generate["503"]["description"]
