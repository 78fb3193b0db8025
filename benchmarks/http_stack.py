"""What does the HTTP stack cost a request? `python -m service` as it ships (httptools + uvloop, with the connection
guards of service/connections.py), the same app under uvicorn's plain h11 on asyncio's loop (what the service ran
before, less its guards) and under plain httptools + uvloop (no guards: what the guards cost), next to the plain
FastAPI script (benchmarks/peers/plain_fastapi.py: uvicorn's defaults, httptools + uvloop).

    python -m benchmarks.http_stack [--rounds 3] [--seconds 4]

Measured: the server process's CPU time (user + system, from /proc) per /sentiment request (one short text) and per
generated token (100 greedy tokens per request), one closed-loop client, float32 graphs everywhere, interleaved
rounds, medians. CPU per unit is steadier than throughput on a shared machine. Prints a table; writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from benchmarks.compare import _closed, fixed_body, sentiment_body
from tests.live_server import free_port

REPO = Path(__file__).resolve().parents[1]
STACKS = [("service", ""), ("h11", "asyncio"), ("httptools", "uvloop"), ("plain", "")]
NAMES = {
    "plain": "plain FastAPI script (httptools, uvloop)",
    "service": "python -m service (httptools, uvloop, guards)",
}


def serve_app(http: str, loop: str, port: int) -> None:
    """The service's app under a given uvicorn parser and loop, without the connection guards."""
    import uvicorn

    from service.app import create_app
    from service.config import Settings

    settings = Settings(access_log=False, log_level="warning", precision={"*": "fp32"})
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning", access_log=False,
                http=http, loop=loop)  # type: ignore[arg-type]  # fmt: skip


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(http: str, loop: str, seconds: float) -> tuple[float, float]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "CELLSTATE_PRECISION": "fp32"}
    if http == "plain":
        command = [sys.executable, "-m", "benchmarks.peers.plain_fastapi", "--port", str(port)]
    elif http == "service":
        command = [sys.executable, "-m", "service"]
        env.update(CELLSTATE_HOST="127.0.0.1", CELLSTATE_PORT=str(port), CELLSTATE_ACCESS_LOG="false",
                   CELLSTATE_LOG_LEVEL="warning")  # fmt: skip
    else:
        command = [sys.executable, "-m", "benchmarks.http_stack", "--serve", http, loop, str(port)]
    server = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"{http}/{loop} did not start")
            time.sleep(0.2)
        url = ("127.0.0.1", port)
        asyncio.run(_closed(url, "/sentiment", sentiment_body, 1, 1.0, 5))  # warm up
        asyncio.run(_closed(url, "/generate", fixed_body, 1, 1.0, 5))
        per_unit = []
        for path, body in (("/sentiment", sentiment_body), ("/generate", fixed_body)):
            before = cpu_seconds(server.pid)
            run = asyncio.run(_closed(url, path, body, 1, seconds, 5))
            units = run.requests if path == "/sentiment" else run.tokens
            per_unit.append(1000 * (cpu_seconds(server.pid) - before) / max(units, 1))
        return per_unit[0], per_unit[1]
    finally:
        server.terminate()
        server.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--serve", nargs=3, metavar=("HTTP", "LOOP", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_app(args.serve[0], args.serve[1], int(args.serve[2]))
        return
    results: dict[str, list[tuple[float, float]]] = {}
    for r in range(1, args.rounds + 1):
        for http, loop in STACKS:
            name = NAMES.get(http, f"cellstate app, {http}, {loop}")
            sentiment, token = measure(http, loop, args.seconds)
            results.setdefault(name, []).append((sentiment, token))
            print(f"round {r} | {name:46s} | {sentiment:.3f} CPU ms per /sentiment | {token:.3f} per token", flush=True)
    print(f"\n| server | CPU ms per /sentiment request | CPU ms per generated token |  (medians of {args.rounds})")
    print("|---|---|---|")
    for name, runs in results.items():
        print(f"| {name} | {statistics.median(s for s, _ in runs):.2f} | {statistics.median(t for _, t in runs):.2f} |")


if __name__ == "__main__":
    main()
