"""Sentiment classification of short texts with the BiLSTM classifier."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from ...batching import QueueFullError
from ...dependencies import RuntimeDep, engine_for
from ...errors import ModelUnavailable, documented
from ...schemas import ModelRef
from .engine import NAME, SentimentEngine
from .schemas import SentimentRequest, SentimentResponse, SentimentResult

router = APIRouter(tags=["sentiment"])
SentimentDep = Annotated[SentimentEngine, Depends(engine_for(NAME))]


# An async route: it waits for its micro-batch on the event loop, holding no worker thread while it waits.
@router.post("/sentiment", response_model=SentimentResponse, responses=documented(ModelUnavailable, QueueFullError))
async def sentiment(body: SentimentRequest, engine: SentimentDep, runtime: RuntimeDep) -> SentimentResponse:
    """Classify the sentiment of each text."""
    # Requests arriving together share their model calls (micro-batching); results come back in order.
    results = await runtime.run_batched(NAME, engine, list(body.texts))
    return SentimentResponse(
        results=[SentimentResult(label=r.label, probabilities=r.probabilities, tokens=r.tokens,
                                 unknown_tokens=r.unknown_tokens, truncated=r.truncated) for r in results],
        model=ModelRef.of(engine.model),
    )  # fmt: skip
