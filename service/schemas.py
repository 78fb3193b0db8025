"""Request and response bodies. Requests are strict (no type coercion) and forbid unknown fields, so a typo'd
parameter is a 422 instead of being silently ignored."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

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
    prompt: str = Field(
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        description="text to continue",
        examples=["Alice was beginning to get very tired of"],
    )
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
    def _prompt_has_tokens(cls, value: str) -> str:
        return _require_tokens(value)

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
    text: str = Field(description="the generated continuation (without the prompt)")
    finish_reason: Literal["length", "stop", "eos"]
    usage: Usage
    model: ModelRef


class NextWordRequest(StrictRequest):
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
    words: list[WordProbability]
    unknown_tokens: int
    model: ModelRef


class ErrorResponse(BaseModel):
    error: str
    message: str
    request_id: str | None = None
