"""Examples of a request or response body, as the OpenAPI document gives them: the schema's own `examples`, or
else one body assembled from its properties' examples (when every required property has one)."""

from __future__ import annotations

from typing import Any


def schema_examples(schema: dict[str, Any]) -> list[dict[str, Any]]:
    if schema.get("examples"):
        return list(schema["examples"])
    properties: dict[str, Any] = schema.get("properties", {})
    body = {name: prop["examples"][0] for name, prop in properties.items() if prop.get("examples")}
    if body and set(schema.get("required", [])) <= body.keys():
        return [body]
    return []
