"""A virtual environment built from exactly the requirements the Docker image installs, cached between runs.

It lives in `.cache/runtime-venv/<hash of the requirements and Python version>/` (gitignored), so it is rebuilt
only when requirements/runtime.txt changes; the first build downloads the wheels from the package registry.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .dockerfile import REPO, installed_requirements, parse

CACHE = REPO / ".cache" / "runtime-venv"


def pip(*args: str | Path) -> list[str]:
    # The same command shape as the Dockerfile: an outside pip installs into a venv that has no pip of its own.
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", *map(str, args)]


def build_runtime_venv(requirements: Path) -> Path:
    key = hashlib.sha256(requirements.read_bytes() + sys.version.encode()).hexdigest()[:16]
    target = CACHE / key
    if (target / ".complete").is_file():
        return target
    building = CACHE / f"{key}.building"
    shutil.rmtree(building, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", building], check=True)
    python = building / "bin" / "python"
    subprocess.run(
        pip("--python", python, "install", "--quiet", "--no-deps", "--requirement", requirements), check=True
    )
    subprocess.run(pip("--python", python, "check"), check=True)
    (building / ".complete").write_text(requirements.read_text(encoding="utf-8"), encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    # venv scripts hold absolute paths; `python -m ...` is all the tests use, and bin/python is a symlink to the
    # base interpreter, so the renamed venv still works.
    building.rename(target)
    for stale in CACHE.iterdir():  # keep only the current build
        if stale != target:
            shutil.rmtree(stale, ignore_errors=True)
    return target


@pytest.fixture(scope="session")
def runtime_requirements() -> Path:
    _, stages = parse()
    return installed_requirements(stages)


@pytest.fixture(scope="session")
def runtime_venv(runtime_requirements: Path) -> Path:
    return build_runtime_venv(runtime_requirements)
