"""Stateful sessions: create, inspect, delete. Generation and forecasting continue them (POST /generate,
POST /forecast with `session_id`)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Path, Response
from starlette.concurrency import run_in_threadpool

from ..dependencies import RuntimeDep
from ..errors import ModelUnavailable, RequestError, documented
from ..runtime import Runtime
from ..schemas import CreateSessionRequest, ModelRef, SessionInfo
from ..sessions import ID_PATTERN, SessionCapacityError, SessionNotFoundError, SessionRecord, SessionStoreUnavailable

router = APIRouter(tags=["sessions"])
SessionId = Path(pattern=ID_PATTERN, description="id returned by POST /sessions")
NOT_FOUND = documented(SessionNotFoundError, SessionStoreUnavailable)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def info(runtime: Runtime, record: SessionRecord) -> SessionInfo:
    engine = runtime.versions.get((record.family, record.model_version))
    name = engine.model.manifest.name if engine is not None else f"{record.family} (no longer served)"
    return SessionInfo(session_id=record.id, family=record.family,
                       model=ModelRef(name=name, version=record.model_version,
                                      precision=engine.model.precision if engine is not None else None),
                       created_at=iso(record.created_at), expires_at=iso(record.expires_at),
                       idle_expires_at=iso(record.deadline(runtime.sessions.idle_ttl)))  # fmt: skip


@router.post(
    "/sessions",
    response_model=SessionInfo,
    status_code=201,
    responses=documented(SessionCapacityError, SessionStoreUnavailable, ModelUnavailable),
)
async def create_session(body: CreateSessionRequest, runtime: RuntimeDep) -> SessionInfo:
    """Start a session on a model (pinned to the version served now, or the one asked for)."""
    stateful = {name for name, _ in runtime.versions if runtime.families[name].stateful}
    if body.model not in stateful:
        raise RequestError(f"model: must be one of {sorted(stateful)} (the loaded stateful families)", "model")
    version = body.version or runtime.engine(body.model).model.version
    if (body.model, version) not in runtime.versions:
        raise RequestError(f"version: {body.model} version {version} is not loaded", "version")
    codec = runtime.families[body.model].session
    assert codec is not None
    engine = runtime.versions[(body.model, version)]
    record = runtime.sessions.new_record(body.model, version, codec.initial_data(engine, body.seed))
    await run_in_threadpool(runtime.sessions.create, record)
    return info(runtime, record)


@router.get("/sessions/{session_id}", response_model=SessionInfo, responses=NOT_FOUND)
async def get_session(runtime: RuntimeDep, session_id: str = SessionId) -> SessionInfo:
    """A session's model version and expiry times."""
    return info(runtime, await run_in_threadpool(runtime.sessions.get, session_id))


@router.delete("/sessions/{session_id}", status_code=204, responses=NOT_FOUND)
async def delete_session(runtime: RuntimeDep, session_id: str = SessionId) -> Response:
    """End a session now (a request using it finishes, but its result is not saved)."""
    await run_in_threadpool(runtime.sessions.get, session_id)  # 404 says unknown or expired
    await run_in_threadpool(runtime.sessions.delete, session_id)
    return Response(status_code=204)
