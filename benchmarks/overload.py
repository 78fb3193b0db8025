"""Overload: a mixed flood of /generate, /sentiment and /forecast above capacity, all sent at once, while /health is
probed every 0.5 s on a fresh connection (as a container healthcheck or a kubelet does).

Reports the statuses per endpoint (503s with Retry-After are the load shedding), latencies of the answered requests,
the probes' latencies (p50/p99/max, and how many missed the 2 s a healthcheck allows), the server's resident memory
(start/peak/end) and the recovery time: from the flood's last answer until 3 consecutive small requests (a
20-token /generate and a 1-text /sentiment) take at most 1.5 times their latency before the flood. Then the
audit's connection abuse, all at once: idle connections, slow-loris headers and bodies shorter than their
Content-Length (more in all than the connection cap), with what the server did to each and when.

Bounded: a fixed number of requests, each with a client timeout (--timeout), and the whole run with --budget; the
server is a real `python -m service` (uvicorn) on a free loopback port, stopped by its PID afterwards.

    python -m benchmarks.overload           # writes its section of BENCHMARKS.md
    python -m benchmarks.overload --quick   # a small flood, nothing written
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.generation import machine, write_section
from tests.live_server import live_server

REPO = Path(__file__).resolve().parents[1]
PROBE_EVERY_S = 0.5
PROBE_TIMEOUT_S = 2.0  # what the image's HEALTHCHECK allows
VOCABULARY = (
    "the film was a gripping and beautifully acted story that earns its tears but the plot is thin and the "
    "dialogue tedious overlong badly written funny warm surprisingly wise never comes alive"
)
WORDS = VOCABULARY.split()


def generate_body(i: int) -> dict[str, Any]:
    return {"prompt": "Alice was beginning to get very tired of", "max_new_tokens": 1024, "ignore_eos": True,
            "temperature": 0.8, "seed": i}  # fmt: skip


def sentiment_body(i: int) -> dict[str, Any]:
    rng = random.Random(i)
    return {"texts": [" ".join(rng.choices(WORDS, k=rng.randint(5, 25))) for _ in range(256)]}


def forecast_body(i: int) -> dict[str, Any]:
    n = 2_000
    series = [100 + 10 * math.sin(2 * math.pi * (t + i) / 12) + 0.05 * t for t in range(n)]
    return {"series": series, "horizon": 48, "season_length": 12}


BODIES = {"/generate": generate_body, "/sentiment": sentiment_body, "/forecast": forecast_body}


@dataclass
class Reply:
    path: str
    status: int  # 0: no answer within the client timeout; -1: connection error
    seconds: float
    retry_after: str | None = None


@dataclass
class Samples:
    probes: list[tuple[float, float | None]] = field(default_factory=list)  # (t, latency or None if missed)
    rss: list[tuple[float, int]] = field(default_factory=list)  # (t, bytes)


async def request(host: str, port: int, method: str, path: str, body: dict[str, Any] | None,
                  timeout: float) -> tuple[int, float, dict[str, str], bytes]:  # fmt: skip
    """One request on its own connection (Connection: close): status, seconds, headers, body."""
    start = time.perf_counter()
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            payload = json.dumps(body).encode() if body is not None else b""
            head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
            if body is not None:
                head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
            writer.write(head.encode() + b"\r\n" + payload)
            raw = await reader.read()
    except TimeoutError:
        return 0, time.perf_counter() - start, {}, b""
    except OSError:
        return -1, time.perf_counter() - start, {}, b""
    finally:
        if writer is not None:
            writer.close()
    seconds = time.perf_counter() - start
    head_text, _, content = raw.partition(b"\r\n\r\n")
    lines = head_text.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/"):
        return -1, seconds, {}, b""
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split(" ", 2)[1]), seconds, headers, content


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def sample(host: str, port: int, pid: int, samples: Samples, stop: asyncio.Event, t0: float) -> None:
    """Probe /health and read the server's RSS every PROBE_EVERY_S until `stop` is set."""
    while not stop.is_set():
        tick = time.perf_counter()
        samples.rss.append((tick - t0, rss_bytes(pid)))
        status, seconds, _, _ = await request(host, port, "GET", "/health", None, PROBE_TIMEOUT_S)
        samples.probes.append((tick - t0, seconds if status == 200 else None))
        await asyncio.sleep(max(0.0, PROBE_EVERY_S - (time.perf_counter() - tick)))


