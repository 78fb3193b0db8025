"""Tiny test models cached across runs under .cache/test-models/, keyed by a hash of everything that builds them
(training/, the manifest and tokenizer contract, the fixture recipes). A warm cache makes a one-test run of any
service test start at once; any change to the recipe or the trainer builds afresh."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "test-models"
STALE_AFTER_S = 86_400
SOURCES = ("training", "service/manifest.py", "service/tokenizer.py", "tests/conftest.py", "tests/model_cache.py",
           "tests/torch_threads.py", "tests/fixtures_sentiment.py", "tests/fixtures_forecast.py")  # fmt: skip


def recipe_hash() -> str:
    digest = hashlib.sha256()
    for source in SOURCES:
        path = REPO / source
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            if file.is_file():
                digest.update(str(file.relative_to(REPO)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]


def cached_models(name: str, build: Callable[[Path], object]) -> Path:
    """A models directory made by `build(root)`, reused while the recipe is unchanged (CELLSTATE_TEST_CACHE=0
    turns the cache off)."""
    key = f"{name}-{recipe_hash()}"
    target = CACHE / key
    if os.environ.get("CELLSTATE_TEST_CACHE", "1") != "0" and (target / ".complete").is_file():
        return target / "models"
    building = CACHE / f"{key}.building-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    (building / "models").mkdir(parents=True)
    try:
        build(building / "models")
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    (building / ".complete").touch()
    shutil.rmtree(target, ignore_errors=True)
    building.rename(target)
    # Older builds of this model go once nobody can be using them (another test run may still read a recent one).
    for stale in CACHE.glob(f"{name}-*"):
        if stale != target and ".building-" not in stale.name and time.time() - stale.stat().st_mtime > STALE_AFTER_S:
            shutil.rmtree(stale, ignore_errors=True)
    return target / "models"
