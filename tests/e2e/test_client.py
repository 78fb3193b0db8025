"""The Python client generated from the committed openapi.json (openapi-python-client), against a live server.

The client is generated into a temporary directory once per session. The families come from the registry
(service/families/registry.py): each one is served when a tiny test model of it exists (a `<family>_models_dir`
fixture, or the shared `models_dir`, holding `<family>/`) and the spec has one of its routes; the server runs with
an API key, so the client's bearer authentication is exercised too.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from service.families.registry import FAMILIES
from service.family import Family
from tests.live_server import live_server
from tests.openapi_examples import schema_examples

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
API_KEY = "e2e-client-key"
PACKAGE = "cellstate_client"


def routes_of(family: Family) -> list[APIRoute]:
    return [route for route in family.router.routes if isinstance(route, APIRoute)]


def tiny_models(request: pytest.FixtureRequest, family: Family) -> Path | None:
    """The models directory of a fixture that trains a tiny model of this family, if there is one."""
    for fixture in (f"{family.name}_models_dir", "models_dir"):
        try:
            source: Path = request.getfixturevalue(fixture)
        except pytest.FixtureLookupError:
            continue
        if (source / family.name).is_dir():
            return source
    return None


@pytest.fixture(scope="session")
def generated_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    out = tmp_path_factory.mktemp("client")
    config = REPO / "clients" / "openapi-python-client.yaml"  # the same settings as `make client`
    generator = Path(sys.executable).parent / "openapi-python-client"
    subprocess.run(
        [generator, "generate", "--path", REPO / "openapi.json", "--output-path", out / "project", "--config", config],
        check=True,
        capture_output=True,
    )
    sys.path.insert(0, str(out / "project"))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(out / "project"))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def served_families(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str]]:
    """One models directory holding every family that has a tiny test model in this checkout."""
    root = tmp_path_factory.mktemp("client-models")
    families = set()
    paths = json.loads((REPO / "openapi.json").read_text(encoding="utf-8"))["paths"]
    for family in FAMILIES:
        if not any(route.path in paths for route in routes_of(family)):
            continue  # no client operation to call: do not train its model
        source = tiny_models(request, family)
        if source is not None:
            shutil.copytree(source / family.name, root / family.name)
            families.add(family.name)
    return root, families


@pytest.fixture(scope="module")
def server(served_families: tuple[Path, set[str]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    models, _ = served_families
    env = {**os.environ, "CELLSTATE_MODELS_DIR": str(models), "CELLSTATE_API_KEYS": API_KEY}
    env["CELLSTATE_INTRA_OP_THREADS"] = "1"
    log = tmp_path_factory.mktemp("client-server") / "server.log"
    with live_server(sys.executable, cwd=REPO, env=env, log_file=log) as (url, _):
        yield url


@pytest.fixture
def api(generated_client: ModuleType, server: str) -> Any:
    return generated_client.AuthenticatedClient(base_url=server, token=API_KEY, raise_on_unexpected_status=True)


def need(family: str, operation: str, served_families: tuple[Path, set[str]], client: ModuleType) -> ModuleType:
    """The generated operation module, or skip when this checkout has no model or no route for the family."""
    if family not in served_families[1]:
        pytest.skip(f"no tiny {family} test model in this checkout, or openapi.json has no operation for it yet")
    [served] = [f for f in FAMILIES if f.name == family]
    for tag_module in sorted({str(tag) for route in routes_of(served) for tag in route.tags}):
        try:
            return importlib.import_module(f"{client.__name__}.api.{tag_module}.{operation}")
        except ModuleNotFoundError:
            continue
    pytest.skip(f"openapi.json has no {operation} operation yet")


def test_generate_through_the_client(
    generated_client: ModuleType, api: Any, served_families: tuple[Path, set[str]]
) -> None:
    generate = need("wordlm", "generate", served_families, generated_client)
    models = importlib.import_module(f"{PACKAGE}.models")
    body = models.GenerateRequest(prompt="the cat sat", max_new_tokens=5, seed=1, ignore_eos=True)
    first = generate.sync(client=api, body=body)
    assert isinstance(first, models.GenerateResponse)
    assert first.finish_reason == models.GenerateResponseFinishReason.LENGTH
    assert first.usage.completion_tokens == 5 and first.model.version >= 1
    assert generate.sync(client=api, body=body).text == first.text  # same seed, same text

    bad = generate.sync_detailed(client=api, body=models.GenerateRequest(prompt="the cat", max_new_tokens=0))
    assert bad.status_code == 422
    assert isinstance(bad.parsed, models.ValidationErrorResponse)
    assert bad.parsed.detail[0].field == "max_new_tokens"


def test_client_without_key_gets_a_parsed_401(
    generated_client: ModuleType, server: str, served_families: tuple[Path, set[str]]
) -> None:
    generate = need("wordlm", "generate", served_families, generated_client)
    models = importlib.import_module(f"{PACKAGE}.models")
    anonymous = generated_client.Client(base_url=server)
    response = generate.sync_detailed(client=anonymous, body=models.GenerateRequest(prompt="the cat"))
    assert response.status_code == 401
    assert isinstance(response.parsed, models.ErrorResponse) and response.parsed.error == "unauthorized"


def test_sentiment_through_the_client(
    generated_client: ModuleType, api: Any, served_families: tuple[Path, set[str]]
) -> None:
    sentiment = need("sentiment", "sentiment", served_families, generated_client)
    models = importlib.import_module(f"{PACKAGE}.models")
    texts = ["a gorgeous, witty, seductive movie.", "the plot is nothing but boilerplate."]
    result = sentiment.sync(client=api, body=models.SentimentRequest(texts=texts))
    assert isinstance(result, models.SentimentResponse)
    assert len(result.results) == 2
    for item in result.results:
        probabilities = item.probabilities.to_dict()
        assert item.label in probabilities and abs(sum(probabilities.values()) - 1) < 1e-4


def test_forecast_through_the_client_equals_the_plain_json_answer(
    generated_client: ModuleType, api: Any, server: str, served_families: tuple[Path, set[str]]
) -> None:
    forecast = need("forecast", "forecast", served_families, generated_client)
    models = importlib.import_module(f"{PACKAGE}.models")
    # The request's documented example is a valid request (tests/test_openapi.py checks every example).
    spec = json.loads((REPO / "openapi.json").read_text(encoding="utf-8"))
    example = schema_examples(spec["components"]["schemas"]["ForecastRequest"])[0]
    result = forecast.sync(client=api, body=models.ForecastRequest.from_dict(example))
    assert isinstance(result, models.ForecastResponse)
    plain = httpx.post(f"{server}/forecast", json=example, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30)
    assert plain.status_code == 200, plain.text
    assert result.to_dict() == plain.json()
    assert len(result.median) == example["horizon"]
