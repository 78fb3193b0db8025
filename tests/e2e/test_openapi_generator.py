"""The client openapi-generator's `python` generator makes from the committed openapi.json, against a live server:
every operation of the spec is called through it (the streaming one through its raw-response call, its Server-Sent
Events parsed with the generated models the spec names for each event's data), and each deterministic answer is
compared with the server's plain-JSON answer to the same request (httpx), so a client that parses a body wrongly
fails, not only one that raises.

openapi-generator-cli (pinned in the dev extra) runs the jar it ships on the machine's Java (17; .ci/run installs
Debian's openjdk-17-jre-headless). The generated package is cached in `.cache/openapi-generator-python/<hash of
openapi.json, the generator version and its options>/` (gitignored; CELLSTATE_TEST_CACHE=0 regenerates) and imported
from there through sys.path: its runtime (urllib3, pydantic, python-dateutil, typing-extensions) is in the dev venv,
which a test checks against the generated requirements.txt. The server runs the tiny test models of every family,
with an API key and an admin key, so both security schemes are exercised.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from packaging.requirements import Requirement

from tests.live_server import live_server
from tests.openapi_examples import schema_examples

REPO = Path(__file__).resolve().parents[2]
SPEC_PATH = REPO / "openapi.json"
CACHE = REPO / ".cache" / "openapi-generator-python"
PACKAGE = "cellstate_oag"
GENERATOR = "openapi-generator-cli"
GENERATOR_OPTIONS = [
    "--generator-name",
    "python",
    "--additional-properties",
    f"packageName={PACKAGE}",
    "--global-property",
    "apiTests=false,modelTests=false,apiDocs=false,modelDocs=false",
]
API_KEY = "oag-api-key"
ADMIN_KEY = "oag-admin-key"
SPEC: dict[str, Any] = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
# (METHOD, path template) of every operation the generated client sent; checked against the spec at the end.
CALLED: set[tuple[str, str]] = set()


def java() -> str:
    found = shutil.which("java")
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("java is required in CI (.ci/run installs Debian's openjdk-17-jre-headless)")
        pytest.skip("java not installed (apt-get install openjdk-17-jre-headless)")
    return found


def generated_project() -> Path:
    """The generated client project, from the cache while openapi.json, the generator and its options are unchanged."""
    version = importlib.metadata.version(GENERATOR)
    key = hashlib.sha256(SPEC_PATH.read_bytes() + f"\0{version}\0{GENERATOR_OPTIONS}".encode()).hexdigest()[:16]
    target = CACHE / key
    if os.environ.get("CELLSTATE_TEST_CACHE", "1") != "0" and (target / ".complete").is_file():
        return target
    java()
    building = CACHE / f"{key}.building-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    command = [Path(sys.executable).parent / GENERATOR, "generate", "--input-spec", SPEC_PATH, *GENERATOR_OPTIONS]
    result = subprocess.run([*map(str, command), "--output", str(building)], capture_output=True, text=True)
    if result.returncode != 0:
        shutil.rmtree(building, ignore_errors=True)
        pytest.fail(f"openapi-generator {version} failed on openapi.json:\n{(result.stdout + result.stderr)[-5000:]}")
    (building / ".complete").write_text(f"{GENERATOR} {version}\n", encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    try:
        building.rename(target)
    except OSError:  # another run finished the same client first
        shutil.rmtree(building, ignore_errors=True)
        if not (target / ".complete").is_file():
            raise
    for stale in CACHE.iterdir():  # keep only the current client
        if stale != target and ".building-" not in stale.name:
            shutil.rmtree(stale, ignore_errors=True)
    return target


@pytest.fixture(scope="module")
def project() -> Path:
    return generated_project()


@pytest.fixture(scope="module")
def oag(project: Path) -> Iterator[ModuleType]:
    """The generated package, imported from the cache; its ApiClient records each operation it sends."""
    sys.path.insert(0, str(project))
    try:
        package = importlib.import_module(PACKAGE)
        original = package.ApiClient.param_serialize

        def recording(self: Any, method: str, resource_path: str, *args: Any, **kwargs: Any) -> Any:
            CALLED.add((method.upper(), resource_path))
            return original(self, method, resource_path, *args, **kwargs)

        package.ApiClient.param_serialize = recording
        yield package
    finally:
        sys.path.remove(str(project))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def models(oag: ModuleType) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.models")


@pytest.fixture(scope="module")
def errors(oag: ModuleType) -> ModuleType:
    """The generated exceptions (NotFoundException, UnprocessableEntityException, ...), each carrying the typed body."""
    return importlib.import_module(f"{PACKAGE}.exceptions")


@pytest.fixture(scope="module")
def server(
    models_dir: Path,
    sentiment_models_dir: Path,
    forecast_models_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    root = tmp_path_factory.mktemp("oag-models")
    for family, source in (
        ("wordlm", models_dir),
        ("sentiment", sentiment_models_dir),
        ("forecast", forecast_models_dir),
    ):
        shutil.copytree(source / family, root / family)
    env = {
        **os.environ,
        "CELLSTATE_MODELS_DIR": str(root),
        "CELLSTATE_API_KEYS": API_KEY,
        "CELLSTATE_ADMIN_KEYS": ADMIN_KEY,
        "CELLSTATE_INTRA_OP_THREADS": "1",
        "CELLSTATE_ACCESS_LOG": "false",
    }
    log = tmp_path_factory.mktemp("oag-server") / "server.log"
    with live_server(sys.executable, cwd=REPO, env=env, log_file=log) as (url, _):
        yield url
    assert "Traceback" not in log.read_text(errors="replace"), log.read_text(errors="replace")[-5000:]


@pytest.fixture(scope="module")
def api(oag: ModuleType, server: str) -> Iterator[Any]:
    config = oag.Configuration(host=server, access_token=API_KEY, api_key={"AdminKeyHeader": ADMIN_KEY})
    with oag.ApiClient(config) as client:
        yield client


@pytest.fixture(scope="module")
def plain(server: str) -> Iterator[httpx.Client]:
    """The same server without the generated client: the answers to compare with."""
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30) as client:
        yield client


def operation(oag: ModuleType, api: Any, operation_id: str) -> Callable[..., Any]:
    """The generated method for an operationId, whichever tag's Api class the generator put it in."""
    for name in dir(oag):
        cls = getattr(oag, name)
        if name.endswith("Api") and isinstance(cls, type) and hasattr(cls, operation_id):
            return getattr(cls(api), operation_id)
    raise AssertionError(f"the generated client has no method for operationId {operation_id}")