async def small_latencies(host: str, port: int, timeout: float) -> tuple[float, float]:
    """One 20-token /generate and one 1-text /sentiment, one after the other: their latencies (inf if not 200)."""
    g = await request(host, port, "POST", "/generate", {"prompt": "the queen said", "max_new_tokens": 20,
                                                        "ignore_eos": True, "seed": 1}, timeout)  # fmt: skip
    s = await request(host, port, "POST", "/sentiment", {"texts": ["a warm and funny film"]}, timeout)
    return (g[1] if g[0] == 200 else math.inf), (s[1] if s[0] == 200 else math.inf)


async def flood(url: str, pid: int, counts: dict[str, int], timeout: float, budget: float) -> dict[str, Any]:
    host, port = url.removeprefix("http://").split(":")
    port_n = int(port)
    for _ in range(3):  # warm-up
        await small_latencies(host, port_n, 30)
    base = [await small_latencies(host, port_n, 30) for _ in range(5)]
    baseline = (statistics.median(b[0] for b in base), statistics.median(b[1] for b in base))
    bodies = {path: [BODIES[path](i) for i in range(n)] for path, n in counts.items()}  # built before the clock

    samples = Samples()
    stop = asyncio.Event()
    t0 = time.perf_counter()
    sampler = asyncio.create_task(sample(host, port_n, pid, samples, stop, t0))
    await asyncio.sleep(2 * PROBE_EVERY_S)  # a few samples before the flood

    async def one(path: str, body: dict[str, Any]) -> Reply:
        status, seconds, headers, _ = await request(host, port_n, "POST", path, body, timeout)
        return Reply(path, status, seconds, headers.get("retry-after"))

    order = [(path, body) for path in bodies for body in bodies[path]]
    random.Random(0).shuffle(order)  # interleaved, all sent at once
    flood_start = time.perf_counter()
    tasks = [asyncio.create_task(one(path, body)) for path, body in order]
    done, pending = await asyncio.wait(tasks, timeout=budget)
    for task in pending:
        task.cancel()
    replies = [task.result() for task in done]
    flood_end = time.perf_counter()

    # Recovery: 3 consecutive small-request rounds within 1.5x the baseline.
    recovered_at = None
    streak = 0
    recovery_deadline = flood_end + 60
    limits = [max(1.5 * b, b + 0.010) for b in baseline]
    rounds: list[tuple[float, float]] = []
    while time.perf_counter() < recovery_deadline:
        g, s = await small_latencies(host, port_n, 10)
        rounds.append((g, s))
        streak = streak + 1 if g <= limits[0] and s <= limits[1] else 0
        if streak == 3:
            recovered_at = time.perf_counter()
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(2 * PROBE_EVERY_S)
    stop.set()
    await sampler
    return {
        "baseline": baseline,
        "replies": replies,
        "unfinished": len(pending),
        "flood_s": flood_end - flood_start,
        "flood_window": (flood_start - t0, flood_end - t0),
        "recovery_s": None if recovered_at is None else recovered_at - flood_end,
        "first_after": rounds[0] if rounds else (math.nan, math.nan),
        "rounds": rounds,
        "samples": samples,
    }


async def hold(host: str, port: int, kind: str, limit: float) -> tuple[str, str, float]:
    """One connection that never completes its request: `idle` sends nothing, `slow` sends a request line and a
    header byte every 2 s, `short` sends headers and 10 of the 100 bytes its Content-Length promises. Returns
    (kind, what the server did, seconds until it closed the connection)."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return kind, "connect failed", 0.0
    start = time.perf_counter()
    if kind == "short":
        writer.write(b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n" + b'{"prompt":')  # fmt: skip
    elif kind == "slow":
        writer.write(b"POST /generate HTTP/1.1\r\nHost: x\r\n")

    async def drip() -> None:
        while kind == "slow":
            await asyncio.sleep(2)
            writer.write(b"X")

    dripper = asyncio.create_task(drip())
    try:
        async with asyncio.timeout(limit):
            data = await reader.read()
        outcome = data.split(b"\r\n", 1)[0].decode(errors="replace")[9:] if data else "closed silently"
    except TimeoutError:
        outcome = f"still open after {limit:g} s"
    except OSError:
        outcome = "reset"
    finally:
        dripper.cancel()
        writer.close()
    return kind, outcome, time.perf_counter() - start


async def connections(url: str, counts: dict[str, int], limit: float) -> dict[str, Any]:
    """The audit's idle, slow-loris and short-body connections, all at once; /health probed meanwhile."""
    host, port = url.removeprefix("http://").split(":")
    port_n = int(port)
    stop = asyncio.Event()
    samples = Samples()
    t0 = time.perf_counter()

    async def probe() -> None:
        while not stop.is_set():
            tick = time.perf_counter()
            status, seconds, _, _ = await request(host, port_n, "GET", "/health", None, PROBE_TIMEOUT_S)
            samples.probes.append((tick - t0, seconds if status == 200 else None))
            await asyncio.sleep(max(0.0, PROBE_EVERY_S - (time.perf_counter() - tick)))

    prober = asyncio.create_task(probe())
    kinds = [kind for kind in ("slow", "short", "idle") for _ in range(counts[kind])]  # the idle ones last
    held = []
    for kind in kinds:  # opened one after the other, so that the over-cap ones are the last idle ones
        held.append(asyncio.create_task(hold(host, port_n, kind, limit)))
        await asyncio.sleep(0)
    outcomes = await asyncio.gather(*held)
    stop.set()
    await prober
    return {"outcomes": outcomes, "probes": samples.probes}


