"""Request and response bodies. Requests are strict (no type coercion) and forbid unknown fields, so a typo'd
parameter is a 422 instead of being silently ignored."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .sessions import ID_PATTERN as SESSION_ID_PATTERN
from .tokenizer import tokenize_line

MAX_PROMPT_CHARS = 20_000
MAX_STOP_STRINGS = 8


class StrictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _require_tokens(value: str) -> str:
    if not any(tokenize_line(line) for line in value.splitlines()):
        raise ValueError("must contain at least one word or punctuation mark")
    return value


class ModelRef(BaseModel):
    name: str
    version: int


class GenerateRequest(StrictRequest):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"prompt": "Alice was beginning to get very tired of", "max_new_tokens": 20, "temperature": 0.8},
                {"prompt": "The white rabbit", "max_new_tokens": 30, "top_k": 40, "seed": 7, "stop": ["."]},
            ]
        },
    )

    prompt: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        description="text to continue; with a session_id, optional text to read first",
        examples=["Alice was beginning to get very tired of"],
    )
    session_id: str | None = Field(
        None, pattern=SESSION_ID_PATTERN, description="continue this session (from POST /sessions)"
    )
    stream: bool = Field(False, description="answer Server-Sent Events: one `token` event per piece, then `done`")
    max_new_tokens: int = Field(50, ge=1, le=1024, description="tokens to generate at most")
    temperature: float = Field(1.0, ge=0.0, le=5.0, description="0 = greedy")
    top_k: int = Field(0, ge=0, le=100_000, description="sample from the k most likely tokens (0 = all)")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling mass (1 = all)")
    seed: int | None = Field(None, ge=0, le=2**63 - 1, description="same seed and parameters -> same text")
    stop: list[str] = Field(
        default_factory=list,
        max_length=MAX_STOP_STRINGS,
        description="end the text before the first occurrence of any of these",
    )
    ignore_eos: bool = Field(False, description="keep generating past the end-of-line token")

    @field_validator("prompt")
    @classmethod
    def _prompt_has_tokens(cls, value: str | None) -> str | None:
        return None if value is None else _require_tokens(value)

    @field_validator("stop")
    @classmethod
    def _stop_strings(cls, value: list[str]) -> list[str]:
        for i, s in enumerate(value):
            if not 1 <= len(s) <= 64:
                raise ValueError(f"stop[{i}] must be 1 to 64 characters long")
        return value


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    unknown_tokens: int = Field(description="prompt words outside the vocabulary (read as <unk>)")


class GenerateResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "text": " sitting by her sister on the bank, and of having nothing to do.",
                    "finish_reason": "eos",
                    "usage": {"prompt_tokens": 8, "completion_tokens": 16, "unknown_tokens": 0},
                    "model": {"name": "wordlm-2x400", "version": 1},
                }
            ]
        }
    )

    text: str = Field(description="the generated continuation (without the prompt)")
    finish_reason: Literal["length", "stop", "eos"]
    usage: Usage
    model: ModelRef
    session_id: str | None = Field(None, description="the session continued, if any")


class NextWordRequest(StrictRequest):
    # Config merges with StrictRequest's (extra=forbid, strict): only the examples are added here.
    model_config = ConfigDict(json_schema_extra={"examples": [{"text": "the white", "k": 3}]})

    text: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, examples=["the white"])
    k: int = Field(5, ge=1, le=50, description="how many suggestions")

    @field_validator("text")
    @classmethod
    def _text_has_tokens(cls, value: str) -> str:
        return _require_tokens(value)


class WordProbability(BaseModel):
    word: str
    probability: float


class NextWordResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "words": [
                        {"word": "rabbit", "probability": 0.41},
                        {"word": "queen", "probability": 0.07},
                        {"word": "kid", "probability": 0.05},
                    ],
                    "unknown_tokens": 0,
                    "model": {"name": "wordlm-2x400", "version": 1},
                }
            ]
        }
    )

    words: list[WordProbability]
    unknown_tokens: int
    model: ModelRef


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

    model: str = Field(min_length=1, max_length=64, description="model family: `wordlm` (generation) or `forecast`")
    version: int | None = Field(None, ge=1, description="model version (default: the one being served)")
    seed: int | None = Field(None, ge=0, le=2**63 - 1, description="seeds the session's sampler (generation)")


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
