"""Error responses: every error is JSON `{error, message, request_id}`; input errors name the field and the rule.

Code below the HTTP layer raises a `ServiceError` subclass (or a session error); this module maps each to its
status once, and `documented(...)` turns the same classes into the OpenAPI `responses` of a route, so every
status a route can answer is in openapi.json.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .schemas import ErrorResponse
from .sessions import SessionBusyError, SessionCapacityError, SessionNotFoundError, SessionStoreUnavailable

_STATUS: dict[type[Exception], tuple[int, str]] = {
    SessionNotFoundError: (404, "unknown or expired session (the message says which)"),
    SessionBusyError: (409, "the session is busy with another request"),
    SessionCapacityError: (503, "the session store is full; see Retry-After"),
    SessionStoreUnavailable: (503, "the session store (Redis) did not answer; stateless requests are not affected"),
}

log = logging.getLogger(__name__)


class RequestError(Exception):
    """A request that passed schema validation but breaks a rule only known at run time (e.g. a token limit)."""

    def __init__(self, message: str, field: str, status_code: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status_code = status_code


class ServiceError(Exception):
    """A domain error with its HTTP status, kind and (for 503) a Retry-After. Raised below the HTTP layer."""

    status: ClassVar[int] = 500
    kind: ClassVar[str] = "internal_error"
    description: ClassVar[str] = ""
    retry_after: int | None = None


class ModelUnavailable(ServiceError):
    status, kind = 503, "unavailable"
    description = "no model of this family is loaded (see GET /ready)"

    def __init__(self, family: str) -> None:
        super().__init__(f"no {family} model is loaded (see GET /ready)")


class Overloaded(ServiceError):
    status, kind = 503, "overloaded"
    description = "too much work is waiting; retry after `Retry-After` seconds"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SessionFamilyMismatch(ServiceError):
    status, kind = 409, "session_family_mismatch"
    description = "the session belongs to another model family"

    def __init__(self, session_id: str, family: str, wanted: str) -> None:
        super().__init__(f"session {session_id} is a {family} session, not {wanted}")


class VersionRetired(ServiceError):
    status, kind = 410, "version_retired"
    description = "the session is pinned to a model version that is no longer served"

    def __init__(self, session_id: str, family: str, version: int) -> None:
        super().__init__(f"session {session_id} is pinned to {family} version {version}, which is no longer served")


class FeatureUnavailable(ServiceError):
    status, kind = 503, "feature_unavailable"
    description = "the served model version was exported without what this operation needs"


class NotFound(ServiceError):
    status, kind = 404, "not_found"
    description = "not found"


def documented(*errors: type[Exception], **described: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the errors a route can raise (descriptions of one status are joined)."""
    responses: dict[int | str, dict[str, Any]] = {}
    for error in errors:
        status, text = _STATUS.get(error, (getattr(error, "status", 500), getattr(error, "description", "")))
        entry = responses.setdefault(status, {"model": ErrorResponse, "description": ""})
        entry["description"] = "; ".join(filter(None, [entry["description"], text]))
    for status, text in described.items():
        responses.setdefault(int(status.removeprefix("s")), {"model": ErrorResponse})["description"] = text
    return responses


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


def unparsable_body(cause: BaseException) -> str:
    """Why a body that is not a JSON syntax error could not be read as JSON."""
    if isinstance(cause, UnicodeDecodeError):
        return f"not valid UTF-8 ({cause.reason} at byte {cause.start}); send JSON encoded as UTF-8"
    if isinstance(cause, RecursionError):
        return "JSON nested too deeply to read; nest less"
    if isinstance(cause, ValueError) and "digits" in str(cause):
        return f"a number has too many digits (at most {sys.get_int_max_str_digits()})"
    return f"could not be read as JSON ({type(cause).__name__})"


def error_body(request: Request, error: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": error, "message": message, "request_id": _request_id(request), **extra}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        content_type = request.headers.get("content-type", "")
        if isinstance(exc.body, bytes) and "json" not in content_type:  # the body was never read as JSON
            errors = [
                {
                    "loc": ("body",),
                    "type": "content_type",
                    "msg": f"send JSON with `Content-Type: application/json` (got `{content_type or 'none'}`)",
                }
            ]
        messages = [describe_validation_error(e) for e in errors]
        detail = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body",
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

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
        if exc.status >= 500 and exc.status != 503:
            log.error("%s: %s", exc.kind, exc)
        return JSONResponse(error_body(request, exc.kind, str(exc)), exc.status, headers=headers)

    @app.exception_handler(SessionNotFoundError)
    async def session_not_found(request: Request, exc: SessionNotFoundError) -> JSONResponse:
        return JSONResponse(error_body(request, "session_not_found", str(exc)), 404)

    @app.exception_handler(SessionBusyError)
    async def session_busy(request: Request, exc: SessionBusyError) -> JSONResponse:
        return JSONResponse(error_body(request, "session_busy", str(exc)), 409)

    @app.exception_handler(SessionCapacityError)
    async def session_capacity(request: Request, exc: SessionCapacityError) -> JSONResponse:
        return JSONResponse(error_body(request, "session_capacity", str(exc)), 503,
                            headers={"Retry-After": str(exc.retry_after)})  # fmt: skip

    @app.exception_handler(SessionStoreUnavailable)
    async def session_store_unavailable(request: Request, exc: SessionStoreUnavailable) -> JSONResponse:
        log.warning("%s (request %s)", exc, _request_id(request))
        return JSONResponse(error_body(request, "session_store_unavailable", str(exc)), 503,
                            headers={"Retry-After": str(exc.retry_after)})  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.__cause__ is not None:  # FastAPI could not parse the body
            message = f"body: {unparsable_body(exc.__cause__)}"
            detail = [{"field": "body", "message": message, "type": "json_invalid"}]
            return JSONResponse(error_body(request, "validation_error", message, detail=detail), 422)
        kind = {404: "not_found", 405: "method_not_allowed", 409: "conflict", 410: "gone", 503: "unavailable"}.get(
            exc.status_code, "http_error"
        )
        return JSONResponse(error_body(request, kind, str(exc.detail)), exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in %s %s (request %s)", request.method, request.url.path, _request_id(request))
        return JSONResponse(error_body(request, "internal_error", "internal server error"), 500)
