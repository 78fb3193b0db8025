"""The FastAPI application: `create_app(settings)` builds it; the lifespan loads every model once."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response

from . import __version__
from .config import Settings
from .engines import ENGINES
from .errors import install_error_handlers
from .registry import load_registry
from .routes import health, wordlm

log = logging.getLogger("service")

REQUEST_ID_HEADER = "X-Request-ID"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry = load_registry(settings)
        engines = {}
        for family, model in registry.models.items():
            if family not in ENGINES:
                registry.failures[f"{family}/{model.version}"] = "no engine serves this family"
                continue
            engines[family] = ENGINES[family](model)
        app.state.registry = registry
        app.state.engines = engines
        log.info("serving %s", {f: m.version for f, m in registry.models.items()} or "no models")
        yield

    app = FastAPI(
        title="cellstate",
        version=__version__,
        lifespan=lifespan,
        description="LSTM sequence models served with onnxruntime: text generation, next-word "
        "suggestions, sentiment and forecasting.",
    )
    app.state.settings = settings

    @app.middleware("http")
    async def request_id(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        rid = request.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
        request.state.request_id = rid[:128]
        response = await call_next(request)
        response.headers[REQUEST_ID_HEADER] = request.state.request_id
        return response

    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(wordlm.router)
    return app
