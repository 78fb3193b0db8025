"""API keys, admin keys, the request-size limit, CORS and the list-valued settings that configure them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings

KEY = "s3cret-key"
ADMIN_KEY = "adm1n-key"
GENERATE = {"prompt": "the cat sat", "max_new_tokens": 2}


@pytest.fixture(scope="module")
def secured(models_dir: Path) -> Iterator[TestClient]:
    settings = Settings(
        models_dir=models_dir,
        intra_op_threads=1,
        api_keys=f"{KEY}, another-key",  # as the environment gives it
        cors_origins="https://app.example",
        max_request_bytes=2_000,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def test_list_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELLSTATE_API_KEYS", '["a", "b"]')
    monkeypatch.setenv("CELLSTATE_CORS_ORIGINS", "https://a.example, https://b.example,")
    settings = Settings()
    assert [k.get_secret_value() for k in settings.api_keys] == ["a", "b"]
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert "a" not in repr(settings.api_keys)  # keys never show in logs or reprs
    monkeypatch.setenv("CELLSTATE_API_KEYS", "")
    assert Settings().api_keys == []


def test_no_key_configured_means_open(client: TestClient) -> None:
    assert client.post("/generate", json=GENERATE).status_code == 200


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ({}, "missing API key"),
        ({"Authorization": f"Basic {KEY}"}, "missing API key"),  # only the Bearer scheme carries a key
        ({"Authorization": "Bearer wrong"}, "invalid API key"),
        ({"X-API-Key": "wrong"}, "invalid API key"),
    ],
)
def test_protected_routes_need_a_valid_key(secured: TestClient, headers: dict[str, str], problem: str) -> None:
    response = secured.post("/generate", json=GENERATE, headers={**headers, "X-Request-ID": "rid-401"})
    assert response.status_code == 401
    body = response.json()
    assert body["error"] == "unauthorized" and body["request_id"] == "rid-401"
    assert body["message"].startswith(problem)
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.headers["X-Request-ID"] == "rid-401"
    assert secured.get("/models", headers=headers).status_code == 401


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {KEY}"}, {"X-API-Key": "another-key"}])
def test_either_header_with_any_key_is_accepted(secured: TestClient, headers: dict[str, str]) -> None:
    assert secured.post("/generate", json=GENERATE, headers=headers).status_code == 200
    assert secured.get("/models", headers=headers).status_code == 200


@pytest.mark.parametrize("path", ["/health", "/ready", "/metrics", "/docs", "/redoc", "/openapi.json"])
def test_probes_metrics_and_docs_stay_open(secured: TestClient, path: str) -> None:
    assert secured.get(path).status_code == 200


def test_unknown_paths_are_not_revealed_without_a_key(secured: TestClient) -> None:
    assert secured.get("/internal").status_code == 401


def test_body_limit(secured: TestClient) -> None:
    headers = {"X-API-Key": KEY}
    big = {"prompt": "word " * 1_000}
    response = secured.post("/generate", json=big, headers=headers)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large" and "2000 bytes" in response.json()["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit still holds for a streamed body
        yield b'{"prompt": "'
        for _ in range(300):
            yield b"word word "
        yield b'"}'

    streamed = secured.post("/generate", content=chunks(), headers={**headers, "Content-Type": "application/json"})
    assert streamed.status_code == 413

    def small() -> Iterator[bytes]:
        yield b'{"prompt": "the cat", '
        yield b'"max_new_tokens": 2}'

    ok = secured.post("/generate", content=small(), headers={**headers, "Content-Type": "application/json"})
    assert ok.status_code == 200, ok.text


def test_cors(secured: TestClient) -> None:
    preflight = secured.options(
        "/generate",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code == 200  # answered before the key check: browsers send no credentials here
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    simple = secured.post("/generate", json=GENERATE, headers={"Origin": "https://app.example", "X-API-Key": KEY})
    assert simple.headers["access-control-allow-origin"] == "https://app.example"
    assert "X-Request-ID" in simple.headers["access-control-expose-headers"]
    other = secured.post("/generate", json=GENERATE, headers={"Origin": "https://evil.example", "X-API-Key": KEY})
    assert "access-control-allow-origin" not in other.headers


def test_no_cors_headers_unless_configured(client: TestClient) -> None:
    response = client.get("/health", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in response.headers


# ---- admin routes (POST /admin/reload): their own keys, closed when none is set ----


@pytest.fixture(scope="module")
def admin(models_dir: Path) -> Iterator[TestClient]:
    """API keys and admin keys both configured."""
    settings = Settings(
        models_dir=models_dir,
        intra_op_threads=1,
        api_keys=KEY,  # as the environment gives it
        admin_keys=f"{ADMIN_KEY}, second-admin",
    )
    with TestClient(create_app(settings)) as client:
        yield client


def test_admin_keys_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELLSTATE_ADMIN_KEYS", "x, y")
    settings = Settings()
    assert [k.get_secret_value() for k in settings.admin_keys] == ["x", "y"]
    assert "x" not in repr(settings.admin_keys)
    monkeypatch.delenv("CELLSTATE_ADMIN_KEYS")
    assert Settings().admin_keys == []


@pytest.mark.parametrize("path", ["/admin/reload", "/admin/reload/", "/admin", "/admin/other"])
def test_admin_routes_are_closed_without_admin_keys(client: TestClient, path: str) -> None:
    """No keys at all (an open server): the admin routes still answer 403, naming the setting."""
    response = client.post(path, headers={"X-Admin-Key": "anything", "X-Request-ID": "rid-403"})
    assert response.status_code == 403
    body = response.json()
    assert body["error"] == "admin_disabled" and "CELLSTATE_ADMIN_KEYS" in body["message"]
    assert body["request_id"] == "rid-403"


def test_api_keys_do_not_open_admin_routes(secured: TestClient) -> None:
    """API keys set, admin keys not: a valid API key gets 403 (closed), in either header."""
    for headers in ({"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}"}):
        response = secured.post("/admin/reload", headers=headers)
        assert response.status_code == 403 and response.json()["error"] == "admin_disabled"


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ({}, "missing admin key"),
        ({"X-API-Key": KEY}, "missing admin key"),
        ({"X-Admin-Key": KEY}, "an API key does not open admin routes"),
        ({"Authorization": f"Bearer {KEY}"}, "an API key does not open admin routes"),
        ({"X-Admin-Key": "wrong"}, "invalid admin key"),
        ({"X-Admin-Key": ADMIN_KEY + "x"}, "invalid admin key"),
    ],
)
def test_admin_routes_need_an_admin_key(admin: TestClient, headers: dict[str, str], problem: str) -> None:
    response = admin.post("/admin/reload", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized" and response.json()["message"].startswith(problem)
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Admin-Key": ADMIN_KEY},
        {"X-Admin-Key": "second-admin", "X-API-Key": "wrong"},  # the admin key alone opens admin routes
        {"Authorization": f"Bearer {ADMIN_KEY}"},
    ],
)
def test_an_admin_key_opens_admin_routes(admin: TestClient, headers: dict[str, str]) -> None:
    response = admin.post("/admin/reload", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["serving"] == {"wordlm": 1}


def test_an_admin_key_is_not_an_api_key(admin: TestClient) -> None:
    assert admin.post("/generate", json=GENERATE, headers={"X-API-Key": ADMIN_KEY}).status_code == 401
    assert admin.post("/generate", json=GENERATE, headers={"X-API-Key": KEY}).status_code == 200


def test_admin_routes_are_documented_with_their_own_scheme(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/admin/reload"]["post"]
    assert operation["security"] == [{"AdminKeyHeader": []}]
    assert {"401", "403"} <= set(operation["responses"])
    assert spec["components"]["securitySchemes"]["AdminKeyHeader"]["name"] == "X-Admin-Key"
    assert all({"AdminKeyHeader": []} not in op.get("security", []) for path, ops in spec["paths"].items()
               if not path.startswith("/admin/") for op in ops.values())  # fmt: skip
