"""The HTTP edge: API keys, request-size limit and CORS, as ASGI middleware.

API keys are checked by a middleware, not a per-router dependency, so that a route added later is protected by
default: only the paths in PUBLIC_PATHS (probes, metrics, the documentation and the playground page, which holds
no secret and sends the user's key with its API calls) are open without a key.
"""

from __future__ import annotations

import hmac

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse

from .config import Settings
from .errors import error_body
from .observability import ASGIApp, Message, Receive, Scope, Send

API_KEY_HEADER = "X-API-Key"
ADMIN_KEY_HEADER = "X-Admin-Key"
PUBLIC_PATHS = frozenset(
    {"/", "/health", "/ready", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)
# swagger-ui / redoc scripts and styles (service/api_docs.py); the playground's script and style
# (service/routes/playground.py)
PUBLIC_PREFIXES = ("/docs-assets/", "/playground/")


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def is_admin(path: str) -> bool:
    """The /admin/ routes: they take admin keys (CELLSTATE_ADMIN_KEYS) only, and are closed when none is set."""
    return path == "/admin" or path.startswith("/admin/")


def _matches(key: str | None, keys: list[bytes]) -> bool:
    if key is None:
        return False
    given = key.encode()
    # compare_digest against every key (no early exit): timing does not tell which key nearly matched.
    return any([hmac.compare_digest(given, k) for k in keys])


def presented_key(headers: Headers) -> str | None:
    """The key from `Authorization: Bearer <key>` or `X-API-Key: <key>`, if any."""
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return headers.get(API_KEY_HEADER.lower()) or None


class APIKeyMiddleware:
    def __init__(self, app: ASGIApp, keys: list[bytes]) -> None:
        self.app = app
        self.keys = keys

    def accepts(self, key: str | None) -> bool:
        return _matches(key, self.keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] == "OPTIONS" or is_public(path) or is_admin(path):
            await self.app(scope, receive, send)
            return
        key = presented_key(Headers(scope=scope))
        if self.accepts(key):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        message = (
            "missing API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`"
            if key is None
            else "invalid API key"
        )
        response = JSONResponse(
            error_body(request, "unauthorized", message), 401, headers={"WWW-Authenticate": "Bearer"}
        )
        await response(scope, receive, send)


class AdminKeyMiddleware:
    """/admin/ routes need an admin key (`X-Admin-Key: <key>`, or `Authorization: Bearer <key>`), never an API key.

    With no admin key configured they are closed: 403 for everyone. Missing or wrong key: 401."""

    def __init__(self, app: ASGIApp, admin_keys: list[bytes], api_keys: list[bytes]) -> None:
        self.app = app
        self.admin_keys = admin_keys
        self.api_keys = api_keys

    @staticmethod
    def presented(headers: Headers) -> str | None:
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if headers.get(ADMIN_KEY_HEADER.lower()):
            return headers[ADMIN_KEY_HEADER.lower()]
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_admin(scope["path"]):
            await self.app(scope, receive, send)
            return
        key = self.presented(Headers(scope=scope))
        if self.admin_keys and _matches(key, self.admin_keys):
            await self.app(scope, receive, send)
            return
        headers: dict[str, str] = {}
        if not self.admin_keys:
            status, error = 403, "admin_disabled"
            message = "admin routes are closed: no admin key is configured (set CELLSTATE_ADMIN_KEYS)"
        else:
            status, error = 401, "unauthorized"
            headers["WWW-Authenticate"] = "Bearer"
            if key is None:
                message = f"missing admin key: send `{ADMIN_KEY_HEADER}: <key>` (one of CELLSTATE_ADMIN_KEYS)"
            elif _matches(key, self.api_keys):
                message = "an API key does not open admin routes: send an admin key (CELLSTATE_ADMIN_KEYS)"
            else:
                message = "invalid admin key"
        response = JSONResponse(error_body(Request(scope), error, message), status, headers=headers)
        await response(scope, receive, send)


class BodyLimitMiddleware:
    """413 for a request body larger than the limit, declared (Content-Length) or streamed (chunked)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def too_large(self, scope: Scope) -> JSONResponse:
        message = f"request body is larger than the limit of {self.max_bytes} bytes (CELLSTATE_MAX_REQUEST_BYTES)"
        return JSONResponse(error_body(Request(scope), "payload_too_large", message), 413)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if declared.isdigit() and int(declared) > self.max_bytes:
                await self.too_large(scope)(scope, receive, send)
                return
            await self.app(scope, receive, send)  # the server enforces that the body matches its length
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        # No declared length (chunked): read the body up to the limit, then replay it to the app.
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self.too_large(scope)(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


def install_security(app: FastAPI, settings: Settings) -> None:
    """Add (outermost first) CORS, API-key check and body limit; call before `install_observability`."""
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    keys = [k.get_secret_value().encode() for k in settings.api_keys]
    if keys:
        app.add_middleware(APIKeyMiddleware, keys=keys)
    admin_keys = [k.get_secret_value().encode() for k in settings.admin_keys]
    app.add_middleware(AdminKeyMiddleware, admin_keys=admin_keys, api_keys=keys)  # always: closed without keys
    if settings.cors_origins:
        # Preflight requests carry no credentials: CORS answers them before the key check.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type", API_KEY_HEADER, "X-Request-ID"],
            expose_headers=["X-Request-ID"],
        )
