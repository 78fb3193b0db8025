"""Sessions under faults: a real redis-server killed, stopped and restarted by PID under a real service, and a
session deleted while a request is using it (both stores)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from service.sessions import MemorySessionStore, RedisSessionStore, SessionNotFoundError, SessionStore
from tests.live_server import live_server
from tests.redis_server import RedisProcess, redis_process

REPO = Path(__file__).resolve().parents[2]
LONG = {"prompt": "the cat", "max_new_tokens": 1024, "ignore_eos": True}


@pytest.fixture
def redis() -> Iterator[RedisProcess]:
    with redis_process() as process:
        yield process


def parse_events(text: str) -> list[str]:
    return [line.removeprefix("event: ") for line in text.splitlines() if line.startswith("event: ")]


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_a_session_deleted_during_its_generation_stays_deleted(
    store: str, models_dir: Path, request: pytest.FixtureRequest
) -> None:
    settings = Settings(models_dir=models_dir, intra_op_threads=1, session_store=store)
    if store == "redis":
        settings.redis_url = request.getfixturevalue("redis").url
    with TestClient(create_app(settings)) as c:
        sid = c.post("/sessions", json={"model": "wordlm"}).json()["session_id"]
        with c.stream("POST", "/generate/stream", json={**LONG, "session_id": sid}) as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("event: token")
            assert c.delete(f"/sessions/{sid}").status_code == 204
            rest = "\n".join(lines)
        # The generation finished after the delete; its state was not saved, so the session did not come back.
        assert parse_events(rest)[-1] == "error" and "session_not_found" in rest
        assert c.get(f"/sessions/{sid}").status_code == 404
        assert c.post("/generate", json={"session_id": sid, "max_new_tokens": 2}).status_code == 404


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_a_lease_lapses_unless_renewed_and_a_save_never_resurrects(kind: str, request: pytest.FixtureRequest) -> None:
    store: SessionStore
    if kind == "redis":
        store = RedisSessionStore(request.getfixturevalue("redis").url, 60, 600, 10, lease_timeout=0.6)
    else:
        store = MemorySessionStore(60, 600, 10, lease_timeout=0.6)
    try:
        record = store.new_record("wordlm", 1)
        store.create(record)
        held = store.checkout(record.id)
        time.sleep(1.5)  # held by a live request: renewed every 0.2 s, so still busy
        assert not store._acquire(record.id, "someone-else")
        store._held.clear()  # the request's process died: nobody renews any more
        time.sleep(0.9)
        assert store._acquire(record.id, "next-request")  # lapsed within lease_timeout
        store.delete(record.id)
        with pytest.raises(SessionNotFoundError, match="was deleted"):
            store.save(held)
        with pytest.raises(SessionNotFoundError):
            store.get(record.id)
    finally:
        store.close()


@pytest.mark.e2e
def test_redis_outage_gives_503_naming_the_store_and_recovers_without_a_restart(
    redis: RedisProcess, models_dir: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "CELLSTATE_MODELS_DIR": str(models_dir), "CELLSTATE_SESSION_STORE": "redis",
           "CELLSTATE_REDIS_URL": redis.url, "CELLSTATE_INTRA_OP_THREADS": "1",
           "CELLSTATE_SESSION_STORE_TIMEOUT_S": "0.5", "CELLSTATE_SESSION_LEASE_S": "2"}  # fmt: skip
    short = {"max_new_tokens": 3, "temperature": 0}
    with (
        live_server(sys.executable, REPO, env, log_file=tmp_path / "server.log") as (url, _),
        httpx.Client(base_url=url, timeout=10) as http,
    ):
        sid = http.post("/sessions", json={"model": "wordlm"}).json()["session_id"]
        assert http.post("/generate", json={**short, "session_id": sid, "prompt": "the cat"}).status_code == 200

        redis.kill()
        for response in (http.post("/sessions", json={"model": "wordlm"}),
                         http.post("/generate", json={**short, "session_id": sid}),
                         http.get(f"/sessions/{sid}")):  # fmt: skip
            assert response.status_code == 503, response.text
            assert "session store" in response.json()["message"] and response.headers["Retry-After"]
        assert http.post("/generate", json={**short, "prompt": "the cat"}).status_code == 200  # stateless: fine
        metrics = http.get("/metrics")
        assert metrics.status_code == 200 and "cellstate_active_sessions NaN" in metrics.text
        ready = http.get("/ready")
        assert ready.status_code == 200 and ready.json()["session_store"]["ok"] is False

        redis.restart()  # an empty Redis on the same port: the service reconnects by itself
        sid = http.post("/sessions", json={"model": "wordlm"}).json()["session_id"]
        assert http.post("/generate", json={**short, "session_id": sid, "prompt": "the cat"}).status_code == 200
        assert http.get("/ready").json()["session_store"]["ok"] is True

        redis.stop()  # stalled, not dead: calls time out instead of failing at once
        start = time.monotonic()
        stalled = http.post("/generate", json={**short, "session_id": sid})
        assert stalled.status_code == 503 and time.monotonic() - start < 3.0, stalled.text
        redis.resume()
        # Whatever the stalled call left behind (a lease set when Redis woke up) lapses within the lease time.
        deadline = time.monotonic() + 5
        while (status := http.post("/generate", json={**short, "session_id": sid}).status_code) == 409:
            assert time.monotonic() < deadline, "the session stayed locked after Redis came back"
            time.sleep(0.2)
        assert status == 200
