"""The Redis session store against a real redis-server, and sessions shared by two real service processes."""

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.sessions import (
    RedisSessionStore,
    SessionBusyError,
    SessionCapacityError,
    SessionNotFoundError,
)
from tests.live_server import live_server
from tests.redis_server import redis_server

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


def test_redis_store_rules(redis_url: str) -> None:
    store = RedisSessionStore(redis_url, idle_ttl=0.5, max_lifetime=60, capacity=2, prefix=f"t{time.time_ns()}")
    a = store.new_record("wordlm", 1, {"pending_token": 7})
    a.state = (np.arange(6, dtype=np.float32).reshape(2, 1, 3), -np.ones((2, 1, 3), np.float32))
    store.create(a)
    store.create(store.new_record("wordlm", 1))
    with pytest.raises(SessionCapacityError):
        store.create(store.new_record("wordlm", 1))
    got = store.get(a.id)
    assert got.data == {"pending_token": 7} and got.model_version == 1
    assert all(np.array_equal(x, y) for x, y in zip(got.state, a.state, strict=True))  # type: ignore[arg-type]
    with store.lease(a.id), pytest.raises(SessionBusyError):
        store.checkout(a.id)
    time.sleep(0.7)  # the idle TTL is enforced by Redis itself
    with pytest.raises(SessionNotFoundError, match="has expired"):
        store.get(a.id)
    with pytest.raises(SessionNotFoundError, match="is unknown"):
        store.get("never-made-this-id-123")
    assert store.count() == 0
    store.create(store.new_record("wordlm", 1))  # room again
    store.close()


@pytest.mark.e2e  # three uvicorn processes sharing one redis-server
def test_a_session_continues_on_another_process_and_survives_a_restart(
    redis_url: str, models_dir: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "CELLSTATE_MODELS_DIR": str(models_dir), "CELLSTATE_SESSION_STORE": "redis",
           "CELLSTATE_REDIS_URL": redis_url, "CELLSTATE_INTRA_OP_THREADS": "1"}  # fmt: skip
    greedy = {"max_new_tokens": 8, "temperature": 0, "ignore_eos": True}

    def generate(url: str, **body: object) -> str:
        response = httpx.post(f"{url}/generate", json={**greedy, **body}, timeout=30)
        assert response.status_code == 200, response.text
        return str(response.json()["text"])

    with live_server(sys.executable, REPO, env, log_file=tmp_path / "b.log") as (b, _):
        with live_server(sys.executable, REPO, env, log_file=tmp_path / "a1.log") as (a, _):
            whole = generate(a, prompt="the cat sat", max_new_tokens=24)
            sid = httpx.post(f"{a}/sessions", json={"model": "wordlm"}).json()["session_id"]
            parts = [generate(a, session_id=sid, prompt="the cat sat")]
        parts.append(generate(b, session_id=sid))  # replica B continues; A is gone
        with live_server(sys.executable, REPO, env, log_file=tmp_path / "a2.log") as (a, _):
            parts.append(generate(a, session_id=sid))  # A restarted: the session is still there
            assert httpx.get(f"{a}/sessions/{sid}").status_code == 200
    assert "".join(parts) == whole
