"""BentoML serving the same ONNX files with its adaptive batching, in BentoML's usual two-service shape: `Front`
keeps the service's request and response JSON (POST /generate, POST /sentiment) and calls `Model`, whose batchable
methods BentoML's dispatcher fills (at most 64 per batch; it sizes its wait from the latencies it observes).
A generation batch is decoded together to the end (static: finished rows leave the step batch).

    bentoml serve benchmarks.peers.bentoml_service:Front --host 127.0.0.1 --port 8103   # from the repo root
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import bentoml

from benchmarks.peers.common import DEFAULT_NEW_TOKENS, Sentiment, WordLM

QUIET = {"access": {"enabled": False}}  # no access log (none of the systems compared writes one)


@bentoml.service(workers=1, logging=QUIET, traffic={"timeout": 600})
class Model:
    def __init__(self) -> None:
        self.wordlm = WordLM()
        self.sentiment = Sentiment()

    @bentoml.api(batchable=True, max_batch_size=64, max_latency_ms=600_000)
    def generate_batch(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.wordlm.generate(requests)

    @bentoml.api(batchable=True, max_batch_size=64, max_latency_ms=600_000)
    def classify_batch(self, texts: list[str]) -> list[dict[str, Any]]:
        return self.sentiment.classify(texts)


async def retried(call: Callable[[], Awaitable[Any]]) -> Any:
    """The `Model` worker's uvicorn drops keep-alive connections idle for 5 s while the caller's pool still holds them:
    the first request on such a connection fails at once ("Server disconnected"). Retry those, as a user would."""
    for attempt in range(3):
        try:
            return await call()
        except aiohttp.ClientConnectionError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@bentoml.service(workers=1, logging=QUIET, traffic={"timeout": 600})
class Front:
    model = bentoml.depends(Model)

    @bentoml.api
    async def generate(self, prompt: str, max_new_tokens: int = DEFAULT_NEW_TOKENS, temperature: float = 0.0,
                       ignore_eos: bool = False) -> dict[str, Any]:  # fmt: skip
        request = {"prompt": prompt, "max_new_tokens": max_new_tokens, "ignore_eos": ignore_eos}
        return (await retried(lambda: self.model.to_async.generate_batch([request])))[0]

    @bentoml.api
    async def sentiment(self, texts: list[str]) -> dict[str, Any]:
        return {"results": await retried(lambda: self.model.to_async.classify_batch(texts))}