def plain_json(plain: httpx.Client, method: str, path: str, body: Any = None, **params: Any) -> Any:
    response = plain.request(method, path, json=body, params=params or None)
    assert response.status_code < 300, response.text
    return response.json()


def as_json(value: Any) -> Any:
    """A generated model (or a list/dict of them) as the JSON it was parsed from."""
    if isinstance(value, list):
        return [as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    return value.to_dict() if hasattr(value, "to_dict") else value


def sse_events(response: Any) -> list[tuple[str, str]]:
    """(event, data) of each Server-Sent Event read from a raw urllib3 response, as the bytes arrive."""
    events, buffer = [], b""
    for chunk in response.stream(256):
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            fields: dict[str, list[str]] = {}
            for line in block.decode("utf-8").splitlines():
                if line and not line.startswith(":"):
                    name, _, value = line.partition(":")
                    fields.setdefault(name, []).append(value.removeprefix(" "))
            events.append(("".join(fields.get("event", ["message"])), "\n".join(fields.get("data", []))))
    assert not buffer.strip(), f"the stream ended inside an event: {buffer!r}"
    return events


def stream_through_the_client(oag: ModuleType, models: ModuleType, api: Any, body: Any) -> list[tuple[str, Any]]:
    """Call generate_stream raw and parse each event's data with the generated model the spec names for it."""
    media = SPEC["paths"]["/generate/stream"]["post"]["responses"]["200"]["content"]["text/event-stream"]
    schemas = {
        e["properties"]["event"]["const"]: e["properties"]["data"]["contentSchema"]["$ref"].rsplit("/", 1)[-1]
        for e in media["schema"]["anyOf"]
        if e.get("type") == "object"
    }
    response = operation(oag, api, "generate_stream_without_preload_content")(body)
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    parsed = []
    for event, data in sse_events(response):
        assert event in schemas, f"event {event!r} is not among the spec's events {sorted(schemas)}"
        model = getattr(models, schemas[event])
        value = model.from_json(data)
        assert value.to_dict() == json.loads(data), f"{schemas[event]} lost part of {data}"
        parsed.append((event, value))
    return parsed


def spec_operations() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in SPEC["paths"].items() for method in item if method in METHODS}