def connections_report(result: dict[str, Any], counts: dict[str, int]) -> list[str]:
    names = {"idle": "idle (sends nothing)", "slow": "slow-loris (a header byte every 2 s)",
             "short": "body shorter than its Content-Length"}  # fmt: skip
    lines = [
        "",
        f"Connections ({sum(counts.values()):,} at once, default deadlines and cap; `/health` probed meanwhile):",
        "",
        "| connection | opened | what the server did | closed after p50 (s) | max (s) |",
        "|---|---|---|---|---|",
    ]
    for kind in ("idle", "slow", "short"):
        mine = [o for o in result["outcomes"] if o[0] == kind]
        what = Counter(o[1] for o in mine)
        shown = ", ".join(f"{w} × {n}" for w, n in what.most_common())
        times = [o[2] for o in mine]
        lines.append(f"| {names[kind]} | {len(mine):,} | {shown} | {statistics.median(times):.1f} | "
                     f"{max(times):.1f} |")  # fmt: skip
    answered = [lat for _, lat in result["probes"] if lat is not None]
    missed = sum(1 for _, lat in result["probes"] if lat is None)
    if answered:
        lines += ["", f"`/health` meanwhile: {len(answered)} of {len(result['probes'])} probes answered within "
                  f"{PROBE_TIMEOUT_S:g} s ({missed} missed), p50 {1000 * statistics.median(answered):.1f} ms, "
                  f"max {1000 * max(answered):.1f} ms."]  # fmt: skip
    return lines


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else math.nan


