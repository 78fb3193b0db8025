"""Error responses: every error is JSON `{error, message, request_id}`; input errors name the field and the rule."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .sessions import SessionBusyError, SessionCapacityError, SessionNotFoundError

log = logging.getLogger(__name__)


class RequestError(Exception):
    """A request that passed schema validation but breaks a rule only known at run time (e.g. a token limit)."""

    def __init__(self, message: str, field: str, status_code: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status_code = status_code


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def describe_validation_error(error: dict[str, Any]) -> str:
    """One pydantic error as `field: what is wrong`, e.g. `max_new_tokens: Input should be ≤ 1024`."""
    loc = [str(part) for part in error.get("loc", ()) if part != "body"]
    where = ".".join(loc) if loc else "body"
    kind = error.get("type", "")
    msg = str(error.get("msg", "invalid"))
    if kind == "json_invalid":
        return f"request body is not valid JSON ({error.get('ctx', {}).get('error', msg)})"
    if kind == "extra_forbidden":
        return f"{where}: unknown field (not part of this endpoint's request body)"
    if kind == "missing":
        return f"{where}: field required"
    return f"{where}: {msg.removeprefix('Value error, ')}"


def error_body(request: Request, error: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": error, "message": message, "request_id": _request_id(request), **extra}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        messages = [describe_validation_error(e) for e in errors]
        detail = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"),
                "message": m,
                "type": e.get("type"),
            }
            for e, m in zip(errors, messages, strict=True)
        ]
        return JSONResponse(error_body(request, "validation_error", "; ".join(messages), detail=detail), 422)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        body = error_body(
            request,
            "validation_error",
            exc.message,
            detail=[{"field": exc.field, "message": exc.message, "type": "limit"}],
        )
        return JSONResponse(body, exc.status_code)

    @app.exception_handler(SessionNotFoundError)
    async def session_not_found(request: Request, exc: SessionNotFoundError) -> JSONResponse:
        return JSONResponse(error_body(request, "session_not_found", str(exc), reason=exc.reason), 404)

    @app.exception_handler(SessionBusyError)
    async def session_busy(request: Request, exc: SessionBusyError) -> JSONResponse:
        return JSONResponse(error_body(request, "session_busy", str(exc)), 409)

    @app.exception_handler(SessionCapacityError)
    async def session_capacity(request: Request, exc: SessionCapacityError) -> JSONResponse:
        return JSONResponse(error_body(request, "session_capacity", str(exc)), 503,
                            headers={"Retry-After": str(exc.retry_after)})  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed", 409: "conflict", 410: "gone", 503: "unavailable"}.get(
            exc.status_code, "http_error"
        )
        return JSONResponse(error_body(request, kind, str(exc.detail)), exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in %s %s (request %s)", request.method, request.url.path, _request_id(request))
        return JSONResponse(error_body(request, "internal_error", "internal server error"), 500)