# ---- operations ----------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_probes_and_models_match_the_plain_answers(
    oag: ModuleType, models: ModuleType, api: Any, plain: httpx.Client
) -> None:
    health = operation(oag, api, "health")()
    assert isinstance(health, models.HealthResponse) and health.status == "ok"
    assert as_json(health) == plain_json(plain, "GET", "/health")
    ready = operation(oag, api, "ready")()
    assert isinstance(ready, models.ReadyResponse) and ready.ready is True
    assert set(ready.models) == {"wordlm", "sentiment", "forecast"}
    assert as_json(ready) == plain_json(plain, "GET", "/ready")

    listed = operation(oag, api, "models")()
    assert all(isinstance(info, models.ModelInfo) for info in listed)
    assert as_json(listed) == plain_json(plain, "GET", "/models")  # the Dim union (str | int) round-trips too
    for info in listed:
        versions = operation(oag, api, "family_versions")(info.family)
        assert isinstance(versions, models.FamilyVersions) and versions.family == info.family
        assert info.version in [v.version for v in versions.versions]
        assert versions.limits == info.limits  # the limits GET /models reports, per family too
        assert as_json(versions) == plain_json(plain, "GET", f"/models/{info.family}")


@pytest.mark.e2e
def test_generate_and_its_stream_agree_with_the_plain_answers(
    oag: ModuleType, models: ModuleType, api: Any, plain: httpx.Client
) -> None:
    request = {"prompt": "the cat sat", "max_new_tokens": 6, "seed": 3, "temperature": 0.9, "ignore_eos": True}
    answer = operation(oag, api, "generate")(models.GenerateRequest.from_dict(request))
    assert isinstance(answer, models.GenerateResponse)
    assert answer.finish_reason == "length" and answer.usage.completion_tokens == 6 and answer.text
    assert as_json(answer) == plain_json(plain, "POST", "/generate", request)

    events = stream_through_the_client(oag, models, api, models.GenerateStreamRequest.from_dict(request))
    names = [event for event, _ in events]
    assert names[-1] == "done" and set(names[:-1]) == {"token"}, names
    done = events[-1][1]
    assert "".join(value.text for _, value in events[:-1]) == answer.text  # same seed: the same text, streamed
    assert (done.finish_reason, done.usage, done.model, done.session_id) == (
        answer.finish_reason,
        answer.usage,
        answer.model,
        None,
    )
    # The typed call has no body model for a stream (only its events have one): its raw bytes are the stream.
    whole = operation(oag, api, "generate_stream_with_http_info")(models.GenerateStreamRequest.from_dict(request))
    assert (
        whole.status_code == 200 and whole.raw_data.decode("utf-8") == plain.post("/generate/stream", json=request).text
    )


@pytest.mark.e2e
def test_text_and_inspection_operations_match_the_plain_answers(
    oag: ModuleType, models: ModuleType, api: Any, plain: httpx.Client
) -> None:
    request: dict[str, Any] = {"text": "the cat sat on the", "k": 3}
    words = operation(oag, api, "next_word")(models.NextWordRequest.from_dict(request))
    assert isinstance(words, models.NextWordResponse)
    assert as_json(words) == plain_json(plain, "POST", "/next-word", request)

    for request in (
        {"text": "the cat sat", "top_k_neurons": 3},
        {"text": "the dog sat", "layer": 0, "neurons": [0, 1, 2], "gates": True},
    ):
        inspected = operation(oag, api, "inspect_activations")(models.InspectRequest.from_dict(request))
        assert isinstance(inspected, models.InspectResponse)
        assert as_json(inspected) == plain_json(plain, "POST", "/inspect", request)

    neighbors = operation(oag, api, "embedding_neighbors")(word="cat", k=3)
    assert isinstance(neighbors, models.NeighborsResponse)
    assert as_json(neighbors) == plain_json(plain, "GET", "/embeddings/neighbors", word="cat", k=3)


