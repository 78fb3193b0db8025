"""Looking inside the word LM: per-token LSTM activations (POST /inspect) and embedding neighbours."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Literal

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from ..errors import RequestError
from ..families.wordlm.engine import WordLMEngine
from ..families.wordlm.inspect import GATES, Inspection, InspectionUnavailable, Inspector, InspectorCache, UnknownWord
from ..schemas import (
    MAX_PROMPT_CHARS,
    ErrorResponse,
    ModelRef,
    StrictRequest,
    ValidationErrorResponse,
    _require_tokens,
)
from ..tokenizer import tokenize_line

FAMILY = "wordlm"
MAX_INSPECT_TOKENS = 256  # one ONNX call per token, and the answer grows with tokens x layers x neurons
MAX_NEURONS = 64
DEFAULT_TOP_K = 10
MAX_NEIGHBORS = 100
DECIMALS = 6  # activations are float32: more digits would be noise


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Runs inside the app's lifespan (after the models are loaded): one Inspector per served version, made on use.
    app.state.inspectors = InspectorCache()
    yield


router = APIRouter(
    tags=["inspection"],
    lifespan=lifespan,
    responses={
        422: {"model": ValidationErrorResponse, "description": "invalid request; `detail` names each field"},
        503: {
            "model": ErrorResponse,
            "description": "no word model is loaded, or the served version was exported without the activations "
            "graph / embeddings file",
        },
    },
)


# ---- request and response bodies ------------------------------------------------------------------------------
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
        ge=1,
        le=MAX_NEURONS,
        description=f"without `neurons`: report the k neurons with the largest mean |hidden| over the text, and "
        f"each token's own k largest |hidden| (default {DEFAULT_TOP_K})",
    )
    gates: bool = Field(False, description="also report the input, forget, candidate and output gates")

    @field_validator("text")
    @classmethod
    def _text_has_tokens(cls, value: str) -> str:
        return _require_tokens(value)

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


# ---- routes -----------------------------------------------------------------------------------------------------
def inspector_for(request: Request) -> Inspector:
    engine: WordLMEngine = request.app.state.runtime.engine(FAMILY)  # 503 when no word model is loaded
    cache: InspectorCache = request.app.state.inspectors
    return cache.get(engine)


def model_ref(inspector: Inspector) -> ModelRef:
    model = inspector.engine.model
    return ModelRef(name=model.manifest.name, version=model.version)


def _values(neurons: list[int], values: list[float]) -> dict[int, float]:
    return {n: round(v, DECIMALS) for n, v in zip(neurons, values, strict=True)}


def inspect_response(
    inspection: Inspection, mode: Literal["neurons", "top_k"], unk_id: int, model: ModelRef
) -> InspectResponse:
    text = inspection.text
    summaries = []
    per_token: list[list[TokenLayer]] = [[] for _ in text.ids]
    for report in inspection.layers:
        neurons = report.neurons.tolist()
        magnitude = abs(report.hidden)  # (T, K)
        peaks = magnitude.argmax(axis=0).tolist()
        summaries.append(
            LayerSummary(
                layer=report.layer,
                neurons=[
                    NeuronSummary(
                        neuron=n,
                        mean_abs_hidden=round(float(magnitude[:, j].mean()), DECIMALS),
                        peak_hidden=round(float(report.hidden[peaks[j], j]), DECIMALS),
                        peak_position=peaks[j],
                        peak_token=text.tokens[peaks[j]],
                    )
                    for j, n in enumerate(neurons)
                ],
            )
        )
        hidden, cell = report.hidden.tolist(), report.cell.tolist()
        gates = report.gates.tolist() if report.gates is not None else None
        for t, layers in enumerate(per_token):
            entry = TokenLayer(layer=report.layer, hidden=_values(neurons, hidden[t]), cell=_values(neurons, cell[t]))
            if gates is not None:
                entry.gates = GateValues(**{name: _values(neurons, gates[t][g]) for g, name in enumerate(GATES)})
            if report.top_neurons is not None and report.top_hidden is not None:
                entry.top = [
                    NeuronValue(neuron=n, hidden=round(v, DECIMALS))
                    for n, v in zip(report.top_neurons[t].tolist(), report.top_hidden[t].tolist(), strict=True)
                ]
            layers.append(entry)
    tokens = [
        TokenActivations(position=t, token=token, unknown=token_id == unk_id, layers=layers)
        for t, (token, token_id, layers) in enumerate(zip(text.tokens, text.ids, per_token, strict=True))
    ]
    return InspectResponse(mode=mode, layers=summaries, tokens=tokens, unknown_tokens=text.unknown, model=model)


# Plain `def` routes: they run in the thread pool, so the token-by-token walk never blocks the event loop.
@router.post("/inspect", response_model=InspectResponse)
def inspect_activations(body: InspectRequest, request: Request) -> InspectResponse:
    """Per-token hidden and cell activations (and gates) of the word language model's LSTM layers."""
    inspector = inspector_for(request)
    text = inspector.engine.encode(body.text)
    if len(text.ids) > MAX_INSPECT_TOKENS:
        raise RequestError(f"text is {len(text.ids)} tokens long; the limit is {MAX_INSPECT_TOKENS}", field="text")
    if body.layer is not None and body.layer >= inspector.layers:
        raise RequestError(
            f"layer: {body.layer} is out of range; this model's layers are 0..{inspector.layers - 1}", field="layer"
        )
    for i, neuron in enumerate(body.neurons or []):
        if neuron >= inspector.hidden:
            raise RequestError(
                f"neurons.{i}: {neuron} is out of range; each layer has neurons 0..{inspector.hidden - 1}",
                field=f"neurons.{i}",
            )
    layers = list(range(inspector.layers)) if body.layer is None else [body.layer]
    top_k = min(body.top_k_neurons or DEFAULT_TOP_K, inspector.hidden)
    try:
        inspection = inspector.inspect(text, layers, body.neurons, top_k, body.gates)
    except InspectionUnavailable as exc:
        raise HTTPException(503, str(exc)) from exc
    mode: Literal["neurons", "top_k"] = "neurons" if body.neurons else "top_k"
    return inspect_response(inspection, mode, inspector.engine.vocab.unk_id, model_ref(inspector))


@router.get(
    "/embeddings/neighbors",
    response_model=NeighborsResponse,
    responses={404: {"model": ErrorResponse, "description": "the word is not in the model's vocabulary"}},
)
def embedding_neighbors(
    request: Request,
    word: Annotated[str, Query(min_length=1, max_length=64, description="one word, e.g. `queen`")],
    k: Annotated[int, Query(ge=1, le=MAX_NEIGHBORS, description="how many neighbours")] = 10,
) -> NeighborsResponse:
    """The words nearest to a word by cosine similarity of the word model's input embeddings."""
    tokens = tokenize_line(word)
    if len(tokens) != 1:
        raise RequestError(
            f"word: {word!r} is {len(tokens)} tokens for the model's tokenizer; give one word", field="word"
        )
    inspector = inspector_for(request)
    try:
        neighbors = inspector.neighbors(tokens[0], word, k)
    except InspectionUnavailable as exc:
        raise HTTPException(503, str(exc)) from exc
    except UnknownWord as exc:
        raise HTTPException(404, str(exc)) from exc
    return NeighborsResponse(
        word=tokens[0],
        neighbors=[Neighbor(word=w, similarity=round(s, DECIMALS)) for w, s in neighbors],
        model=model_ref(inspector),
    )
