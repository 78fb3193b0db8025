"""Closed-loop load generator: N concurrent clients, each sending its next request when the last one is answered,
for a fixed window of wall time. Requests still in flight when the window closes are abandoned and not counted."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class LoadResult:
    clients: int
    seconds: float
    requests: int
    tokens: int
    latencies: list[float]
    errors: int

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


async def _run(url: str, path: str, make_body: Callable[[int, int], dict[str, Any]], clients: int, seconds: float,
               count_tokens: Callable[[dict[str, Any]], int]) -> LoadResult:  # fmt: skip
    latencies: list[float] = []
    tokens = errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=httpx.Timeout(600.0)) as http:
        start = time.perf_counter()
        deadline = start + seconds

        async def client(cid: int) -> None:
            nonlocal tokens, errors
            n = 0
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                response = await http.post(path, json=make_body(cid, n))
                t1 = time.perf_counter()
                n += 1
                if t1 > deadline:
                    return
                if response.status_code != 200:
                    errors += 1
                    continue
                latencies.append(t1 - t0)
                tokens += count_tokens(response.json())

        tasks = [asyncio.create_task(client(i)) for i in range(clients)]
        await asyncio.wait(tasks, timeout=seconds + 0.5)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return LoadResult(clients, seconds, len(latencies), tokens, latencies, errors)


def run_load(url: str, path: str, make_body: Callable[[int, int], dict[str, Any]], clients: int, seconds: float,
             count_tokens: Callable[[dict[str, Any]], int] = lambda body: 0) -> LoadResult:  # fmt: skip
    return asyncio.run(_run(url, path, make_body, clients, seconds, count_tokens))
