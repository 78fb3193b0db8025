"""API documentation that works offline, and the parts of the OpenAPI spec that the app-wide edge adds.

`/docs` (Swagger UI) and `/redoc` load their scripts and styles from `/docs-assets/`, files shipped inside the
pinned `fastapi-offline` wheel: no CDN, no web fonts, no validator badge, so they render on an air-gapped host.

The error envelope (errors.py), the API-key check and the body limit (security.py) apply to every route, so their
responses (401, 413 and the 422 body) are documented here for every operation rather than on each router.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.responses import HTMLResponse

from .schemas import ErrorResponse, ValidationErrorResponse
from .security import ADMIN_KEY_HEADER, API_KEY_HEADER, is_admin, is_public

ASSETS_URL = "/docs-assets"
# swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js and favicon.png, as shipped in the wheel
ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"

SECURITY_SCHEMES = {
    "BearerAuth": {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <API key>`"},
    "APIKeyHeader": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER},
}
ADMIN_SECURITY_SCHEMES = {
    "AdminKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": ADMIN_KEY_HEADER,
        "description": "an admin key (CELLSTATE_ADMIN_KEYS); API keys do not open /admin/ routes",
    },
}
_SCHEMA_REF = "#/components/schemas/{model}"


def _error_content(model: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": _SCHEMA_REF.format(model=model)}}}


EDGE_RESPONSES = {
    "401": {
        "description": "Missing or invalid API key (only when the server is configured with CELLSTATE_API_KEYS)",
        "content": _error_content("ErrorResponse"),
    },
    "admin401": {
        "description": "Missing or invalid admin key (an API key is not one)",
        "content": _error_content("ErrorResponse"),
    },
    "admin403": {
        "description": "Admin routes are closed: no admin key is configured (CELLSTATE_ADMIN_KEYS)",
        "content": _error_content("ErrorResponse"),
    },
    "413": {
        "description": "Request body larger than CELLSTATE_MAX_REQUEST_BYTES",
        "content": _error_content("ErrorResponse"),
    },
    "422": {
        "description": "Invalid request: `message` names each field and the rule it breaks",
        "content": _error_content("ValidationErrorResponse"),
    },
}


def operation_id(route: APIRoute) -> str:
    """operationId = the route function's name (`generate`, `create_session`): generated clients get readable
    method names instead of FastAPI's default `generate_generate_post`."""
    return route.name


SERVERS = [{"url": "http://localhost:8000", "description": "`make run` (point your client at your deployment)"}]
# TensorSpec.dims items: a named union, so that generators emit `number | string` instead of an empty interface.
DIM_SCHEMA = {"oneOf": [{"type": "string"}, {"type": "integer"}], "title": "Dim",
              "description": "a dimension: its size, or its name when it varies (`batch`, `seq`)"}  # fmt: skip


def _integral_bounds(node: Any) -> None:
    """FastAPI's OpenAPI model types bounds as floats (`"maximum": 1024.0`, and 2^63 - 1 becomes 2^63): write the
    bounds of integer schemas as integers, in place."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
                if isinstance(node.get(key), float) and node[key].is_integer():
                    node[key] = int(node[key])
        for value in node.values():
            _integral_bounds(value)
    elif isinstance(node, list):
        for value in node:
            _integral_bounds(value)


def document_http_edge(schema: dict[str, Any], extra_models: Sequence[type[BaseModel]] = ()) -> dict[str, Any]:
    """Add security schemes, 401/413 responses, the real 422 body, servers, the models that only appear inside
    streams (`extra_models`) and integer bounds written as integers to an OpenAPI document (idempotent)."""
    schema.setdefault("servers", SERVERS)
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    bodies: list[type[BaseModel]] = [ErrorResponse, ValidationErrorResponse, *extra_models]
    models: list[tuple[type[BaseModel], Literal["serialization"]]] = [(model, "serialization") for model in bodies]
    _, defs = models_json_schema(models, ref_template=_SCHEMA_REF)
    for name, definition in defs.get("$defs", {}).items():
        schemas.setdefault(name, definition)
    components["securitySchemes"] = {**SECURITY_SCHEMES, **ADMIN_SECURITY_SCHEMES}
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if is_admin(path):
                operation["security"] = [{name: []} for name in ADMIN_SECURITY_SCHEMES]
                responses["401"] = EDGE_RESPONSES["admin401"]
                responses["403"] = EDGE_RESPONSES["admin403"]
            elif not is_public(path):
                operation["security"] = [{name: []} for name in SECURITY_SCHEMES]
                responses["401"] = EDGE_RESPONSES["401"]
            if "requestBody" in operation:
                responses["413"] = EDGE_RESPONSES["413"]
            if "422" in responses:
                responses["422"] = EDGE_RESPONSES["422"]
    tensor = schemas.get("TensorSpec", {}).get("properties", {}).get("dims")
    if tensor is not None and "$ref" not in tensor.get("items", {}):
        schemas["Dim"] = DIM_SCHEMA
        tensor["items"] = {"$ref": _SCHEMA_REF.format(model="Dim")}
    _integral_bounds(schema)
    # FastAPI's default 422 models describe a body this service never sends: drop them once nothing refers to them.
    for unused in ("HTTPValidationError", "ValidationError"):
        if unused in schemas and json.dumps(_SCHEMA_REF.format(model=unused)) not in json.dumps(schema):
            del schemas[unused]
    return schema


def install_docs(app: FastAPI, extra_models: Sequence[type[BaseModel]] = ()) -> None:
    """Serve /docs and /redoc from local assets (create the app with `docs_url=None, redoc_url=None`)."""
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            oauth2_redirect_url=f"{root}{oauth2_redirect_url}",
            # validatorUrl null: Swagger UI would otherwise call an online validator for non-local hosts.
            swagger_ui_parameters={"validatorUrl": None, **(app.swagger_ui_parameters or {})},
        )

    async def swagger_ui_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )

    app.add_route("/docs", swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_route(oauth2_redirect_url, swagger_ui_redirect, methods=["GET"], include_in_schema=False)
    app.add_route("/redoc", redoc, methods=["GET"], include_in_schema=False)

    generate_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_http_edge(generate_openapi(), extra_models)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
