"""One-shot endpoints: requests/s and latency of /sentiment and /forecast at 1 and 32 clients, with and without
micro-batching, in one run (rounds interleaved; medians reported).

    python -m benchmarks.oneshot            # writes its section of BENCHMARKS.md
    python -m benchmarks.oneshot --quick
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchmarks.generation import machine, write_section
from benchmarks.loadgen import LoadResult, run_load
from tests.live_server import live_server

REPO = Path(__file__).resolve().parents[1]
REVIEWS = [
    "a gripping, beautifully acted film that earns every one of its tears",
    "tedious, overlong and badly written",
    "the plot is thin but the performances carry it",
    "one of the worst movies of the year",
    "funny, warm and surprisingly wise",
    "i wanted to like it, but it never comes alive",
]
SERIES = [100 + 10 * math.sin(2 * math.pi * t / 12) + 0.5 * t for t in range(120)]


def sentiment_body(client: int, n: int) -> dict[str, Any]:
    return {"texts": [REVIEWS[(client + n) % len(REVIEWS)]]}


def forecast_body(client: int, n: int) -> dict[str, Any]:
    return {"series": SERIES[: 60 + (client + n) % 60], "horizon": 12, "season_length": 12}


ENDPOINTS = {"/sentiment": sentiment_body, "/forecast": forecast_body}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument("--precision", choices=("fp32", "int8", "auto"), default="fp32", help="CELLSTATE_PRECISION")
    args = parser.parse_args()
    rounds, seconds = (1, 2.0) if args.quick else (args.rounds, args.seconds)
    env = {**os.environ, "CELLSTATE_LOG_LEVEL": "warning", "CELLSTATE_ACCESS_LOG": "false",
           "CELLSTATE_INTRA_OP_THREADS": str(args.threads), "CELLSTATE_PRECISION": args.precision}  # fmt: skip
    results: dict[tuple[str, str, int], list[LoadResult]] = {}
    logs = REPO / "runs" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        urls = {
            "micro-batched": stack.enter_context(live_server(sys.executable, REPO, env, log_file=logs / "mb.log"))[0],
            "alone": stack.enter_context(
                live_server(sys.executable, REPO, {**env, "CELLSTATE_BATCHING": "false"}, log_file=logs / "alone.log")
            )[0],
        }
        for url in urls.values():
            for path, body in ENDPOINTS.items():
                run_load(url, path, body, 1, 0.5)  # warm-up
        for r in range(rounds):
            for path, body in ENDPOINTS.items():
                for clients in (1, 32):
                    for name, url in urls.items():
                        res = run_load(url, path, body, clients, seconds)
                        results.setdefault((path, name, clients), []).append(res)
                        print(f"round {r + 1} | {path:10s} | {clients:2d} clients | {name:13s} | "
                              f"{res.requests_per_s:7.1f} req/s | p50 {1000 * res.p50:6.1f} ms | "
                              f"p99 {1000 * res.p99:6.1f} ms | {res.errors} errors", flush=True)  # fmt: skip

    def med(key: tuple[str, str, int], attr: str) -> float:
        return statistics.median(getattr(x, attr) for x in results[key])

    lines = [
        "## One-shot endpoints: /sentiment (1 text per request) and /forecast (60–119 points, horizon 12)",
        "",
        f"Machine: {machine()}. Medians of {rounds} interleaved rounds of {seconds:g} s each; closed-loop clients.",
        f"`micro-batched`: requests waiting when a call starts share it, after waiting up to "
        f"{os.environ.get('CELLSTATE_MICROBATCH_MAX_WAIT_MS', '0')} ms for more (the default is 0); `alone`: "
        "`CELLSTATE_BATCHING=false`.",
        "",
        "| endpoint | clients | configuration | requests/s | p50 (ms) | p99 (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for path in ENDPOINTS:
        for clients in (1, 32):
            for name in urls:
                key = (path, name, clients)
                lines.append(f"| {path} | {clients} | {name} | {med(key, 'requests_per_s'):,.1f} | "
                             f"{1000 * med(key, 'p50'):.1f} | {1000 * med(key, 'p99'):.1f} |")  # fmt: skip
    lines += ["", "Ratios (micro-batched / alone, requests/s):", ""]
    for path in ENDPOINTS:
        for clients in (1, 32):
            ratio = med((path, "micro-batched", clients), "requests_per_s") / med((path, "alone", clients),
                                                                                   "requests_per_s")  # fmt: skip
            lines.append(f"- {path}, {clients} client{'s' if clients > 1 else ''}: {ratio:.2f}×")
    text = "\n".join(lines) + "\n"
    print(text)
    write_section(args.out, "oneshot", text)


if __name__ == "__main__":
    main()
