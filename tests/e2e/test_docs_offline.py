"""/docs and /redoc render their operations in headless Chromium with every host but loopback unreachable:
the pages' scripts and styles come from the service itself, not a CDN."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.live_server import live_server

pytestmark = pytest.mark.e2e  # every test here calls a real server

REPO = Path(__file__).resolve().parents[2]
# Chromium flags: headless, no sandbox (root in CI), no background traffic, a throwaway profile. Every host name
# resolves to nothing except 127.0.0.1, so a page that needed a CDN would fail to render.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--virtual-time-budget=20000",  # let the page's JavaScript run (fetch the spec, render) before dumping
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is required in CI (.ci/run installs Debian's chromium package)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return found


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # The docs need no model: serve an empty models directory, wait for /health instead of /ready.
    empty = tmp_path_factory.mktemp("no-models")
    env = {**os.environ, "CELLSTATE_MODELS_DIR": str(empty), "CELLSTATE_API_KEYS": "docs-test-key"}
    with live_server(sys.executable, cwd=REPO, env=env, ready_path="/health") as (url, _):
        yield url


def rendered_dom(url: str, tmp_path: Path) -> str:
    result = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def operation_ids() -> list[str]:
    spec = json.loads((REPO / "openapi.json").read_text(encoding="utf-8"))
    return [op["operationId"] for methods in spec["paths"].values() for op in methods.values()]


def test_pages_reference_only_local_assets(docs_server: str) -> None:
    for page in ("/docs", "/redoc"):
        html = httpx.get(f"{docs_server}{page}", timeout=5).text
        assert not re.findall(r"(?:src|href)=[\"']?(?:https?:)?//", html), f"{page} loads something remote"
        for asset in re.findall(r"(?:src|href)=[\"']?(/docs-assets/[^\"' >]+)", html):
            assert httpx.get(f"{docs_server}{asset}", timeout=5).status_code == 200, asset


def test_swagger_ui_renders_every_operation_offline(docs_server: str, tmp_path: Path) -> None:
    dom = rendered_dom(f"{docs_server}/docs", tmp_path)
    rendered = set(re.findall(r'id="operations-[^"-]+-([^"]+)"', dom))
    assert rendered >= set(operation_ids()), sorted(set(operation_ids()) - rendered)
    assert "/generate" in dom and "Authorize" in dom  # paths and the API-key dialog


def test_redoc_renders_every_operation_offline(docs_server: str, tmp_path: Path) -> None:
    dom = rendered_dom(f"{docs_server}/redoc", tmp_path)
    rendered = set(re.findall(r"operation/([A-Za-z0-9_]+)", dom))
    assert rendered >= set(operation_ids()), sorted(set(operation_ids()) - rendered)
