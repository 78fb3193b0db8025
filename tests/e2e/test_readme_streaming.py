"""The README's streaming examples run as written: the Python one (httpx) in this process, the browser one (fetch and
a stream reader) in headless Chromium, both against a real server, and both see the text /generate gives."""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_docs_offline import chromium
from tests.e2e.test_playground import DevTools
from tests.live_server import live_server

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
pytestmark = pytest.mark.e2e
BODY = {"prompt": "The Queen said", "max_new_tokens": 30}


def snippet(language: str, marker: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)
    [block] = [b for b in blocks if marker in b]
    return str(block)


@pytest.fixture(scope="module")
def server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {**os.environ, "CELLSTATE_MODELS_DIR": str(models_dir), "CELLSTATE_LOG_LEVEL": "warning"}
    log = tmp_path_factory.mktemp("readme-streaming") / "server.log"
    with live_server(sys.executable, REPO, env, log_file=log) as (url, _):
        yield url


def whole_text(url: str) -> str:
    # The examples sample (temperature 1, no seed): compare shape, and compare text only where it is determined.
    answer = httpx.post(f"{url}/generate", json={**BODY, "temperature": 0}, timeout=30).json()
    return str(answer["text"])


def test_python_example(server: str) -> None:
    code = snippet("python", "/generate/stream").replace("http://localhost:8000", server)
    code = code.replace('"max_new_tokens": 30}', '"max_new_tokens": 30, "temperature": 0}')
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md (python streaming example)", "exec"), {})
    printed = out.getvalue()
    text, _, last = printed.rstrip("\n").rpartition("\n")
    assert text == whole_text(server) and last.split()[0] in ("length", "eos", "stop"), printed


def test_browser_example(server: str, tmp_path: Path) -> None:
    code = snippet("js", "/generate/stream").replace("max_new_tokens: 30}", "max_new_tokens: 30, temperature: 0}")
    browser = DevTools(chromium(), tmp_path / "profile")
    try:
        browser.call("Page.navigate", {"url": f"{server}/"})  # same origin as the API, as a page of yours would be
        browser.wait("document.readyState === 'complete'")
        streamed = browser.js(f"(async () => {{ {code}; return text; }})()")
    finally:
        browser.close()
    assert streamed == whole_text(server)
