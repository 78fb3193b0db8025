"""Connection hygiene against a real uvicorn on a loopback port, over raw sockets (service/connections.py).

Idle and half-sent connections are closed on a deadline (408 with a JSON error when part of a request came), a
connection cap answers 503 at once, and running out of file descriptors neither floods the log nor stops the server.
Every wait here is bounded: the deadlines are set to 1 s and each socket read has its own timeout.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from tests.live_server import free_port

REPO = Path(__file__).resolve().parents[2]
DEADLINE_S = 1.0


@contextmanager
def server(models_dir: Path, log: Path, nofile: int | None = None, **settings: str) -> Iterator[tuple[str, int]]:
    """A real `python -m service` on a free port: yield (host, port); stopped by its PID afterwards."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("HOST", "PORT")}
    env.update({"CELLSTATE_HOST": "127.0.0.1", "CELLSTATE_PORT": str(port), "CELLSTATE_MODELS_DIR": str(models_dir)})
    env.update({f"CELLSTATE_{k.upper()}": v for k, v in settings.items()})

    def limit_files() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service"], cwd=REPO, env=env, stdout=out, stderr=out, preexec_fn=limit_files
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "server not up within 60 s"
                time.sleep(0.1)
            yield "127.0.0.1", port
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def read_until_closed(sock: socket.socket, limit: float = 5.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took (bounded by `limit`)."""
    start = time.monotonic()
    data = b""
    sock.settimeout(limit)
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"connection still open after {limit} s; got {data[:200]!r}") from None
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data, time.monotonic() - start


def parse(raw: bytes) -> tuple[int, dict[str, str], dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return status, headers, json.loads(body) if body else {}


@pytest.fixture(scope="module")
def deadlines(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    log = tmp_path_factory.mktemp("conn") / "server.log"
    with server(
        models_dir,
        log,
        header_timeout_s=str(DEADLINE_S),
        body_timeout_s=str(DEADLINE_S),
        keep_alive_timeout_s=str(DEADLINE_S),
    ) as (_, port):
        yield port, log


@pytest.mark.e2e
def test_a_connection_that_sends_nothing_is_closed_silently(deadlines: tuple[int, Path]) -> None:
    port, _ = deadlines
    with connect(port) as sock:
        data, took = read_until_closed(sock)
    assert data == b""
    assert DEADLINE_S * 0.8 <= took <= DEADLINE_S + 1.5


@pytest.mark.e2e
def test_unfinished_headers_get_408_on_the_deadline_even_when_dripped(deadlines: tuple[int, Path]) -> None:
    """Slow-loris: the header deadline is a total, not reset by each byte."""
    port, _ = deadlines
    with connect(port) as sock:
        start = time.monotonic()
        sock.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3):  # a header byte every 0.25 s: keeps an idle timer alive, not this deadline
            time.sleep(0.25)
            try:
                sock.sendall(b"X")
            except OSError:
                break
        data, _ = read_until_closed(sock)
        took = time.monotonic() - start
    status, headers, body = parse(data)
    assert status == 408 and headers["connection"] == "close"
    assert body["error"] == "request_timeout" and "CELLSTATE_HEADER_TIMEOUT_S" in str(body["message"])
    assert DEADLINE_S * 0.8 <= took <= DEADLINE_S + 1.5


@pytest.mark.e2e
def test_a_body_shorter_than_its_content_length_gets_408(deadlines: tuple[int, Path]) -> None:
    port, log = deadlines
    with connect(port) as sock:
        start = time.monotonic()
        sock.sendall(
            b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            b'{"prompt":'
        )
        data, _ = read_until_closed(sock)
        took = time.monotonic() - start
    status, headers, body = parse(data)
    assert status == 408 and headers["connection"] == "close"
    assert body["error"] == "request_timeout" and "CELLSTATE_BODY_TIMEOUT_S" in str(body["message"])
    assert DEADLINE_S * 0.8 <= took <= DEADLINE_S + 1.5
    # The app saw a disconnect, not an error: nothing was logged as a failure.
    time.sleep(0.2)
    assert "Traceback" not in log.read_text(errors="replace")
    assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200


@pytest.mark.e2e
@pytest.mark.parametrize(
    "head",
    [
        b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000,  # unfinished past 16 KiB
        b"GARBAGE\r\n\r\n",
    ],
    ids=["content-length-abc", "content-length-negative", "unfinished-headers-over-16k", "bad-request-line"],
)
def test_a_malformed_request_gets_a_json_400(deadlines: tuple[int, Path], head: bytes) -> None:
    port, _ = deadlines
    with connect(port) as sock:
        sock.sendall(head)
        data, took = read_until_closed(sock)
    status, headers, body = parse(data)
    assert status == 400 and headers["content-type"] == "application/json" and headers["connection"] == "close"
    assert body["error"] == "bad_request" and "invalid HTTP/1.1 request" in str(body["message"])
    assert took < 1.0


@pytest.mark.e2e
def test_the_head_limit_counts_the_head_only_and_pipelined_requests_are_each_answered(
    deadlines: tuple[int, Path],
) -> None:
    """A body larger than the 16 KiB head limit, sent in the same write as its headers, is the app's to judge; two
    requests written at once get two answers, in order."""
    port, _ = deadlines
    body = json.dumps({"prompt": "the cat sat on the mat. " * 1500, "max_new_tokens": 1}).encode()
    assert len(body) > 32 * 1024
    head = f"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    with connect(port) as sock:
        sock.sendall(head.encode() + b"\r\n\r\n" + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
    status = int(answer.split()[1])
    assert status in (200, 422), answer[:300]  # served, or the prompt refused by the app: not a 400 from the server
    with connect(port) as sock:
        first, last = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /ready HTTP/1.1\r\nHost: x\r\n"
        sock.sendall(first + last + b"Connection: close\r\n\r\n")
        data, _ = read_until_closed(sock)
    assert data.count(b"HTTP/1.1 200 ") == 2, data[:500]


@pytest.mark.e2e
def test_a_complete_request_is_served_and_the_idle_keep_alive_connection_then_closed(
    deadlines: tuple[int, Path],
) -> None:
    port, _ = deadlines
    with connect(port) as sock:
        body = b'{"prompt":"the cat","max_new_tokens":2,"seed":1}'
        head = f"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
        sock.sendall(head.encode() + b"\r\n\r\n" + body[:10])
        time.sleep(DEADLINE_S / 2)  # a slow body, but within its deadline
        sock.sendall(body[10:])
        data, took = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 200 ")
    assert took <= DEADLINE_S + 1.5  # then closed as idle (keep-alive), without a second response


@pytest.mark.e2e
def test_the_connection_cap_answers_503_but_serves_probes(models_dir: Path, tmp_path: Path) -> None:
    """Past the cap a request gets 503 + Retry-After as soon as its request line is in (a silent connection after
    1 s); the orchestrator's probes are still served, so a connection flood does not get the pod restarted."""
    log = tmp_path / "server.log"
    cap = 20
    with server(models_dir, log, max_connections=str(cap), header_timeout_s="30") as (_, port), ExitStack() as held:
        idle = [held.enter_context(connect(port)) for _ in range(cap)]
        time.sleep(0.3)
        refused = []
        for _ in range(30):
            with connect(port) as sock:
                start = time.monotonic()
                sock.sendall(b"GET /models HTTP/1.1\r\nHost: x\r\n\r\n")
                data, _ = read_until_closed(sock)
                refused.append((parse(data), time.monotonic() - start))
        assert {status for (status, _, _), _ in refused} == {503}
        (_, headers, body), _ = refused[0]
        assert headers["retry-after"] == "1" and body["error"] == "unavailable" and str(cap) in str(body["message"])
        assert max(took for _, took in refused) < 0.5
        for probe in (b"GET /health", b"GET /ready", b"GET /health?x=1"):
            with connect(port) as sock:
                sock.sendall(probe + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data, _ = read_until_closed(sock)
            assert data.startswith(b"HTTP/1.1 200 "), data[:200]
        with connect(port) as sock:  # over the cap and silent: 503 after about a second
            data, took = read_until_closed(sock)
        assert data.startswith(b"HTTP/1.1 503 ") and 0.8 <= took <= 2.5
        for sock in idle:
            sock.close()
        time.sleep(0.3)
        assert httpx.get(f"http://127.0.0.1:{port}/models", timeout=5).status_code == 200
    text = log.read_text(errors="replace")
    assert 1 <= text.count("over the connection cap") <= 2  # one line per 10 s, with the count


@pytest.mark.e2e
def test_running_out_of_file_descriptors_logs_a_line_not_a_flood(models_dir: Path, tmp_path: Path) -> None:
    """The audit's 20,000 idle sockets, scaled down: a 256-descriptor limit and 600 connections at once. The cap
    (lowered to fit the limit) refuses most; the rest hit EMFILE in accept(), which asyncio's loop logged with a
    traceback up to `backlog` times per loop tick. The server keeps answering once they are gone."""
    log = tmp_path / "server.log"
    with server(models_dir, log, nofile=256, header_timeout_s="5") as (_, port), ExitStack() as held:
        for _ in range(600):
            try:
                held.enter_context(connect(port, timeout=2))
            except OSError:
                break
        time.sleep(3)
        held.close()
        time.sleep(1.5)
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    text = log.read_text(errors="replace")
    assert "does not fit the open-file limit 256; using 64" in text
    assert text.count("out of system resource") == 0
    assert text.count("Traceback") == 0
    assert len(text.splitlines()) < 40, text[-3000:]