def report(result: dict[str, Any], counts: dict[str, int], timeout: float, settings: str) -> str:
    replies: list[Reply] = result["replies"]
    samples: Samples = result["samples"]
    start, end = result["flood_window"]
    during = [(t, lat) for t, lat in samples.probes if start <= t <= end]
    answered = [lat for _, lat in during if lat is not None]
    missed = sum(1 for _, lat in during if lat is None)
    slow = sum(1 for lat in answered if lat > 1.0)
    rss = [b for _, b in samples.rss]
    rss_start = samples.rss[0][1]
    rss_end = samples.rss[-1][1]
    mb = 1024 * 1024
    unfinished = f" ({result['unfinished']} still unanswered at the budget)" if result["unfinished"] else ""
    recovery = (
        f"{result['recovery_s']:.2f} s after the flood's last answer (first round after it: "
        f"{1000 * result['first_after'][0]:.0f} ms and {1000 * result['first_after'][1]:.0f} ms)."
        if result["recovery_s"] is not None
        else "not within 60 s."
    )
    total = sum(counts.values())
    lines = [
        "## Overload: a mixed flood above capacity, /health probed every 0.5 s",
        "",
        f"Machine: {machine()}. **The machine was shared with other work during the run** (other sessions' builds "
        "and tests on the same 2 cores), so latencies are indicative. Server: `python -m service` (uvicorn) on "
        f"loopback with {settings}. Load generator: `python -m benchmarks.overload` (asyncio streams, one connection "
        f"per request, {timeout:g} s client timeout).",
        "",
        f"Flood: {total} requests sent at once, interleaved: {counts['/generate']} × `/generate` (1,024 tokens, "
        f"`ignore_eos`, temperature 0.8), {counts['/sentiment']} × `/sentiment` (256 texts of 5–25 words), "
        f"{counts['/forecast']} × `/forecast` (2,000 points, horizon 48). From the first request sent to the last "
        f"answer or client timeout: {result['flood_s']:.1f} s{unfinished}.",
        "",
        "| endpoint | sent | statuses | 503 with Retry-After | p50 of 200s (s) | max of 200s (s) | p50 of 503s (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for path in BODIES:
        mine = [r for r in replies if r.path == path]
        statuses = Counter(r.status for r in mine)
        shown = ", ".join(f"{'no answer in time' if s == 0 else 'error' if s == -1 else s} × {n}"
                          for s, n in sorted(statuses.items()))  # fmt: skip
        ok = [r.seconds for r in mine if r.status == 200]
        shed = [r for r in mine if r.status == 503]
        with_retry = sum(1 for r in shed if r.retry_after)
        shed_ms = f"{1000 * statistics.median(r.seconds for r in shed):.0f}" if shed else "–"
        ok_p50 = f"{statistics.median(ok):.2f}" if ok else "–"
        ok_max = f"{max(ok):.2f}" if ok else "–"
        lines.append(f"| `{path}` | {len(mine)} | {shown} | {with_retry} / {len(shed)} | {ok_p50} | {ok_max} | "
                     f"{shed_ms} |")  # fmt: skip
    lines += [
        "",
        f"- `/health` during the flood: {len(during)} probes, {len(answered)} answered within {PROBE_TIMEOUT_S:g} s "
        f"({missed} missed, {slow} over 1 s); latency p50 {1000 * statistics.median(answered):.1f} ms, "
        f"p99 {1000 * percentile(answered, 0.99):.1f} ms, max {1000 * max(answered):.1f} ms."
        if answered
        else f"- `/health` during the flood: {len(during)} probes, none answered within {PROBE_TIMEOUT_S:g} s.",
        f"- Resident memory of the server: start {rss_start / mb:.0f} MB, peak {max(rss) / mb:.0f} MB, "
        f"end {rss_end / mb:.0f} MB (sampled every {PROBE_EVERY_S:g} s; end = about 1 s after recovery).",
        "- Recovery (3 consecutive rounds of a 20-token `/generate` and a 1-text `/sentiment` within 1.5× their "
        f"latency before the flood, {1000 * result['baseline'][0]:.0f} ms and {1000 * result['baseline'][1]:.0f} ms, "
        f"or within 10 ms of it): {recovery}",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generate", type=int, default=300)
    parser.add_argument("--sentiment", type=int, default=300)
    parser.add_argument("--forecast", type=int, default=300)
    parser.add_argument("--timeout", type=float, default=120.0, help="client timeout per request (s)")
    parser.add_argument("--budget", type=float, default=180.0, help="the whole flood at most this long (s)")
    parser.add_argument("--idle", type=int, default=2_000, help="idle connections in the connections phase")
    parser.add_argument("--slow", type=int, default=250, help="slow-loris connections")
    parser.add_argument("--short", type=int, default=250, help="connections with a short body")
    parser.add_argument("--quick", action="store_true", help="30 of each, nothing written")
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    args = parser.parse_args()
    counts = {"/generate": args.generate, "/sentiment": args.sentiment, "/forecast": args.forecast}
    held = {"idle": args.idle, "slow": args.slow, "short": args.short}
    if args.quick:
        counts = dict.fromkeys(counts, 30)
        held = dict.fromkeys(held, 30)
    env = {**os.environ, "CELLSTATE_LOG_LEVEL": "warning", "CELLSTATE_ACCESS_LOG": "false",
           "CELLSTATE_MODELS_DIR": str(REPO / "models")}  # fmt: skip
    logs = REPO / "runs" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    with live_server(sys.executable, REPO, env, log_file=logs / "overload.log") as (url, proc):
        result = asyncio.run(flood(url, proc.pid, counts, args.timeout, args.budget))
        held_result = asyncio.run(connections(url, held, limit=60))
    log_lines = (logs / "overload.log").read_text(errors="replace").splitlines()
    names = sorted(k for k in os.environ if k.startswith("CELLSTATE_") and k not in ("CELLSTATE_MODELS_DIR",))
    settings = ("default settings" if not names
                else "default settings except " + ", ".join(f"`{k}={os.environ[k]}`" for k in names))  # fmt: skip
    text = report(result, counts, args.timeout, settings)
    text += "\n".join(connections_report(held_result, held)) + "\n"
    tracebacks = sum(1 for line in log_lines if line.startswith("Traceback"))
    text += f"\nServer log over the whole run (level warning): {len(log_lines)} lines, {tracebacks} tracebacks.\n"
    print(text)
    print("rounds after the flood (ms):", [(round(1000 * g), round(1000 * s)) for g, s in result["rounds"][:40]])
    if not args.quick:
        write_section(args.out, "overload", text)


if __name__ == "__main__":
    main()