@pytest.mark.e2e
def test_sentiment_and_forecast_match_the_plain_answers(
    oag: ModuleType, models: ModuleType, api: Any, plain: httpx.Client
) -> None:
    request: dict[str, Any] = {"texts": ["a gorgeous, witty, seductive movie.", "nothing but boilerplate."]}
    sentiment = operation(oag, api, "sentiment")(models.SentimentRequest.from_dict(request))
    assert isinstance(sentiment, models.SentimentResponse) and len(sentiment.results) == 2
    for item in sentiment.results:
        assert item.label in item.probabilities and abs(sum(item.probabilities.values()) - 1) < 1e-4
    assert as_json(sentiment) == plain_json(plain, "POST", "/sentiment", request)

    request = schema_examples(SPEC["components"]["schemas"]["ForecastRequest"])[0]  # a valid request (test_openapi)
    forecast = operation(oag, api, "forecast")(models.ForecastRequest.from_dict(request))
    assert isinstance(forecast, models.ForecastResponse)
    assert as_json(forecast) == plain_json(plain, "POST", "/forecast", request)


@pytest.mark.e2e
def test_sessions_through_the_client_continue_as_plain_ones_do(
    oag: ModuleType, errors: ModuleType, models: ModuleType, api: Any, plain: httpx.Client
) -> None:
    """Two sessions with the same seed, one driven by the client and one by plain JSON, produce the same text."""
    create = operation(oag, api, "create_session")
    session = create(models.CreateSessionRequest(model="wordlm", seed=11))
    twin = plain.post("/sessions", json={"model": "wordlm", "seed": 11})
    assert twin.status_code == 201, twin.text
    twin_id = twin.json()["session_id"]
    assert isinstance(session, models.SessionInfo) and session.family == "wordlm"
    assert as_json(session.model) == twin.json()["model"]

    got = operation(oag, api, "get_session")(session.session_id)
    assert isinstance(got, models.SessionInfo)
    assert (got.session_id, got.model, got.created_at, got.expires_at) == (
        session.session_id,
        session.model,
        session.created_at,
        session.expires_at,
    )

    steps: list[dict[str, Any]] = [
        {"prompt": "the queen said", "max_new_tokens": 4, "ignore_eos": True},
        {"max_new_tokens": 3, "ignore_eos": True},  # continues where the session stopped
    ]
    for step in steps:
        mine = operation(oag, api, "generate")(
            models.GenerateRequest.from_dict({**step, "session_id": session.session_id})
        )
        theirs = plain_json(plain, "POST", "/generate", {**step, "session_id": twin_id})
        assert mine.session_id == session.session_id
        assert {**as_json(mine), "session_id": twin_id} == theirs
    streamed = stream_through_the_client(
        oag, models, api, models.GenerateStreamRequest(session_id=session.session_id, max_new_tokens=3, ignore_eos=True)
    )
    theirs = plain_json(plain, "POST", "/generate", {"session_id": twin_id, "max_new_tokens": 3, "ignore_eos": True})
    assert "".join(v.text for e, v in streamed if e == "token") == theirs["text"]
    assert streamed[-1][1].session_id == session.session_id and streamed[-1][1].usage.to_dict() == theirs["usage"]

    assert operation(oag, api, "delete_session")(session.session_id) is None  # 204
    assert plain.delete(f"/sessions/{twin_id}").status_code == 204
    with pytest.raises(errors.NotFoundException) as gone:
        operation(oag, api, "get_session")(session.session_id)
    assert gone.value.status == 404
    assert isinstance(gone.value.data, models.ErrorResponse) and gone.value.data.error == "session_not_found"


@pytest.mark.e2e
def test_admin_reload_with_the_admin_key(
    oag: ModuleType, errors: ModuleType, models: ModuleType, api: Any, server: str
) -> None:
    reloaded = operation(oag, api, "reload_models")()
    assert isinstance(reloaded, models.ReloadResponse)
    assert reloaded.serving == {"wordlm": 1, "sentiment": 1, "forecast": 1} and reloaded.failures == {}
    plain = httpx.post(f"{server}/admin/reload", headers={"X-Admin-Key": ADMIN_KEY}, timeout=30)
    assert plain.status_code == 200 and as_json(reloaded) == plain.json()

    api_key_only = oag.ApiClient(oag.Configuration(host=server, access_token=API_KEY))
    with pytest.raises(errors.UnauthorizedException) as refused:
        operation(oag, api_key_only, "reload_models")()
    assert isinstance(refused.value.data, models.ErrorResponse) and refused.value.data.error == "unauthorized"


