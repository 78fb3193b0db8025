"""A real uvicorn on a free loopback port, started the way `make run` starts it, called over HTTP."""

import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live_server import live_server

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {**os.environ, "CELLSTATE_MODELS_DIR": str(models_dir), "CELLSTATE_INTRA_OP_THREADS": "1"}
    log = tmp_path_factory.mktemp("server") / "server.log"
    with live_server(sys.executable, REPO, env, log_file=log) as (url, _):
        yield url


def test_generate_over_http(server: str) -> None:
    body = {"prompt": "the cat sat", "max_new_tokens": 5, "seed": 1, "ignore_eos": True}
    first = httpx.post(f"{server}/generate", json=body, timeout=10)
    assert first.status_code == 200
    data = first.json()
    assert data["finish_reason"] == "length" and data["usage"]["completion_tokens"] == 5
    assert httpx.post(f"{server}/generate", json=body, timeout=10).json()["text"] == data["text"]
    bad = httpx.post(f"{server}/generate", json={"prompt": ""}, timeout=10)
    assert bad.status_code == 422 and "prompt" in bad.json()["message"]


def test_sigterm_lets_in_flight_generations_finish(models_dir: Path, tmp_path: Path) -> None:
    """SIGTERM (what `docker stop` sends): streams already running complete with every token and their final
    event, then the process exits cleanly; it does not cut them off."""
    env = {**os.environ, "CELLSTATE_MODELS_DIR": str(models_dir), "CELLSTATE_GRACEFUL_SHUTDOWN_SECONDS": "20"}
    body = {"prompt": "the cat sat", "max_new_tokens": 1024, "ignore_eos": True, "seed": 3}
    streams = 4
    started = threading.Barrier(streams + 1, timeout=30)
    finals: list[dict[str, Any]] = []
    tokens_after_signal: list[int] = []
    signalled = threading.Event()

    def consume(url: str) -> None:
        waited, after, event = False, 0, ""
        with httpx.stream("POST", f"{url}/generate/stream", json=body, timeout=60) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                    if event == "token" and not waited:
                        waited = True
                        started.wait()  # every stream has its first token: now the server gets SIGTERM
                    elif event == "token" and signalled.is_set():
                        after += 1
                elif line.startswith("data: ") and event == "done":
                    finals.append(json.loads(line.removeprefix("data: ")))
        tokens_after_signal.append(after)

    with live_server(sys.executable, REPO, env, log_file=tmp_path / "server.log") as (url, proc):
        threads = [threading.Thread(target=consume, args=(url,)) for _ in range(streams)]
        for t in threads:
            t.start()
        started.wait()
        proc.send_signal(signal.SIGTERM)
        signalled.set()
        for t in threads:
            t.join(timeout=60)
        # uvicorn re-raises the signal it caught once shutdown is complete, so a clean stop reads as -SIGTERM
        # (exit status 143 in a container), the same as for any process that SIGTERM ends.
        assert proc.wait(timeout=30) == -signal.SIGTERM, (tmp_path / "server.log").read_text()[-2000:]
    log = (tmp_path / "server.log").read_text()
    assert "Application shutdown complete" in log and "Traceback" not in log
    assert len(finals) == streams
    assert all(f["finish_reason"] == "length" and f["usage"]["completion_tokens"] == 1024 for f in finals)
    assert sum(tokens_after_signal) > 0  # the streams were still running when the signal came
    with pytest.raises(httpx.TransportError):  # and the stopped server takes no new requests
        httpx.get(f"{url}/health", timeout=2)
