"""Liveness, readiness and the model catalogue."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from ..dependencies import RegistryDep
from ..manifest import GraphSpec, TokenizerSpec

router = APIRouter(tags=["health"])


class ModelInfo(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "family": "wordlm",
                    "name": "wordlm-2x400",
                    "version": 1,
                    "created_at": "2026-01-01T00:00:00+00:00",
                    "description": "2-layer word LSTM language model",
                    "metrics": {"model": {"test_perplexity": 52.8}, "baselines": {"kn5": {"test_perplexity": 86.1}}},
                    "graphs": {
                        "step": {
                            "file": "model.onnx",
                            "opset": 17,
                            "inputs": [{"name": "tokens", "dtype": "int64", "dims": ["batch", "seq"]}],
                            "outputs": [{"name": "logits", "dtype": "float32", "dims": ["batch", "seq", 2955]}],
                        }
                    },
                    "tokenizer": {"kind": "word", "vocab_file": "vocab.json", "vocab_size": 2955, "min_count": 2},
                }
            ]
        }
    )

    family: str
    name: str
    version: int
    created_at: str
    description: str
    metrics: dict[str, Any]
    graphs: dict[str, GraphSpec]
    tokenizer: TokenizerSpec | None


class HealthResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: str


class ReadyResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"ready": True, "models": {"wordlm": 1, "sentiment": 1}, "failures": {}},
                {"ready": False, "models": {}, "failures": {"wordlm/2": "model.onnx: sha256 mismatch"}},
            ]
        }
    )

    ready: bool
    models: dict[str, int]
    failures: dict[str, str]


@router.get("/health", response_model=HealthResponse)
def health() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/ready", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
def ready(registry: RegistryDep) -> JSONResponse:
    """Which models are loaded; 503 until every model found is being served."""
    ok = bool(registry.models) and not registry.failures
    body = ReadyResponse(
        ready=ok, models={f: m.version for f, m in registry.models.items()}, failures=registry.failures
    )
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/models", response_model=list[ModelInfo])
def models(registry: RegistryDep) -> list[ModelInfo]:
    """Each served model: family, version, measured metrics (with baselines) and input contract."""
    return [
        ModelInfo(
            family=m.family,
            name=m.manifest.name,
            version=m.version,
            created_at=m.manifest.created_at,
            description=m.manifest.description,
            metrics=m.manifest.metrics,
            graphs=m.manifest.graphs,
            tokenizer=m.manifest.tokenizer,
        )
        for m in registry.models.values()
    ]
