"""A real redis-server on a free loopback port, for the tests of the shared session store.

Where redis-server is missing the tests that need it skip, except in CI (CI=true), where they fail: .ci/run
installs it with apt.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.live_server import free_port


class RedisProcess:
    """A redis-server that a test can kill, stop (SIGSTOP), resume and restart on the same port, by PID."""

    def __init__(self, binary: str, workdir: str) -> None:
        self.binary, self.workdir, self.port = binary, workdir, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self.workdir]  # fmt: skip
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        wait_for_redis(self.url, proc)
        return proc

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def restart(self) -> None:
        self.proc = self._start()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.resume()
            self.proc.terminate()
            self.proc.wait(timeout=10)


def wait_for_redis(url: str, proc: subprocess.Popen[bytes]) -> None:
    import redis

    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.05)
    client.close()


def redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed (.ci/run installs it with apt)")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    return binary


@contextmanager
def redis_process() -> Iterator[RedisProcess]:
    with tempfile.TemporaryDirectory() as workdir:
        process = RedisProcess(redis_binary(), workdir)
        try:
            yield process
        finally:
            process.close()


@contextmanager
def redis_server() -> Iterator[str]:
    with redis_process() as process:
        yield process.url
