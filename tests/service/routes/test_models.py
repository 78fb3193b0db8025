"""Several versions side by side; a reload swaps versions without failing requests in flight, and live sessions
stay on the version they started with."""

import json
import shutil
import threading
from pathlib import Path

from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from service.manifest import MANIFEST_NAME

ADMIN = {"X-Admin-Key": "admin-key"}  # /admin/ routes are closed without CELLSTATE_ADMIN_KEYS


def add_version(models_dir: Path, family: str, source: int, target: int) -> None:
    """A copy of an existing version under a new number (its manifest says the new number)."""
    src, dst = models_dir / family / str(source), models_dir / family / str(target)
    shutil.copytree(src, dst)
    manifest = json.loads((dst / MANIFEST_NAME).read_text())
    manifest["version"] = target
    (dst / MANIFEST_NAME).write_text(json.dumps(manifest))


def test_reload_serves_the_new_version_and_sessions_keep_theirs(copied_models_dir: Path) -> None:
    with TestClient(create_app(Settings(models_dir=copied_models_dir, admin_keys=["admin-key"]))) as c:
        sid = c.post("/sessions", json={"model": "wordlm"}).json()["session_id"]
        first = c.post("/generate", json={"session_id": sid, "prompt": "the cat", "max_new_tokens": 3})
        assert first.json()["model"]["version"] == 1

        # A long stream is in flight while the reload happens.
        body = {"prompt": "the dog", "max_new_tokens": 400, "ignore_eos": True}
        with c.stream("POST", "/generate/stream", json=body) as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("event: token")
            add_version(copied_models_dir, "wordlm", 1, 2)
            reloaded = c.post("/admin/reload", headers=ADMIN).json()
            assert reloaded["serving"] == {"wordlm": 2} and reloaded["loaded"] == {"wordlm": [1, 2]}
            rest = "\n".join(lines)
        assert "event: done" in rest and '"version": 1' in rest.split("event: done", 1)[1]

        assert c.get("/ready").json()["models"] == {"wordlm": 2}
        assert c.post("/generate", json={"prompt": "the cat", "max_new_tokens": 2}).json()["model"]["version"] == 2
        later = c.post("/generate", json={"session_id": sid, "max_new_tokens": 3})
        assert later.status_code == 200 and later.json()["model"]["version"] == 1
        assert c.get(f"/sessions/{sid}").json()["model"]["version"] == 1

        versions = c.get("/models/wordlm").json()["versions"]
        assert [(v["version"], v["served"], v["loaded"]) for v in versions] == [(2, True, True), (1, False, True)]
        assert c.get("/models/nope").status_code == 404


def test_pinned_version_is_served_instead_of_the_newest(copied_models_dir: Path) -> None:
    add_version(copied_models_dir, "wordlm", 1, 2)
    with TestClient(create_app(Settings(models_dir=copied_models_dir, pinned_versions={"wordlm": 1}))) as c:
        assert c.get("/ready").json()["models"] == {"wordlm": 1}


def test_requests_during_repeated_reloads_never_fail(copied_models_dir: Path) -> None:
    add_version(copied_models_dir, "wordlm", 1, 2)
    with TestClient(create_app(Settings(models_dir=copied_models_dir, admin_keys=["admin-key"]))) as c:
        statuses: list[int] = []

        def hammer() -> None:
            for _ in range(15):
                statuses.append(c.post("/generate", json={"prompt": "the cat", "max_new_tokens": 5}).status_code)

        worker = threading.Thread(target=hammer)
        worker.start()
        for _ in range(5):
            assert c.post("/admin/reload", headers=ADMIN).status_code == 200
        worker.join()
        assert statuses == [200] * 15
