"""The committed word LM reads and writes paragraphs (its manifest's `tokenizer.eos`): a line break inside a prompt is
not an end, and a session that ended a paragraph continues with a new one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from service.manifest import read_manifest
from service.registry import discover

REPO = Path(__file__).resolve().parents[4]
GREEDY = {"temperature": 0, "max_new_tokens": 120}


@pytest.fixture(scope="module")
def committed() -> Iterator[TestClient]:
    served = discover(REPO / "models")["wordlm"][0]
    manifest = read_manifest(served)
    assert manifest.tokenizer is not None
    if manifest.tokenizer.eos != "paragraph":
        pytest.skip("the committed word LM is not a paragraph model")
    with TestClient(create_app(Settings(models_dir=REPO / "models", intra_op_threads=1))) as client:
        yield client


def test_a_line_break_inside_a_prompt_is_not_an_end(committed: TestClient) -> None:
    wrapped = committed.post("/generate", json={"prompt": "Alice was\nbeginning to get", **GREEDY}).json()
    joined = committed.post("/generate", json={"prompt": "Alice was beginning to get", **GREEDY}).json()
    assert wrapped["usage"]["prompt_tokens"] == joined["usage"]["prompt_tokens"] == 5
    assert wrapped["text"] == joined["text"]


def test_a_session_that_ended_a_paragraph_starts_the_next_on_its_own(committed: TestClient) -> None:
    sid = committed.post("/sessions", json={"model": "wordlm"}).json()["session_id"]
    first = committed.post("/generate", json={"session_id": sid, "prompt": "The Queen said", **GREEDY}).json()
    assert first["finish_reason"] == "eos" and not first["text"].endswith("\n")
    after = committed.post("/generate", json={"session_id": sid, **GREEDY}).json()["text"]
    assert after.startswith("\n\n") and after[2:3].strip() and after[2:3] == after[2:3].upper(), repr(after[:40])
