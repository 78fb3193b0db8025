"""The OpenAPI document: committed and current, and every operation fully described (models, examples, errors)."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter

from service.app import create_app
from service.config import Settings
from service.families.registry import FAMILIES
from service.security import is_public
from tests.openapi_examples import schema_examples

REPO = Path(__file__).resolve().parents[1]


def _load_exporter() -> Any:
    spec = importlib.util.spec_from_file_location("export_openapi", REPO / "scripts" / "export_openapi.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


exporter = _load_exporter()


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    document: dict[str, Any] = exporter.current_spec()
    return document


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    """Every APIRoute, including those of included routers."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):  # FastAPI's included-router wrapper
            yield from api_routes(route.original_router.routes)
        elif hasattr(route, "routes"):
            yield from api_routes(route.routes)


def component(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    if schema.get("type") == "array":
        schema = schema["items"]
    ref = schema.get("$ref", "")
    assert ref.startswith("#/components/schemas/"), f"not a named model: {schema}"
    found: dict[str, Any] = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return found


def test_committed_spec_is_current(spec: dict[str, Any]) -> None:
    committed = (REPO / "openapi.json").read_text(encoding="utf-8")
    assert committed == exporter.render(spec), "openapi.json is stale: run `make openapi` and commit it"


def test_spec_is_served_and_matches(spec: dict[str, Any]) -> None:
    from fastapi.testclient import TestClient

    served = TestClient(create_app(Settings(models_dir=REPO / "models"))).get("/openapi.json").json()
    assert json.dumps(served, sort_keys=True) == json.dumps(spec, sort_keys=True)


def test_every_operation_has_models_examples_and_errors(spec: dict[str, Any]) -> None:
    errors = spec["components"]["schemas"]
    assert {"ErrorResponse", "ValidationErrorResponse"} <= errors.keys()
    assert "HTTPValidationError" not in errors, "422 bodies are ValidationErrorResponse, not FastAPI's default"
    for path, method, op in operations(spec):
        where = f"{method.upper()} {path}"
        assert op.get("operationId") and op.get("summary") and op.get("description"), where
        responses = op["responses"]
        [success] = [code for code in responses if code.startswith("2")]
        if success != "204":
            content = responses[success]["content"]
            if "text/event-stream" in content:  # a stream: each event's data is a named schema
                branches = content["text/event-stream"]["schema"]["anyOf"]
                events = [b for b in branches if b.get("type") == "object"]
                refs = [e["properties"]["data"]["contentSchema"]["$ref"] for e in events]
                assert refs and all(ref.split("/")[-1] in errors for ref in refs), where
            else:
                schema = content["application/json"]["schema"]
                assert schema_examples(component(spec, schema)), f"{where}: response model has no examples"
        if "requestBody" in op:
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            assert schema_examples(component(spec, schema)), f"{where}: request model has no examples"
            assert "413" in responses, where
        if "requestBody" in op or op.get("parameters"):
            assert responses["422"]["content"]["application/json"]["schema"]["$ref"].endswith(
                "/ValidationErrorResponse"
            ), where
        if not is_public(path):
            assert "401" in responses and op["security"], f"{where}: API-key protection undocumented"
        for code, response in responses.items():
            if code[0] in "45":
                assert response["content"]["application/json"]["schema"]["$ref"].endswith("Response"), where


def test_model_backed_operations_document_503(spec: dict[str, Any]) -> None:
    """Every route of every family (service/families/registry.py) answers 503 while no model of it is loaded."""
    checked = 0
    for family in FAMILIES:
        for route in api_routes(family.router.routes):
            for method in route.methods or ():
                operation = spec["paths"][route.path][method.lower()]
                assert "503" in operation["responses"], f"{family.name}: {method} {route.path}"
                checked += 1
    assert checked >= len(FAMILIES)


def test_examples_are_valid_requests_and_responses() -> None:
    """Each example in the spec is accepted by the model it illustrates (strict requests included)."""
    app = create_app(Settings(models_dir=REPO / "models"))
    checked = 0
    for route in api_routes(app.routes):
        models: list[type[BaseModel]] = []
        if route.body_field is not None:
            body = route.body_field.field_info.annotation
            assert isinstance(body, type) and issubclass(body, BaseModel), route.path
            models.append(body)
        if isinstance(route.response_model, type) and issubclass(route.response_model, BaseModel):
            models.append(route.response_model)
        for model in models:
            examples = schema_examples(model.model_json_schema())
            assert examples, f"{route.path}: {model.__name__} has no examples"
            for example in examples:
                # JSON round trip: strict models accept what a client would really send.
                TypeAdapter(model).validate_json(json.dumps(example))
                checked += 1
    assert checked >= 6


def test_security_schemes(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["BearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["BearerAuth"]["description"],
    }
    assert schemes["APIKeyHeader"]["name"] == "X-API-Key" and schemes["APIKeyHeader"]["in"] == "header"
    for public in ("/health", "/ready"):
        assert spec["paths"][public]["get"]["security"] == [], f"{public} needs no key: `security: []`"
