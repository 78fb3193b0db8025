"""Observability: Prometheus metrics at `/metrics`, logs (text or JSON) that carry the request id, access logs.

Metric objects live in the process-wide Prometheus registry so that any module can import and update them
(`TOKENS_GENERATED.labels(family="wordlm").inc(n)`); one uvicorn process serves one app, and each replica is
scraped on its own. HTTP request metrics are labelled by route *template* (`/sessions/{session_id}`), never by the
raw path, so their number of series stays bounded.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any, TextIO

from fastapi import FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.responses import Response
from starlette.routing import Match

from .config import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ACCESS_LOGGER = "cellstate.access"
UNMATCHED_ROUTE = "<unmatched>"  # one label for every path no route matched (404s), so scanners add no series

# ---- metrics ---------------------------------------------------------------------------------------------------
# Latency buckets span a 1 ms health check to a 1,024-token generation of several seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

HTTP_REQUESTS = Counter(
    "cellstate_http_requests",
    "HTTP requests answered, by method, route template and status",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "cellstate_http_request_duration_seconds",
    "time from request to the end of the response, by method and route template",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
log = logging.getLogger(__name__)
HTTP_IN_PROGRESS = Gauge("cellstate_http_requests_in_progress", "HTTP requests being served now")
TOKENS_GENERATED = Counter("cellstate_tokens_generated", "tokens produced by generation, by model family", ["family"])
GENERATIONS_WITHDRAWN = Counter(
    "cellstate_generations_withdrawn",
    "generation requests answered 503 after waiting CELLSTATE_BATCH_MAX_QUEUE_WAIT_S for a batch slot",
    ["family"],
)
PROMPTS_READ = Counter(
    "cellstate_prompts_read",
    "prompts of admitted generations, by how they were read: `prefill` (one call) or `in_batch` (riding along)",
    ["family", "how"],
)
BATCH_SIZE = Histogram(
    "cellstate_batch_size", "sequences stepped together in one onnxruntime call", ["family"], buckets=BATCH_BUCKETS
)
QUEUE_DEPTH = Gauge("cellstate_queue_depth", "requests waiting for a batch slot", ["family"])
ACTIVE_SESSIONS = Gauge(
    "cellstate_active_sessions", "live sessions in the session store (every replica's, when the store is Redis)"
)
MODEL_LOADED = Gauge("cellstate_model_loaded", "1 for each model version being served, in the precision served",
                     ["family", "version", "name", "precision"])  # fmt: skip
MODEL_FAILURES = Gauge("cellstate_model_failures", "model versions found but not served (see GET /ready)")


def refresh_model_metrics(app: FastAPI) -> None:
    """Set the loaded-model gauges from the app's registry (read at scrape time, so a reload shows at once)."""
    registry = getattr(app.state, "registry", None)
    MODEL_LOADED.clear()
    if registry is None:  # before the lifespan ran
        MODEL_FAILURES.set(0)
        return
    for family, model in registry.models.items():
        MODEL_LOADED.labels(family=family, version=str(model.version), name=model.manifest.name,
                            precision=model.precision).set(1)  # fmt: skip
    MODEL_FAILURES.set(len(registry.failures))
    runtime = getattr(app.state, "runtime", None)
    if runtime is not None:  # counted at scrape time: expiry needs no bookkeeping
        try:
            ACTIVE_SESSIONS.set(runtime.sessions.count())
        except Exception as exc:  # the store is down: the gauge says "unknown" (NaN), the scrape still works
            log.warning("cellstate_active_sessions: the session store did not answer (%s)", exc)
            ACTIVE_SESSIONS.set(float("nan"))


async def metrics_endpoint(request: Request) -> Response:
    # In a thread of its own (not the request pool): a stalled session store delays this scrape only.
    await asyncio.to_thread(refresh_model_metrics, request.app)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


# ---- logging ---------------------------------------------------------------------------------------------------
# The request being served, for every log record made while serving it (contextvars follow the request into the
# thread pool that runs the plain `def` routes).
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# Attributes every LogRecord has; anything else was passed with `extra=` and goes into the JSON object.
_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "request_id"}


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id and any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS and not k.startswith("_")})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message [request id]` — for a person reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        if rid and record.name != ACCESS_LOGGER:  # the access line shows it already
            first, nl, rest = line.partition("\n")
            line = f"{first} [{rid}]{nl}{rest}"
        return line


def configure_logging(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """Route every logger (uvicorn's too) through one handler in the configured format; returns that handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for name in ("uvicorn", "uvicorn.error"):  # uvicorn's own loggers propagate to ours
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    return handler


# ---- middleware ------------------------------------------------------------------------------------------------
def route_template(served: Scope, entry: Scope) -> str:
    """The path template of the route that served a request (`served`: the scope after routing; `entry`: a copy
    taken before it, as routing rewrites paths for mounts)."""
    route = served.get("route")  # set by the router for API routes
    if route is None:  # plain routes and mounts (docs, metrics, assets): match the entry scope ourselves
        router = entry.get("router") or served.get("router")
        route = next((r for r in getattr(router, "routes", ()) if r.matches(entry)[0] is Match.FULL), None)
    path = getattr(route, "path", None)
    if isinstance(path, str):
        root_path: str = entry.get("root_path", "")
        return root_path + path
    return UNMATCHED_ROUTE


class ObservabilityMiddleware:
    """Per request: metrics by route template and status, the request-id context for logs, one access-log line.

    Runs inside the request-id middleware (app.py), which has already put the id in `scope["state"]`.
    """

    def __init__(self, app: ASGIApp, access_log: bool) -> None:
        self.app = app
        self.access_log = access_log
        self.log = logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        entry_scope = dict(scope)  # shallow: routing adds keys to `scope` and may rewrite its paths
        rid = scope.get("state", {}).get("request_id")
        token = current_request_id.set(rid)
        status = 500  # what the client gets if the app raises before answering
        started = time.perf_counter()

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        HTTP_IN_PROGRESS.inc()
        try:
            await self.app(scope, receive, send_and_record)
        finally:
            elapsed = time.perf_counter() - started
            HTTP_IN_PROGRESS.dec()
            method, route = scope["method"], route_template(scope, entry_scope)
            HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
            HTTP_LATENCY.labels(method=method, route=route).observe(elapsed)
            if self.access_log:
                self._log_access(scope, status, elapsed, rid, route)
            current_request_id.reset(token)

    def _log_access(self, scope: Scope, status: int, elapsed: float, rid: str | None, route: str) -> None:
        client = scope.get("client")
        where = f"{client[0]}:{client[1]}" if client else "-"
        query = scope.get("query_string", b"").decode("latin-1")
        target = scope["path"] + (f"?{query}" if query else "")
        level = logging.ERROR if status >= 500 else logging.INFO
        self.log.log(
            level,
            '%s "%s %s" %d %.1f ms rid=%s',
            where,
            scope["method"],
            target,
            status,
            elapsed * 1000,
            rid or "-",
            extra={
                "client": where,
                "method": scope["method"],
                "path": scope["path"],
                "route": route,
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
            },
        )


def install_observability(app: FastAPI, settings: Settings) -> None:
    """Add the metrics/access-log middleware and `GET /metrics` (Prometheus text format, not in the OpenAPI spec).

    Call it before the request-id middleware is added, so that the request id is set when this one runs.
    """
    app.add_middleware(ObservabilityMiddleware, access_log=settings.access_log)
    app.add_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
