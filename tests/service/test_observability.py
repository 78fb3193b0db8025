"""Prometheus metrics, request ids in JSON logs and readable access logs."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.config import Settings
from service.observability import ACCESS_LOGGER, configure_logging


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], metric: str, **labels: str) -> float:
    return metrics.get((metric, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def captured_logs() -> Iterator[tuple[io.StringIO, logging.Handler]]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    handler = configure_logging(Settings(log_format="json"), stream=stream)
    yield stream, handler
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_requests_counted_by_route_template_and_status(client: TestClient) -> None:
    before = samples(client)
    assert client.post("/generate", json={"prompt": "the cat", "max_new_tokens": 3}).status_code == 200
    assert client.post("/generate", json={"prompt": "the cat", "max_new_tokens": 0}).status_code == 422
    assert client.get("/no/such/page").status_code == 404
    after = samples(client)
    total = "cellstate_http_requests_total"
    for status, n in (("200", 1), ("422", 1)):
        delta = value(after, total, method="POST", route="/generate", status=status) - value(
            before, total, method="POST", route="/generate", status=status
        )
        assert delta == n
    # Unknown paths share one label: a scanner cannot create unbounded series.
    assert value(after, total, method="GET", route="<unmatched>", status="404") >= 1
    assert not any("/no/such/page" in str(labels) for _, labels in after)
    latency = "cellstate_http_request_duration_seconds_count"
    assert (
        value(after, latency, method="POST", route="/generate")
        - value(before, latency, method="POST", route="/generate")
        == 2
    )


def test_tokens_generated_and_loaded_models(client: TestClient) -> None:
    before = value(samples(client), "cellstate_tokens_generated_total", family="wordlm")
    body = client.post("/generate", json={"prompt": "the cat", "max_new_tokens": 6, "ignore_eos": True}).json()
    after = samples(client)
    assert (
        value(after, "cellstate_tokens_generated_total", family="wordlm") - before
        == body["usage"]["completion_tokens"]
        == 6
    )
    model = body["model"]
    assert (
        value(
            after,
            "cellstate_model_loaded",
            family="wordlm",
            version=str(model["version"]),
            name=model["name"],
            precision=model["precision"],
        )
        == 1
    )
    assert value(after, "cellstate_model_failures") == 0


def test_batching_queue_and_session_metrics_are_exposed(client: TestClient) -> None:
    text = client.get("/metrics").text
    for name, kind in (
        ("cellstate_batch_size", "histogram"),
        ("cellstate_queue_depth", "gauge"),
        ("cellstate_active_sessions", "gauge"),
        ("cellstate_http_requests_in_progress", "gauge"),
    ):
        assert f"# TYPE {name} {kind}" in text


def test_batch_sizes_observed_when_generating(client: TestClient) -> None:
    def batch_count() -> float:
        return sum(v for (name, labels), v in samples(client).items() if name == "cellstate_batch_size_count")

    before = batch_count()
    assert (
        client.post("/generate", json={"prompt": "the dog", "max_new_tokens": 4, "ignore_eos": True}).status_code == 200
    )
    assert batch_count() > before


def test_request_id_is_echoed_and_generated(client: TestClient) -> None:
    given = client.get("/health", headers={"X-Request-ID": "trace-42"})
    assert given.headers["X-Request-ID"] == "trace-42"
    made = client.get("/health").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    error = client.post("/generate", json={"prompt": ""}, headers={"X-Request-ID": "trace-43"})
    assert error.status_code == 422 and error.json()["request_id"] == "trace-43"


def test_json_logs_carry_the_request_id(models_dir: Path, captured_logs: tuple[io.StringIO, logging.Handler]) -> None:
    stream, _ = captured_logs
    app = create_app(Settings(models_dir=models_dir, intra_op_threads=1, log_format="json"))

    @app.get("/_log_probe", include_in_schema=False)
    def probe() -> dict[str, bool]:  # a plain def route: runs in the thread pool, like inference
        logging.getLogger("service.probe").warning("inside the route")
        return {"ok": True}

    with TestClient(app) as c:
        assert c.get("/_log_probe", headers={"X-Request-ID": "rid-json-1"}).status_code == 200
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    inside = [r for r in records if r["message"] == "inside the route"]
    assert inside and inside[0]["request_id"] == "rid-json-1" and inside[0]["level"] == "warning"
    [access] = [r for r in records if r["logger"] == ACCESS_LOGGER and r["path"] == "/_log_probe"]
    assert access["request_id"] == "rid-json-1" and access["status"] == 200 and access["method"] == "GET"
    assert access["duration_ms"] >= 0 and access["route"] == "/_log_probe"
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)


def test_text_access_log_is_readable(client: TestClient) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    try:
        configure_logging(Settings(log_format="text"), stream=stream)
        client.get("/ready", headers={"X-Request-ID": "rid-text-1"})
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    [line] = [x for x in stream.getvalue().splitlines() if "rid-text-1" in x]
    assert re.search(r'INFO +cellstate\.access: testclient:\d+ "GET /ready" 200 [\d.]+ ms rid=rid-text-1$', line)


def test_access_log_can_be_turned_off(models_dir: Path, captured_logs: tuple[io.StringIO, logging.Handler]) -> None:
    stream, _ = captured_logs
    with TestClient(create_app(Settings(models_dir=models_dir, intra_op_threads=1, access_log=False))) as c:
        c.get("/health")
    assert ACCESS_LOGGER not in stream.getvalue()
