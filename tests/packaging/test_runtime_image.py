"""The image's contents are enough: a fresh venv holding exactly the Dockerfile's requirements, plus only the
paths the Dockerfile copies, serves the models and answers /ready; and it stops cleanly on SIGTERM."""

from __future__ import annotations

import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.live_server import live_server

from .conftest import pip
from .dockerfile import REPO, parse


def image_root(tmp_path: Path, models_dir: Path) -> Path:
    """What the runtime stage puts in /app: the COPYs from the build context (not from another stage)."""
    _, stages = parse()
    runtime = stages[-1]
    root = tmp_path / "app"
    root.mkdir()
    for sources, dest, flags in runtime.copies():
        if "from" in flags:
            continue  # the venv from the deps stage: the runtime_venv fixture stands for it
        for source in sources:
            src = REPO / source
            target = root / dest.removeprefix("./")
            if src.is_dir():
                shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
            else:
                shutil.copy2(src, target)
    if not any((root / "models").glob("*/*/manifest.json")):
        # No model committed yet in this checkout: stand in the tiny test model, so the image contents are still
        # proven able to load and serve one.
        shutil.rmtree(root / "models", ignore_errors=True)
        shutil.copytree(models_dir, root / "models")
    return root


def image_env(runtime_venv: Path) -> dict[str, str]:
    """The image's ENV (from the Dockerfile), with only the venv on PATH: no repo, no dev venv."""
    _, stages = parse()
    env = {"PATH": f"{runtime_venv / 'bin'}:/usr/bin:/bin", "HOME": str(runtime_venv)}
    for instruction in stages[-1].all("ENV"):
        for word in shlex.split(instruction.args):
            name, _, value = word.partition("=")
            if name != "PATH":
                env[name] = value
    env["CELLSTATE_INTRA_OP_THREADS"] = "1"
    return env


def normalized_pins(lines: list[str]) -> list[str]:
    pins = []
    for line in lines:
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.strip().split("==")
            pins.append(f"{re.sub(r'[-_.]+', '-', name).lower()}=={version}")
    return sorted(pins)


def test_runtime_venv_is_exactly_the_lock(runtime_venv: Path, runtime_requirements: Path) -> None:
    frozen = subprocess.run(
        pip("--python", runtime_venv / "bin" / "python", "freeze"), check=True, capture_output=True, text=True
    ).stdout
    installed = normalized_pins(frozen.splitlines())
    assert installed == normalized_pins(runtime_requirements.read_text().splitlines())
    for training_only in ("torch", "onnx", "tqdm", "matplotlib"):
        assert not any(line.startswith(f"{training_only}==") for line in installed), training_only


def test_image_contents_serve_models_and_stop_on_sigterm(runtime_venv: Path, models_dir: Path, tmp_path: Path) -> None:
    root = image_root(tmp_path, models_dir)
    env = image_env(runtime_venv)
    assert env["CELLSTATE_MODELS_DIR"] == "/app/models"
    env["CELLSTATE_MODELS_DIR"] = str(root / "models")
    log = tmp_path / "server.log"
    with live_server(runtime_venv / "bin" / "python", cwd=root, env=env, log_file=log) as (url, proc):
        ready = httpx.get(f"{url}/ready", timeout=5)
        assert ready.status_code == 200 and ready.json()["ready"] is True
        served = ready.json()["models"]
        assert served, "no model served"
        assert httpx.get(f"{url}/health", timeout=5).json() == {"status": "ok"}
        assert "cellstate_model_loaded{" in httpx.get(f"{url}/metrics", timeout=5).text
        # The image imports nothing from the repo beyond what it copies: no torch, no training package.
        probe = subprocess.run(
            [
                runtime_venv / "bin" / "python",
                "-c",
                "import importlib.util as u; print(u.find_spec('torch'), u.find_spec('training'))",
            ],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert probe.stdout.split() == ["None", "None"]
        proc.send_signal(signal.SIGTERM)  # what `docker stop` sends to PID 1 (exec-form CMD)
        started = time.monotonic()
        # uvicorn shuts down gracefully, then re-raises the signal it caught: the exit status says "SIGTERM".
        assert proc.wait(timeout=15) in (0, -signal.SIGTERM)
        assert time.monotonic() - started < 10
    lines = log.read_text().splitlines()
    assert any('"logger": "cellstate.access"' in line for line in lines), "JSON access log expected (image ENV)"
    assert any("Shutting down" in line or "Finished server process" in line for line in lines)
