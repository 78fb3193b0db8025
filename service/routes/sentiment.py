"""Sentiment classification of short texts with the BiLSTM classifier."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from ..dependencies import engine_for
from ..families.sentiment.engine import SentimentEngine
from ..schemas import ErrorResponse, ModelRef, StrictRequest
from ..tokenizer import tokenize

MAX_TEXTS = 256
MAX_TEXT_CHARS = 20_000


def _has_tokens(value: str) -> str:
    if not tokenize(value, add_eos=False):
        raise ValueError("must not be empty or whitespace only")
    return value


# Per-item constraints put the index in the error location: an empty third text is reported as `texts.2`.
SentimentText = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS), AfterValidator(_has_tokens)]


class SentimentRequest(StrictRequest):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"texts": ["A gorgeous, witty, seductive movie.", "Boilerplate clichés."]}]}
    )

    texts: list[SentimentText] = Field(
        min_length=1,
        max_length=MAX_TEXTS,
        description=f"1 to {MAX_TEXTS} texts, each non-empty and at most {MAX_TEXT_CHARS} characters",
        examples=[["A gorgeous, witty, seductive movie.", "The plot is nothing but boilerplate clichés."]],
    )


class SentimentResult(BaseModel):
    label: str = Field(description="the most probable label")
    probabilities: dict[str, float] = Field(description="probability of every label of the model")
    tokens: int = Field(description="tokens the model read (after truncation)")
    unknown_tokens: int = Field(description="of those, words outside the vocabulary (read as <unk>)")
    truncated: bool = Field(description="the text was longer than the model's maximum and was cut")


class SentimentResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "results": [
                        {
                            "label": "positive",
                            "probabilities": {"negative": 0.06, "positive": 0.94},
                            "tokens": 7,
                            "unknown_tokens": 0,
                            "truncated": False,
                        }
                    ],
                    "model": {"name": "sentiment-bilstm", "version": 1},
                }
            ]
        }
    )

    results: list[SentimentResult] = Field(description="one result per text, in request order")
    model: ModelRef


router = APIRouter(tags=["sentiment"], responses={422: {"model": ErrorResponse}, 503: {"model": ErrorResponse}})
SentimentDep = Annotated[SentimentEngine, Depends(engine_for("sentiment"))]


# A plain `def` route runs in the thread pool: inference never blocks the event loop.
@router.post("/sentiment", response_model=SentimentResponse)
def sentiment(body: SentimentRequest, engine: SentimentDep, request: Request) -> SentimentResponse:
    """Classify the sentiment of each text."""
    # Requests arriving together share their model calls (micro-batching); results come back in order.
    results = request.app.state.runtime.run_batched("sentiment", engine, list(body.texts))
    return SentimentResponse(
        results=[
            SentimentResult(
                label=r.label,
                probabilities=r.probabilities,
                tokens=r.tokens,
                unknown_tokens=r.unknown_tokens,
                truncated=r.truncated,
            )
            for r in results
        ],
        model=ModelRef(name=engine.model.manifest.name, version=engine.model.version),
    )
