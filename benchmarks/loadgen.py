"""Closed-loop load generator: N concurrent clients, each sending its next request when the last one is answered,
until a window of wall time has passed. Requests in flight when the window closes are awaited and counted, and the
elapsed time runs until the last of them is answered: nothing is abandoned, so no leftover work on a server (a
serial one can hold a minute of it at 64 clients) steals CPU from the next measurement. Every client sends at least
one request, however slow the server."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    clients: int
    seconds: float
    requests: int
    tokens: int
    latencies: list[float]
    errors: int
    client_cpu: float = 0.0  # cores the load generator itself used

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) if self.latencies else float("nan")

    @property
    def p99(self) -> float:
        return self.percentile(0.99)


class Connection:
    """One keep-alive HTTP/1.1 connection speaking just enough of the protocol for JSON requests and replies.

    A load generator must cost far less than the server it measures, and the two share these 2 cores: httpx's
    AsyncClient spent about 10 ms of CPU per request at 64 concurrent connections (0.6 of a core at 60 requests/s),
    which starved the server it was measuring. Plain asyncio streams cost a few tens of microseconds."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        payload = json.dumps(body).encode()
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        headers = dict(line.lower().split(": ", 1) for line in head[1:] if line)
        if "content-length" not in headers:
            raise RuntimeError(f"{path}: reply without Content-Length: {head}")
        content = await self.reader.readexactly(int(headers["content-length"]))
        if headers.get("connection") == "close":
            await self.close()
        return status, content

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()
            self.reader = self.writer = None


async def _run(url: str, path: str, make_body: Callable[[int, int], dict[str, Any]], clients: int, seconds: float,
               count_tokens: Callable[[dict[str, Any]], int]) -> LoadResult:  # fmt: skip
    latencies: list[float] = []
    tokens = errors = 0
    target = urlsplit(url)
    assert target.hostname and target.port, url
    cpu0 = time.process_time()
    start = time.perf_counter()
    deadline = start + seconds

    async def client(cid: int) -> None:
        nonlocal tokens, errors
        connection = Connection(target.hostname, target.port)  # type: ignore[arg-type]
        n = 0
        try:
            while n == 0 or time.perf_counter() < deadline:
                t0 = time.perf_counter()
                status, content = await connection.post(path, make_body(cid, n))
                n += 1
                if status != 200:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - t0)
                tokens += count_tokens(json.loads(content))
        finally:
            await connection.close()

    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = time.perf_counter() - start
    return LoadResult(clients, elapsed, len(latencies), tokens, latencies, errors,
                      client_cpu=(time.process_time() - cpu0) / elapsed)  # fmt: skip


def run_load(url: str, path: str, make_body: Callable[[int, int], dict[str, Any]], clients: int, seconds: float,
             count_tokens: Callable[[dict[str, Any]], int] = lambda body: 0) -> LoadResult:  # fmt: skip
    return asyncio.run(_run(url, path, make_body, clients, seconds, count_tokens))
