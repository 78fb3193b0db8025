"""Generation sessions over HTTP (in-memory store) and the store rules themselves."""

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from service.sessions import (
    MemorySessionStore,
    SessionBusyError,
    SessionCapacityError,
    SessionNotFoundError,
    SessionRecord,
)
from tests.app_state import runtime_of

PROMPT = "the cat sat on the"


def new_session(client: TestClient, **body: Any) -> str:
    response = client.post("/sessions", json={"model": "wordlm", **body})
    assert response.status_code == 201, response.text
    return str(response.json()["session_id"])


def gen(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/generate", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_greedy_one_call_of_50_equals_five_calls_of_10(client: TestClient) -> None:
    whole = gen(client, prompt=PROMPT, max_new_tokens=50, temperature=0, ignore_eos=True)["text"]
    sid = new_session(client)
    parts = [gen(client, session_id=sid, prompt=PROMPT, max_new_tokens=10, temperature=0, ignore_eos=True)]
    parts += [gen(client, session_id=sid, max_new_tokens=10, temperature=0, ignore_eos=True) for _ in range(4)]
    assert "".join(p["text"] for p in parts) == whole
    assert all(p["session_id"] == sid and p["usage"]["completion_tokens"] == 10 for p in parts)
    assert parts[1]["usage"]["prompt_tokens"] == 0


def test_sampling_with_a_seed_repeats_the_same_sequence_of_calls(client: TestClient) -> None:
    def run() -> list[str]:
        sid = new_session(client, seed=1234)
        calls: list[dict[str, Any]] = [{"prompt": PROMPT}, {}, {"prompt": "and the dog"}, {"temperature": 0.7}]
        return [gen(client, session_id=sid, max_new_tokens=8, ignore_eos=True, **c)["text"] for c in calls]

    first = run()
    assert run() == first
    assert len(set(first)) > 1


def test_session_equals_stateless_generation_of_the_same_text(client: TestClient) -> None:
    """Feeding a prompt into a session mid-way is the same as one prompt holding all the text."""
    sid = new_session(client)
    first = gen(client, session_id=sid, prompt="the cat", max_new_tokens=3, temperature=0, ignore_eos=True)["text"]
    second = gen(client, session_id=sid, prompt="on the", max_new_tokens=5, temperature=0, ignore_eos=True)["text"]
    # Stateless equivalent: the first prompt, the 3 generated tokens, then the second prompt.
    whole = gen(client, prompt="the cat" + first + " on the", max_new_tokens=5, temperature=0, ignore_eos=True)
    assert second == whole["text"]


def test_session_info_and_delete(client: TestClient) -> None:
    sid = new_session(client)
    info = client.get(f"/sessions/{sid}").json()
    assert info["family"] == "wordlm" and info["model"]["version"] == 1
    assert info["idle_expires_at"] <= info["expires_at"]
    assert client.delete(f"/sessions/{sid}").status_code == 204
    missing = client.post("/generate", json={"session_id": sid, "prompt": "hi"})
    assert missing.status_code == 404 and missing.json()["message"] == f"session {sid} is unknown"
    assert client.delete(f"/sessions/{sid}").status_code == 404


def test_bad_session_requests(client: TestClient) -> None:
    assert client.post("/sessions", json={"model": "nope"}).status_code == 422
    assert client.post("/sessions", json={"model": "wordlm", "version": 99}).status_code == 422
    assert client.get("/sessions/not-a-valid-id!").status_code == 422
    sid = new_session(client)
    first = client.post("/generate", json={"session_id": sid})  # nothing to continue yet
    assert first.status_code == 422 and "prompt" in first.json()["message"]
    assert client.post("/generate", json={"max_new_tokens": 3}).status_code == 422


def test_expired_session_is_a_404_that_says_expired(models_dir: Path) -> None:
    settings = Settings(models_dir=models_dir, session_idle_ttl_s=0.3)
    with TestClient(create_app(settings)) as c:
        sid = new_session(c)
        gen(c, session_id=sid, prompt=PROMPT, max_new_tokens=2)
        time.sleep(0.5)
        response = c.post("/generate", json={"session_id": sid, "max_new_tokens": 2})
        assert response.status_code == 404
        assert response.json()["message"] == f"session {sid} has expired"


def test_capacity_cap_answers_503_with_retry_after(models_dir: Path) -> None:
    with TestClient(create_app(Settings(models_dir=models_dir, session_capacity=2))) as c:
        new_session(c)
        new_session(c)
        full = c.post("/sessions", json={"model": "wordlm"})
        assert full.status_code == 503
        assert int(full.headers["Retry-After"]) >= 1 and "full" in full.json()["message"]


def test_a_busy_session_answers_409_and_keeps_its_state(client: TestClient) -> None:
    sid = new_session(client)
    gen(client, session_id=sid, prompt=PROMPT, max_new_tokens=3, temperature=0)
    store = runtime_of(client).sessions
    before = store.get(sid)
    store.checkout(sid)  # another request holds the session
    try:
        busy = client.post("/generate", json={"session_id": sid, "max_new_tokens": 3})
        assert busy.status_code == 409 and "busy" in busy.json()["message"]
    finally:
        store.checkin(sid)
    after = store.get(sid)
    assert after.data == before.data
    assert all(np.array_equal(a, b) for a, b in zip(after.state, before.state, strict=True))  # type: ignore[arg-type]


def record(store: MemorySessionStore) -> SessionRecord:
    rec = store.new_record("wordlm", 1, {"x": 1})
    rec.state = (np.ones((2, 1, 3), np.float32), np.zeros((2, 1, 3), np.float32))
    return rec


def test_memory_store_lru_ttl_capacity_and_leases() -> None:
    store = MemorySessionStore(idle_ttl=0.2, max_lifetime=10, capacity=2)
    a, b = record(store), record(store)
    store.create(a)
    store.create(b)
    with pytest.raises(SessionCapacityError):
        store.create(record(store))
    with store.lease(a.id), pytest.raises(SessionBusyError):
        store.checkout(a.id)
    time.sleep(0.25)
    store.create(record(store))  # the expired ones made room
    with pytest.raises(SessionNotFoundError, match="has expired"):
        store.get(a.id)
    with pytest.raises(SessionNotFoundError, match="is unknown"):
        store.get("x" * 24)


def test_max_lifetime_ends_a_session_even_when_used() -> None:
    store = MemorySessionStore(idle_ttl=10, max_lifetime=0.2, capacity=5)
    rec = record(store)
    store.create(rec)
    store.save(rec)
    time.sleep(0.25)
    with pytest.raises(SessionNotFoundError, match="has expired"):
        store.get(rec.id)


def test_record_state_round_trips_as_float32_bytes() -> None:
    store = MemorySessionStore(idle_ttl=1, max_lifetime=1, capacity=1)
    rec = record(store)
    decoded = SessionRecord.decode(rec.meta_json(), rec.state_bytes())
    assert decoded.data == rec.data and len(rec.state_bytes()) == 2 * 6 * 4
    assert all(np.array_equal(x, y) for x, y in zip(decoded.state, rec.state, strict=True))  # type: ignore[arg-type]


def test_active_sessions_metric_counts_the_store(models_dir: Path) -> None:
    with TestClient(create_app(Settings(models_dir=models_dir, session_idle_ttl_s=0.3))) as c:
        new_session(c)
        new_session(c)
        assert "cellstate_active_sessions 2.0" in c.get("/metrics").text
        time.sleep(0.4)  # both expire: the gauge follows without any bookkeeping
        assert "cellstate_active_sessions 0.0" in c.get("/metrics").text
