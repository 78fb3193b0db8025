"""The FastAPI application: `create_app(settings)` builds it; the lifespan loads every model once."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import __version__
from .api_docs import install_docs, operation_id
from .config import Settings
from .errors import install_error_handlers
from .families.registry import FAMILIES, by_name
from .family import Family
from .observability import install_observability
from .registry import load_registry
from .routes import health, models, playground, sessions
from .runtime import Runtime
from .security import install_security
from .shedding import ShedWhenFull, one_shot_paths

log = logging.getLogger("service")

REQUEST_ID_HEADER = "X-Request-ID"


class RequestIdMiddleware:
    """Take the client's X-Request-ID (or make one), put it in the request state and echo it on the response.
    Plain ASGI: `@app.middleware("http")` would wrap every request in an extra task and response stream."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = Headers(scope=scope).get(REQUEST_ID_HEADER)
        rid = (given or uuid.uuid4().hex)[:128]
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        await self.app(scope, receive, send_with_id)


def create_app(settings: Settings | None = None, families: tuple[Family, ...] = FAMILIES) -> FastAPI:
    settings = settings or Settings()
    unknown = sorted(settings.precision.keys() - {"*", *(family.name for family in families)})
    if unknown:  # refused at start-up, as an unknown precision value is (service/config.py)
        raise ValueError(f"CELLSTATE_PRECISION names unknown model families {unknown}: "
                         f"use {', '.join(family.name for family in families)}")  # fmt: skip

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry = load_registry(settings)
        runtime = Runtime.start(settings, registry, by_name(families))
        app.state.registry = registry
        app.state.runtime = runtime
        app.state.engines = runtime.current
        log.info("serving %s", {f: m.version for f, m in registry.models.items()} or "no models")
        try:
            yield
        finally:
            runtime.close()

    app = FastAPI(
        title="cellstate",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc are served from local assets by install_docs (no CDN)
        redoc_url=None,
        generate_unique_id_function=operation_id,  # operationId = function name: readable client methods
        description="LSTM sequence models served with onnxruntime: text generation, next-word "
        "suggestions, sentiment and forecasting.",
    )
    app.state.settings = settings
    # Installed before the request-id middleware below, so they run inside it and see the request id.
    app.add_middleware(ShedWhenFull, paths=one_shot_paths(families))  # innermost: after the key check
    install_security(app, settings)
    install_observability(app, settings)

    app.add_middleware(RequestIdMiddleware)  # outermost: every layer inside sees the request id

    install_error_handlers(app)
    install_docs(app, [model for family in families for model in family.stream_models])
    app.include_router(health.router)
    for family in families:
        app.include_router(family.router)
    app.include_router(sessions.router)
    app.include_router(models.router)
    app.include_router(playground.router)  # GET / (the playground page) and its static files
    return app
