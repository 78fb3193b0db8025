"""Start a real `python -m service` on a free loopback port and wait until it is ready (for end-to-end tests)."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def live_server(
    python: str | Path,
    cwd: Path,
    env: dict[str, str],
    ready_path: str = "/ready",
    timeout: float = 60.0,
    log_file: Path | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Yield (base URL, process); stop the process with SIGTERM afterwards (if it still runs)."""
    port = free_port()
    full_env = {**env, "CELLSTATE_HOST": "127.0.0.1", "CELLSTATE_PORT": str(port)}
    for plain in ("HOST", "PORT"):  # the CELLSTATE_ names win anyway; drop these to keep it unambiguous
        full_env.pop(plain, None)
    log = log_file.open("wb") if log_file else None
    out = log if log is not None else subprocess.DEVNULL
    proc = subprocess.Popen([str(python), "-m", "service"], cwd=cwd, env=full_env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                tail = log_file.read_text(errors="replace")[-3000:] if log_file else ""
                raise AssertionError(f"server exited with {proc.returncode} during start-up\n{tail}")
            try:
                if httpx.get(f"{url}{ready_path}", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server not ready within {timeout:.0f} s")
            time.sleep(0.1)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if log is not None:
            log.close()
