"""Estimate the Docker image's size from what it installs: the locked runtime dependencies (measured in a fresh
venv built exactly as the Dockerfile builds it), the service code and models/. The base image is not measured
here (no Docker engine): add python:3.11-slim's own size.

    python scripts/image_size.py
"""

from __future__ import annotations

import sys
from importlib.metadata import distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.packaging.conftest import build_runtime_venv  # noqa: E402  (the same venv the packaging tests use)

MB = 1e6


def tree_bytes(path: Path, bytecode: bool = True) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and (bytecode or "__pycache__" not in p.parts))


def main() -> None:
    venv = build_runtime_venv(REPO / "requirements" / "runtime.txt")
    [site] = (venv / "lib").glob("python3.*/site-packages")
    sizes = []
    for dist in distributions(path=[str(site)]):
        files = [site / f for f in dist.files or ()]
        sizes.append((sum(f.stat().st_size for f in files if f.is_file()), dist.metadata["Name"], dist.version))
    sizes.sort(reverse=True)
    print(f"{'package':<24} {'version':<12} {'MB':>8}")
    for size, name, version in sizes:
        print(f"{name:<24} {version:<12} {size / MB:8.1f}")
    deps = sum(s for s, _, _ in sizes)
    venv_total = tree_bytes(venv)  # pip compiles bytecode at install, as in the image
    code, models = tree_bytes(REPO / "service", bytecode=False), tree_bytes(REPO / "models")
    print(f"\nruntime dependencies (installed files incl. bytecode): {deps / MB:7.1f} MB")
    print(f"whole venv /opt/venv: {venv_total / MB:7.1f} MB")
    print(f"service/ code: {code / MB:7.2f} MB   models/: {models / MB:7.1f} MB")
    print(f"image = python:3.11-slim base + {(venv_total + code + models) / MB:.0f} MB")


if __name__ == "__main__":
    main()
