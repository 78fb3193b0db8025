"""Requests and responses of the sentiment family."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from ...schemas import HAS_TOKENS, MAX_PROMPT_CHARS, ModelRef, StrictRequest, require_tokens

MAX_TEXTS = 256
MAX_TEXT_CHARS = MAX_PROMPT_CHARS


# Per-item constraints put the index in the error location: an empty third text is reported as `texts.2`.
SentimentText = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS), AfterValidator(require_tokens),
                          Field(json_schema_extra=HAS_TOKENS)]  # fmt: skip


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
