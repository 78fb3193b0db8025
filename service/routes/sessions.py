"""Stateful sessions: create, inspect, delete. Generation and forecasting continue them (POST /generate,
POST /forecast with `session_id`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Path, Request, Response
from starlette.concurrency import run_in_threadpool

from ..errors import RequestError
from ..runtime import Runtime
from ..sampling import Sampler, SamplingParams
from ..schemas import CreateSessionRequest, ErrorResponse, ModelRef, SessionInfo, ValidationErrorResponse
from ..sessions import ID_PATTERN, SessionRecord
from ..tokenizer import Detokenizer

router = APIRouter(tags=["sessions"])
SessionId = Path(pattern=ID_PATTERN, description="id returned by POST /sessions")
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "unknown or expired session (the message says which)"}
}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def initial_data(family: str, seed: int | None) -> dict[str, Any]:
    """What a new session holds before its first call, per family."""
    if family == "wordlm":
        return {"pending_token": None, "rng": Sampler(SamplingParams(), seed).rng_state(),
                "detokenizer": Detokenizer().state(), "tokens_seen": 0}  # fmt: skip
    return {}


def info(runtime: Runtime, record: SessionRecord) -> SessionInfo:
    engine = runtime.versions.get((record.family, record.model_version))
    name = engine.model.manifest.name if engine is not None else f"{record.family} (no longer served)"
    return SessionInfo(session_id=record.id, family=record.family,
                       model=ModelRef(name=name, version=record.model_version),
                       created_at=iso(record.created_at), expires_at=iso(record.expires_at),
                       idle_expires_at=iso(record.deadline(runtime.sessions.idle_ttl)))  # fmt: skip


@router.post(
    "/sessions",
    response_model=SessionInfo,
    status_code=201,
    responses={
        422: {"model": ValidationErrorResponse, "description": "unknown model family or version"},
        503: {"model": ErrorResponse, "description": "the session store is full; see Retry-After"},
    },
)
async def create_session(body: CreateSessionRequest, request: Request) -> SessionInfo:
    """Start a session on a model (pinned to the version served now, or the one asked for)."""
    runtime: Runtime = request.app.state.runtime
    stateful = {family for family, _ in runtime.versions if family in ("wordlm", "forecast")}
    if body.model not in stateful:
        raise RequestError(f"model: must be one of {sorted(stateful)} (the loaded stateful families)", "model")
    version = body.version or runtime.engine(body.model).model.version
    if (body.model, version) not in runtime.versions:
        raise RequestError(f"version: {body.model} version {version} is not loaded", "version")
    record = runtime.sessions.new_record(body.model, version, initial_data(body.model, body.seed))
    await run_in_threadpool(runtime.sessions.create, record)
    return info(runtime, record)


@router.get("/sessions/{session_id}", response_model=SessionInfo, responses=NOT_FOUND)
async def get_session(request: Request, session_id: str = SessionId) -> SessionInfo:
    """A session's model version and expiry times."""
    runtime: Runtime = request.app.state.runtime
    return info(runtime, await run_in_threadpool(runtime.sessions.get, session_id))


@router.delete("/sessions/{session_id}", status_code=204, responses=NOT_FOUND)
async def delete_session(request: Request, session_id: str = SessionId) -> Response:
    """End a session now."""
    runtime: Runtime = request.app.state.runtime
    await run_in_threadpool(runtime.sessions.get, session_id)  # 404 says unknown or expired
    await run_in_threadpool(runtime.sessions.delete, session_id)
    return Response(status_code=204)
