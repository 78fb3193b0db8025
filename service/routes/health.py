"""Liveness, readiness and the model catalogue.

The probes are `async` and touch nothing that can block: they answer on the event loop even when every worker
thread is busy (a probe in the thread pool waited 17.8 s behind 300 /sentiment requests). The session store's
condition is reported by /ready but does not gate it: taking every replica out of rotation because Redis is down
would also stop the stateless endpoints, which still work (session calls answer 503 naming the store).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ..dependencies import RegistryDep, RuntimeDep
from ..manifest import GraphSpec, TokenizerSpec, Variant
from ..runtime import Runtime

router = APIRouter(tags=["health"])
PUBLIC: list[dict[str, list[str]]] = []  # OpenAPI `security: []`: no API key needed


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
                    "precision": "int8",
                    "default_precision": "int8",
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
    stateful: bool = Field(False, description="sessions can be started on it (POST /sessions)")
    precision: str = Field("fp32", description="the precision served (CELLSTATE_PRECISION): fp32 or int8")
    variants: dict[str, Variant] = Field(
        default_factory=dict,
        description="other precisions of the same weights, with their quality on the same test split, parity "
        "against fp32, tolerance and measured speed-up",
    )
    default_precision: str = Field("fp32", description="what CELLSTATE_PRECISION=auto serves for this version")
    limits: dict[str, Any] = Field(
        default_factory=dict, description="the limits a request must respect (the same values the 422s enforce)"
    )


class HealthResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: str


class SessionStoreStatus(BaseModel):
    kind: str = Field(description="`memory` or `redis`")
    ok: bool = Field(description="it answered a ping within the store timeout")
    detail: str | None = Field(None, description="why not, when it did not")


class ReadyResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"ready": True, "models": {"wordlm": 1, "sentiment": 1}, "failures": {},
                 "session_store": {"kind": "redis", "ok": True, "detail": None}},
                {"ready": False, "models": {}, "failures": {"wordlm/2": "model.onnx: sha256 mismatch"},
                 "session_store": {"kind": "memory", "ok": True, "detail": None}},
            ]
        }
    )  # fmt: skip

    ready: bool = Field(description="every model found is served (the session store does not gate readiness)")
    models: dict[str, int]
    failures: dict[str, str]
    session_store: SessionStoreStatus | None = None


@router.get("/health", response_model=HealthResponse, openapi_extra={"security": PUBLIC})
async def health() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


async def session_store_status(runtime: Runtime) -> SessionStoreStatus:
    kind = runtime.settings.session_store
    if kind == "memory":  # in this process: nothing to ask, no thread to wait for
        return SessionStoreStatus(kind=kind, ok=True)
    try:  # its own thread, not the request pool; the store's socket timeout bounds the wait
        await asyncio.to_thread(runtime.sessions.ping)
    except Exception as exc:
        return SessionStoreStatus(kind=kind, ok=False, detail=str(exc))
    return SessionStoreStatus(kind=kind, ok=True)


@router.get("/ready", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}},
            openapi_extra={"security": PUBLIC})  # fmt: skip
async def ready(registry: RegistryDep, runtime: RuntimeDep) -> JSONResponse:
    """Which models are loaded; 503 until every model found is being served. Also the session store's condition."""
    ok = bool(registry.models) and not registry.failures
    body = ReadyResponse(ready=ok, models={f: m.version for f, m in registry.models.items()},
                         failures=registry.failures, session_store=await session_store_status(runtime))  # fmt: skip
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/models", response_model=list[ModelInfo], tags=["models"])
async def models(registry: RegistryDep, runtime: RuntimeDep) -> list[ModelInfo]:
    """Each served model: family, version, measured metrics (with baselines), input contract and limits."""
    infos = []
    for m in registry.models.values():
        family, engine = runtime.families.get(m.family), runtime.current.get(m.family)
        limits = family.limits(engine, runtime.settings) if family and family.limits and engine else {}
        infos.append(ModelInfo(family=m.family, name=m.manifest.name, version=m.version,
                               created_at=m.manifest.created_at, description=m.manifest.description,
                               metrics=m.manifest.metrics, graphs=m.manifest.graphs, tokenizer=m.manifest.tokenizer,
                               stateful=bool(family and family.stateful), precision=m.precision,
                               variants=m.manifest.variants, default_precision=m.manifest.default_precision,
                               limits=limits))  # fmt: skip
    return infos
