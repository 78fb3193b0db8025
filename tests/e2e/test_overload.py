"""A real uvicorn serving the committed models, pushed past capacity: probes keep answering, one-shot floods are
shed with 503 + Retry-After, and generation whose client has gone stops using the CPU."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.live_server import live_server

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e
# GET /health every 0.25 s until terminated; one latency (s) per line. A probe that fails prints 99.
PROBER = """
import sys, time, httpx
with httpx.Client(base_url=sys.argv[1], timeout=10) as http:
    while True:
        start = time.monotonic()
        try:
            ok = http.get("/health").status_code == 200
        except httpx.HTTPError:
            ok = False
        print(time.monotonic() - start if ok else 99.0, flush=True)
        time.sleep(0.25)
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_probes_answer_and_floods_are_shed_under_load(tmp_path: Path) -> None:
    env = {**os.environ, "CELLSTATE_MODELS_DIR": str(REPO / "models"), "CELLSTATE_MICROBATCH_MAX_QUEUE_ITEMS": "1024",
           "CELLSTATE_ACCESS_LOG": "false"}  # fmt: skip
    texts = [f"a thoroughly enjoyable film number {i}, though the ending drags" for i in range(256)]

    async def flood(url: str) -> tuple[list[int], set[str]]:
        statuses: list[int] = []
        retry_after: set[str] = set()
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:

            async def one() -> None:
                r = await http.post("/sentiment", json={"texts": texts})
                statuses.append(r.status_code)
                if r.status_code == 503:
                    retry_after.add(r.headers.get("Retry-After", ""))

            await asyncio.gather(*(one() for _ in range(150)))
        return statuses, retry_after

    with live_server(sys.executable, REPO, env, log_file=tmp_path / "server.log") as (url, _):
        # The prober is a process of its own, as an orchestrator's is: its latency is the server's, not this
        # process's (which encodes 150 bodies of 256 texts while the flood runs).
        prober = subprocess.Popen([sys.executable, "-c", PROBER, url], stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        statuses, retry_after = asyncio.run(flood(url))
        time.sleep(0.5)
        prober.terminate()
        probes = [float(line) for line in prober.communicate(timeout=15)[0].split()]
        assert set(statuses) <= {200, 503}, statuses
        assert statuses.count(503) > 0, "a flood far above the queue limit was not shed"
        assert statuses.count(200) > 0 and retry_after and "" not in retry_after
        assert len(probes) >= 4 and max(probes) < 2.0, f"probe latencies {probes}"  # a healthcheck allows 2 s
        # Once the flood is over the service answers normally again.
        assert httpx.post(f"{url}/sentiment", json={"texts": texts[:2]}, timeout=10).status_code == 200


def test_generation_stops_when_its_client_disconnects(tmp_path: Path) -> None:
    env = {**os.environ, "CELLSTATE_MODELS_DIR": str(REPO / "models"), "CELLSTATE_ACCESS_LOG": "false"}
    body = b'{"prompt": "the cat", "max_new_tokens": 1024, "ignore_eos": true}'
    with live_server(sys.executable, REPO, env, log_file=tmp_path / "server.log") as (url, proc):
        port = int(url.rsplit(":", 1)[1])
        sockets = []
        for _ in range(16):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
            sockets.append(s)
        time.sleep(0.5)  # decoding is under way
        busy_before = cpu_seconds(proc.pid)
        time.sleep(0.5)
        assert cpu_seconds(proc.pid) - busy_before > 0.2, "the generations did not start"
        for s in sockets:
            s.close()
        time.sleep(0.5)  # cancelled at the next step
        idle_from = cpu_seconds(proc.pid)
        time.sleep(1.0)
        assert cpu_seconds(proc.pid) - idle_from < 0.15, "generation kept running after its clients left"
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