# ---- errors and bounds ---------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_errors_arrive_typed(oag: ModuleType, errors: ModuleType, models: ModuleType, api: Any, server: str) -> None:
    anonymous = oag.ApiClient(oag.Configuration(host=server))
    with pytest.raises(errors.UnauthorizedException) as unauthorized:
        operation(oag, anonymous, "generate")(models.GenerateRequest(prompt="the cat"))
    assert isinstance(unauthorized.value.data, models.ErrorResponse)
    assert unauthorized.value.data.error == "unauthorized"
    assert operation(oag, anonymous, "health")().status == "ok"  # security: [] on the probes

    # The client checks bounds itself; model_construct skips that, so that the server's 422 is seen too.
    with pytest.raises(errors.UnprocessableEntityException) as invalid:
        operation(oag, api, "generate")(models.GenerateRequest.model_construct(prompt="the cat", max_new_tokens=0))
    body = invalid.value.data
    assert isinstance(body, models.ValidationErrorResponse) and body.error == "validation_error"
    assert [detail.var_field for detail in body.detail] == ["max_new_tokens"]

    with pytest.raises(errors.NotFoundException) as unknown:  # a 404 before the stream starts: JSON, typed
        operation(oag, api, "generate_stream_with_http_info")(
            models.GenerateStreamRequest(session_id="x" * 24, max_new_tokens=2)
        )
    assert isinstance(unknown.value.data, models.ErrorResponse) and unknown.value.data.error == "session_not_found"


@pytest.mark.e2e
def test_the_clients_limits_are_the_servers(oag: ModuleType, models: ModuleType, api: Any) -> None:
    """The bounds the client enforces are those the server enforces and GET /models/{family} reports."""
    limit = operation(oag, api, "family_versions")("wordlm").limits["max_new_tokens"]
    with pytest.raises(ValueError, match="max_new_tokens"):  # pydantic's ValidationError is a ValueError
        models.GenerateRequest(prompt="x", max_new_tokens=limit + 1)
    assert models.GenerateRequest(prompt="x", max_new_tokens=limit).max_new_tokens == limit
    seed = SPEC["components"]["schemas"]["GenerateRequest"]["properties"]["seed"]["anyOf"][0]["maximum"]
    with pytest.raises(ValueError, match="seed"):
        models.GenerateRequest(prompt="x", seed=seed + 1)
    answer = operation(oag, api, "generate")(models.GenerateRequest(prompt="the cat", max_new_tokens=1, seed=seed))
    assert answer.usage.completion_tokens == 1


@pytest.mark.e2e
def test_a_session_seed_at_the_specs_maximum_is_accepted(
    oag: ModuleType, errors: ModuleType, models: ModuleType, api: Any
) -> None:
    seed = SPEC["components"]["schemas"]["CreateSessionRequest"]["properties"]["seed"]["anyOf"][0]["maximum"]
    assert seed == 2**53 - 1, "every JSON client carries the seed bound exactly"
    session = operation(oag, api, "create_session")(models.CreateSessionRequest(model="wordlm", seed=seed))
    assert operation(oag, api, "delete_session")(session.session_id) is None


# ---- the client itself ---------------------------------------------------------------------------------------


def test_the_generated_clients_runtime_is_installed(project: Path) -> None:
    lines = (project / "requirements.txt").read_text(encoding="utf-8").splitlines()
    requirements = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    assert requirements, "the generated requirements.txt lists nothing"
    for requirement in requirements:
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"the generated client needs {requirement}: pin it in pyproject.toml's dev extra")
        assert requirement.specifier.contains(installed, prereleases=True), f"{requirement.name} {installed}"


@pytest.mark.e2e
def test_every_operation_of_the_spec_was_called(request: pytest.FixtureRequest) -> None:
    """Runs last in this module: each operation of openapi.json went through the generated client above."""
    here = {item.name for item in request.session.items if getattr(item, "module", None) is request.module}
    tests = {name for name in dir(request.module) if name.startswith("test_")}
    if not tests <= {re.sub(r"\[.*", "", name) for name in here}:
        pytest.skip("only part of this module ran")
    assert spec_operations() - CALLED == set(), "operations of openapi.json that no test here called"
