"""Requests and responses of the word-LM family: generation, next-word suggestions and inspection."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator

from ...sampling import GREEDY_BELOW
from ...schemas import HAS_TOKENS, MAX_PROMPT_CHARS, MAX_SEED, ModelRef, StrictRequest, require_tokens
from ...sessions import ID_PATTERN as SESSION_ID_PATTERN

MAX_STOP_STRINGS = 8
MAX_NEW_TOKENS = 1024
MAX_INSPECT_TOKENS = 256  # one ONNX call per token, and the answer grows with tokens x layers x neurons
MAX_NEURONS = 64
DEFAULT_TOP_K = 10
MAX_NEIGHBORS = 100


class GenerateStreamRequest(StrictRequest):
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
        json_schema_extra=HAS_TOKENS,
        description="text to continue; required without a session_id and on a session's first call, optional on "
        "later calls (read before continuing)",
        examples=["Alice was beginning to get very tired of"],
    )
    session_id: str | None = Field(
        None, pattern=SESSION_ID_PATTERN, description="continue this session (from POST /sessions)"
    )
    max_new_tokens: int = Field(50, ge=1, le=MAX_NEW_TOKENS, description="tokens to generate at most")
    temperature: float = Field(
        1.0, ge=0.0, le=5.0, allow_inf_nan=False, description=f"0 (or below {GREEDY_BELOW:g}) = greedy"
    )
    top_k: int = Field(0, ge=0, le=100_000, description="sample from the k most likely tokens (0 = all)")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling mass (1 = all)")
    seed: int | None = Field(
        None,
        ge=0,
        le=MAX_SEED,
        description="same seed and parameters -> same text (at most 2^53 - 1, so that "
        "every JSON client can carry it exactly)",
    )
    stop: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        default_factory=list,
        max_length=MAX_STOP_STRINGS,
        description="end the text before the first occurrence of any of these (each 1 to 64 characters)",
    )
    ignore_eos: bool = Field(False, description="keep generating past the end-of-text token")

    @field_validator("prompt")
    @classmethod
    def _prompt_has_tokens(cls, value: str | None) -> str | None:
        return None if value is None else require_tokens(value)


class GenerateRequest(GenerateStreamRequest):
    """POST /generate's body: POST /generate/stream's, plus the retired `stream` flag (only `false` allowed)."""

    stream: bool = Field(False, description="retired: stream with POST /generate/stream; `true` is refused")

    @field_validator("stream")
    @classmethod
    def _not_streaming(cls, value: bool) -> bool:
        if value:
            raise ValueError("POST /generate answers JSON only; stream with POST /generate/stream (same body)")
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


class TokenEvent(BaseModel):
    """`event: token`: the next piece of text (one or more words and the spaces before them)."""

    text: str


class DoneEvent(BaseModel):
    """`event: done`: the last event of a stream that ended normally."""

    finish_reason: Literal["length", "stop", "eos"]
    usage: Usage
    model: ModelRef
    session_id: str | None = Field(None, description="the session continued, if any")


class ErrorEvent(BaseModel):
    """`event: error`: the last event of a stream that failed after it started."""

    error: str
    message: str


class NextWordRequest(StrictRequest):
    # Config merges with StrictRequest's (extra=forbid, strict): only the examples are added here.
    model_config = ConfigDict(json_schema_extra={"examples": [{"text": "the white", "k": 3}]})

    text: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, examples=["the white"], json_schema_extra=HAS_TOKENS)
    k: int = Field(5, ge=1, le=50, description="how many suggestions")

    @field_validator("text")
    @classmethod
    def _text_has_tokens(cls, value: str) -> str:
        return require_tokens(value)


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


# ---- inspection ------------------------------------------------------------------------------------------
class InspectRequest(StrictRequest):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"text": "the queen said", "layer": 0, "top_k_neurons": 1},
                {"text": "alice said, 'oh dear!'", "neurons": [204, 320], "gates": True},
            ]
        }
    )

    text: str = Field(
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        json_schema_extra=HAS_TOKENS,
        description=f"text to read, from the zero state (at most {MAX_INSPECT_TOKENS} tokens)",
        examples=["the queen said"],
    )
    layer: int | None = Field(None, ge=0, description="report this LSTM layer only (0-based; default: every layer)")
    neurons: list[Annotated[int, Field(ge=0)]] | None = Field(
        None,
        min_length=1,
        max_length=MAX_NEURONS,
        description=f"report these neurons (0..hidden-1, at most {MAX_NEURONS}, no repeats) of every chosen layer",
    )
    top_k_neurons: int | None = Field(
        None,
        strict=False,  # JSON Schema's integer includes 3.0: accept it as 3 (3.5 is still refused)
        ge=1,
        le=MAX_NEURONS,
        description=f"without `neurons`: report the k neurons with the largest mean |hidden| over the text, and "
        f"each token's own k largest |hidden| (default {DEFAULT_TOP_K})",
    )
    gates: bool = Field(False, description="also report the input, forget, candidate and output gates")

    @field_validator("text")
    @classmethod
    def _text_has_tokens(cls, value: str) -> str:
        return require_tokens(value)

    @field_validator("neurons")
    @classmethod
    def _neurons_unique(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("must not repeat a neuron")
        return value

    @field_validator("top_k_neurons")
    @classmethod
    def _one_selection(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("neurons") is not None:
            raise ValueError("give either `neurons` or `top_k_neurons`, not both")
        return value


class NeuronValue(BaseModel):
    neuron: int
    hidden: float


class GateValues(BaseModel):
    input: dict[int, float]
    forget: dict[int, float]
    candidate: dict[int, float] = Field(description="the cell candidate g = tanh(.)")
    output: dict[int, float]


class TokenLayer(BaseModel):
    layer: int
    hidden: dict[int, float] = Field(description="neuron -> h after this token (the layer's output, in [-1, 1])")
    cell: dict[int, float] = Field(description="neuron -> c after this token (the memory, unbounded)")
    gates: GateValues | None = Field(None, description="with `gates: true`")
    top: list[NeuronValue] | None = Field(
        None, description="top-k mode: this token's k neurons with the largest |hidden|, largest first"
    )


class TokenActivations(BaseModel):
    position: int
    token: str
    unknown: bool = Field(description="outside the vocabulary: the model read it as <unk>")
    layers: list[TokenLayer]


class NeuronSummary(BaseModel):
    neuron: int
    mean_abs_hidden: float = Field(description="mean |h| over the text's tokens")
    peak_hidden: float = Field(description="h at the token where |h| is largest")
    peak_position: int
    peak_token: str


class LayerSummary(BaseModel):
    layer: int
    neurons: list[NeuronSummary] = Field(
        description="the neurons reported for every token, in order: as requested, or by mean |h| (top-k mode)"
    )


class InspectResponse(BaseModel):
    # A real answer of the committed model to {"text": "the queen said", "layer": 0, "top_k_neurons": 1}.
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "mode": "top_k",
                    "layers": [
                        {
                            "layer": 0,
                            "neurons": [
                                {
                                    "neuron": 174,
                                    "mean_abs_hidden": 0.534519,
                                    "peak_hidden": -0.675247,
                                    "peak_position": 2,
                                    "peak_token": "said",
                                }
                            ],
                        }
                    ],
                    "tokens": [
                        {
                            "position": 0,
                            "token": "the",
                            "unknown": False,
                            "layers": [
                                {
                                    "layer": 0,
                                    "hidden": {"174": -0.55213},
                                    "cell": {"174": -0.85982},
                                    "gates": None,
                                    "top": [{"neuron": 324, "hidden": -0.651097}],
                                }
                            ],
                        },
                        {
                            "position": 1,
                            "token": "queen",
                            "unknown": False,
                            "layers": [
                                {
                                    "layer": 0,
                                    "hidden": {"174": -0.37618},
                                    "cell": {"174": -0.913611},
                                    "gates": None,
                                    "top": [{"neuron": 154, "hidden": 0.554371}],
                                }
                            ],
                        },
                        {
                            "position": 2,
                            "token": "said",
                            "unknown": False,
                            "layers": [
                                {
                                    "layer": 0,
                                    "hidden": {"174": -0.675247},
                                    "cell": {"174": -1.151913},
                                    "gates": None,
                                    "top": [{"neuron": 174, "hidden": -0.675247}],
                                }
                            ],
                        },
                    ],
                    "unknown_tokens": 0,
                    "model": {"name": "wordlm-2x400", "version": 1},
                }
            ]
        }
    )

    mode: Literal["neurons", "top_k"] = Field(description="`neurons` when the request named them")
    layers: list[LayerSummary]
    tokens: list[TokenActivations]
    unknown_tokens: int
    model: ModelRef


class Neighbor(BaseModel):
    word: str
    similarity: float = Field(description="cosine similarity of the input embeddings, in [-1, 1]")


class NeighborsResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "word": "queen",
                    "neighbors": [
                        {"word": "duchess", "similarity": 0.534529},
                        {"word": "hatter", "similarity": 0.533765},
                        {"word": "lory", "similarity": 0.519649},
                    ],
                    "model": {"name": "wordlm-2x400", "version": 1},
                }
            ]
        }
    )

    word: str = Field(description="the word as the vocabulary spells it (lower case)")
    neighbors: list[Neighbor] = Field(description="most similar first; the word itself and <eos>/<unk> excluded")
    model: ModelRef
