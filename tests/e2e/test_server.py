"""A real uvicorn on a free loopback port, started the way `make run` starts it, called over HTTP."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(models_dir: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "CELLSTATE_MODELS_DIR": str(models_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "service"], cwd=REPO, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, "server exited during start-up"
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            pytest.fail("server not ready within 30 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.e2e
def test_generate_over_http(server: str) -> None:
    body = {"prompt": "the cat sat", "max_new_tokens": 5, "seed": 1, "ignore_eos": True}
    first = httpx.post(f"{server}/generate", json=body, timeout=10)
    assert first.status_code == 200
    data = first.json()
    assert data["finish_reason"] == "length" and data["usage"]["completion_tokens"] == 5
    assert httpx.post(f"{server}/generate", json=body, timeout=10).json()["text"] == data["text"]
    bad = httpx.post(f"{server}/generate", json={"prompt": ""}, timeout=10)
    assert bad.status_code == 422 and "prompt" in bad.json()["message"]
