"""Request and response bodies. Requests are strict (no type coercion) and forbid unknown fields, so a typo'd
parameter is a 422 instead of being silently ignored."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import JsonDict

if TYPE_CHECKING:
    from .registry import LoadedModel

MAX_PROMPT_CHARS = 20_000
MAX_SEED = 2**53 - 1  # the largest integer every JSON client (a JavaScript number) carries exactly


class StrictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# The tokenizer makes a token of every character that is not white space (service/tokenizer.py: a word, or one
# character of punctuation), so "has a token" is "has a non-space character": a C-speed check, run on the event loop
# for every text of every request.
_NON_SPACE = re.compile(r"\S")


# The spec's statement of `require_tokens` (JSON Schema patterns are unanchored: "holds a non-space character"), so
# that a generated client or a fuzzer knows a whitespace-only text is refused.
HAS_TOKENS: JsonDict = {"pattern": r"\S"}


def require_tokens(value: str) -> str:
    """A text must hold at least one token (a word or a punctuation mark)."""
    if _NON_SPACE.search(value) is None:
        raise ValueError("must contain at least one word or punctuation mark (not empty or whitespace only)")
    return value


class ModelRef(BaseModel):
    name: str
    version: int
    precision: str | None = Field(None, description="the precision that computed this answer: fp32 or int8")

    @classmethod
    def of(cls, model: LoadedModel) -> ModelRef:
        """The served model version that computes an answer, and in which precision."""
        return cls(name=model.manifest.name, version=model.version, precision=model.precision)


class ErrorResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": "unavailable",
                    "message": "no wordlm model is loaded (see GET /ready)",
                    "request_id": "5f0c8a4e2b7d4c1e9a3f6b2d8e1c7a90",
                }
            ]
        }
    )

    error: str
    message: str
    request_id: str | None = None


class FieldError(BaseModel):
    field: str = Field(description="dotted path of the offending field, e.g. `max_new_tokens` or `stop.0`")
    message: str
    type: str | None = Field(None, description="the rule broken, e.g. `less_than_equal`, `missing`, `limit`")


class ValidationErrorResponse(ErrorResponse):
    """The body of every 422: the envelope plus one entry per offending field (see service/errors.py)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": "validation_error",
                    "message": "max_new_tokens: Input should be less than or equal to 1024",
                    "request_id": "5f0c8a4e2b7d4c1e9a3f6b2d8e1c7a90",
                    "detail": [
                        {
                            "field": "max_new_tokens",
                            "message": "max_new_tokens: Input should be less than or equal to 1024",
                            "type": "less_than_equal",
                        }
                    ],
                }
            ]
        }
    )

    detail: list[FieldError]


class CreateSessionRequest(StrictRequest):
    model_config = ConfigDict(json_schema_extra={"examples": [{"model": "wordlm", "seed": 7}]})

    model: str = Field(
        min_length=1,
        max_length=64,
        description="a stateful model family (`stateful: true` in GET /models), e.g. `wordlm` or `forecast`",
    )
    version: int | None = Field(None, ge=1, description="model version (default: the one being served)")
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="seeds the session's sampler (generation)")


class SessionInfo(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "session_id": "s_3f9c2a7b1e5d4c8a9b0f6e2d1c7a5b3e",
                    "model": {"name": "wordlm-2x400", "version": 1},
                    "family": "wordlm",
                    "created_at": "2026-01-01T12:00:00+00:00",
                    "expires_at": "2026-01-02T12:00:00+00:00",
                    "idle_expires_at": "2026-01-01T12:15:00+00:00",
                }
            ]
        }
    )

    session_id: str
    model: ModelRef
    family: str
    created_at: str
    expires_at: str = Field(description="the session ends then at the latest (maximum lifetime)")
    idle_expires_at: str = Field(description="the session ends then unless it is used before")
