"""Dockerfile, .dockerignore, docker-compose.yml and the nginx profile, checked without a Docker engine."""

from __future__ import annotations

import fnmatch
import re
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings

from .dockerfile import REPO, installed_requirements, parse

COMPOSE = REPO / "docker-compose.yml"
NGINX = REPO / "deploy" / "nginx.conf"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def answers(path: str) -> int:
    """Status of GET `path` on an app without models (probes need none)."""
    return TestClient(create_app(Settings(models_dir=REPO / "no-models-needed"))).get(path).status_code


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes."""
    excluded = False
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, f"{pattern}/*") or path.startswith(f"{pattern}/"):
            excluded = not negate
    return excluded


# ---- Dockerfile -------------------------------------------------------------------------------------------------
def test_multi_stage_on_python_311_slim() -> None:
    _, stages = parse()
    assert len(stages) >= 2
    assert all(stage.base.startswith("python:3.11-slim") for stage in stages)
    runtime = stages[-1]
    assert any("from" in flags for _, _, flags in runtime.copies()), "runtime copies the venv from the deps stage"


def test_dependencies_are_installed_before_code_is_copied() -> None:
    """The dependency layer depends on the lock only, so code or model changes reuse the cached layer."""
    _, stages = parse()
    deps = stages[0]
    copied = [source for sources, _, _ in deps.copies() for source in sources]
    assert copied == ["requirements/runtime.txt"]
    assert installed_requirements(stages) == REPO / "requirements" / "runtime.txt"


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    _, stages = parse()
    sources = [s for stage in stages for sources, _, flags in stage.copies() if "from" not in flags for s in sources]
    assert {"service/", "models/", "requirements/runtime.txt"} <= set(sources)
    for source in sources:
        assert (REPO / source).exists(), source
        assert not dockerignore_excludes(source.rstrip("/")), f"{source} is excluded by .dockerignore"
    for kept_out in ("training", "tests", ".venv", "data", "runs", "benchmarks"):
        assert dockerignore_excludes(kept_out), kept_out
    assert any((REPO / "models").glob("*/*/manifest.json")), "the image would carry no model"


def test_runtime_image_has_no_training_code() -> None:
    _, stages = parse()
    sources = {s.rstrip("/") for sources, _, _ in stages[-1].copies() for s in sources}
    assert "training" not in sources and "tests" not in sources
    lock = (REPO / "requirements" / "runtime.txt").read_text()
    assert not re.search(r"^(torch|onnx|onnxscript|tqdm|matplotlib)==", lock, flags=re.MULTILINE)


def test_lock_agrees_with_pyproject() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("lock_runtime", REPO / "scripts" / "lock_runtime.py")
    assert spec and spec.loader
    lock_runtime = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lock_runtime)
    assert lock_runtime.disagreements() == []
    assert set(lock_runtime.runtime_pins()) <= set(lock_runtime.lock_pins())


def test_non_root_exec_form_cmd_and_healthcheck() -> None:
    _, stages = parse()
    runtime = stages[-1]
    [user] = runtime.all("USER")
    assert user.args.split(":")[0] not in ("root", "0")
    [cmd] = runtime.all("CMD")
    assert cmd.exec_form() == ["python", "-m", "service"], "exec form: SIGTERM goes to the server itself"
    [health] = runtime.all("HEALTHCHECK")
    probe = health.exec_form()
    assert probe is not None and probe[:2] == ["python", "-c"], "python urllib: the slim image has no curl"
    assert "/health" in probe[2] and answers("/health") == 200
    env = " ".join(i.args for i in runtime.all("ENV"))
    assert "CELLSTATE_HOST=0.0.0.0" in env and "CELLSTATE_PORT=8000" in env
    assert "CELLSTATE_MODELS_DIR=/app/models" in env
    [expose] = runtime.all("EXPOSE")
    assert expose.args == "8000"


# ---- docker-compose.yml -----------------------------------------------------------------------------------------
def test_compose_api_service(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]
    assert (REPO / api["build"]["context"] / api["build"]["dockerfile"]).is_file()
    [port] = api["ports"]
    host, container = port.rsplit(":", 1)
    assert container == "8000" == str(api["environment"]["CELLSTATE_PORT"])
    assert host == "${CELLSTATE_API_PORTS:-8000}"
    assert api["restart"] in ("always", "unless-stopped", "on-failure")
    assert api["depends_on"]["redis"]["condition"] == "service_healthy"
    probe = api["healthcheck"]["test"]
    assert probe[0] == "CMD" and "http://127.0.0.1:8000/health" in " ".join(probe)
    # The grace period Docker gives after SIGTERM outlasts the server's own graceful-shutdown timeout.
    grace = int(str(api["stop_grace_period"]).removesuffix("s"))
    assert grace > Settings().graceful_shutdown_seconds


def test_compose_environment_names_real_settings(compose: dict[str, Any]) -> None:
    """Every CELLSTATE_* variable compose sets is a Settings field (a typo would be silently ignored)."""
    fields = {f"CELLSTATE_{name.upper()}" for name in Settings.model_fields}
    env = compose["services"]["api"]["environment"]
    assert set(env) <= fields, set(env) - fields
    assert env["CELLSTATE_SESSION_STORE"] == "redis"
    assert env["CELLSTATE_REDIS_URL"].startswith("redis://redis:6379")
    settings = Settings.model_validate(
        {k.removeprefix("CELLSTATE_").lower(): re.sub(r"\$\{\w+:-(.*)\}", r"\1", str(v)) for k, v in env.items()}
    )
    assert settings.api_keys == [] and settings.cors_origins == []


def test_compose_redis_and_scaled_profile(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert redis["healthcheck"]["test"][:2] == ["CMD", "redis-cli"]
    assert any(v.endswith(":/data") for v in redis["volumes"])
    lb = compose["services"]["lb"]
    assert lb["profiles"] == ["scaled"]
    assert lb["depends_on"]["api"]["condition"] == "service_healthy"
    [mount] = lb["volumes"]
    source, target, *_ = mount.split(":")
    assert (REPO / source).resolve() == NGINX and target == "/etc/nginx/conf.d/default.conf"
    assert "/health" in " ".join(lb["healthcheck"]["test"])
    for name in compose.get("volumes", {}):
        assert any(v.startswith(f"{name}:") for s in compose["services"].values() for v in s.get("volumes", []))


def test_nginx_balances_over_the_api_service() -> None:
    conf = NGINX.read_text()
    assert conf.count("{") == conf.count("}")
    assert re.search(r"server\s+api:8000\s+resolve;", conf), "upstream must be compose's api service, re-resolved"
    assert re.search(r"proxy_pass\s+http://cellstate_api;", conf)
    assert "X-Request-ID" in conf and "resolver 127.0.0.11" in conf
