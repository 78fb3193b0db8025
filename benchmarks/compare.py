"""cellstate against the stacks users would pick instead, in one interleaved run: the plain FastAPI + onnxruntime
script, LitServe (request batching, two windows) and BentoML (adaptive batching), all serving the same ONNX files
with the same tokenizer and greedy decoding (benchmarks/peers/), driven by the same load generator.

    python -m benchmarks.compare               # 3 rounds (~22 minutes), writes its section of BENCHMARKS.md
    python -m benchmarks.compare --quick       # one short round (smoke test)

Each round starts every system in turn, alone on a loopback port, measures it and stops it (round 1 of every
system, then round 2 ...); the tables give medians over rounds. Per system:
  fixed   100 new tokens, ignore_eos, greedy; closed loop at 1, 8 and 64 clients
  mixed   max_new_tokens log-uniform in 10-400, prompts of 1-120 words, 30% of requests may end at <eos>
          (ignore_eos false), greedy; closed loop at 1, 8 and 64 clients, then open loop: Poisson arrivals at one
          rate for every system (by default 90% of cellstate's mixed 64-client request rate in round 1)
  /sentiment  one short text per request, closed loop at 1 and 32 clients
cellstate also runs the generation workloads through POST /generate/stream ("cellstate, streamed"): time to first
token (TTFT) comes from there. The peers do not stream; their TTFT is not applicable (a client sees nothing before
the whole answer).
Every run is bounded: windows of wall time, in-flight requests awaited for at most --drain seconds (the rest are
counted as unfinished and abandoned), open-loop arrivals fixed in number by rate x window, at most 512 connections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.generation import NEW_TOKENS, PROMPTS, machine, write_section
from benchmarks.oneshot import REVIEWS
from tests.live_server import free_port

REPO = Path(__file__).resolve().parents[1]
LOGS = REPO / "runs" / "bench" / "compare"
MAX_CONNECTIONS = 512
EOS_SHARE = 0.3  # of mixed requests, those that may end at <eos>

# Prompts of the mixed workload are cut from this text (the opening of Alice's Adventures in Wonderland).
TEXT = """alice was beginning to get very tired of sitting by her sister on the bank, and of having nothing to do:
once or twice she had peeped into the book her sister was reading, but it had no pictures or conversations in it,
'and what is the use of a book,' thought alice 'without pictures or conversations?' so she was considering in her
own mind (as well as she could, for the hot day made her feel very sleepy and stupid), whether the pleasure of
making a daisy-chain would be worth the trouble of getting up and picking the daisies, when suddenly a white rabbit
with pink eyes ran close by her. there was nothing so very remarkable in that; nor did alice think it so very much
out of the way to hear the rabbit say to itself, 'oh dear! oh dear! i shall be late!' but when the rabbit actually
took a watch out of its waistcoat-pocket, and looked at it, and then hurried on, alice started to her feet, for it
flashed across her mind that she had never before seen a rabbit with either a waistcoat-pocket, or a watch to take
out of it, and burning with curiosity, she ran across the field after it, and fortunately was just in time to see
it pop down a large rabbit-hole under the hedge. in another moment down went alice after it, never once considering
how in the world she was to get out again. the rabbit-hole went straight on like a tunnel for some way, and then
dipped suddenly down, so suddenly that alice had not a moment to think about stopping herself before she found
herself falling down a very deep well."""
WORDS = TEXT.split()


# ---- workloads ---------------------------------------------------------------------------------------------------
def fixed_body(seed: int) -> dict[str, Any]:
    return {"prompt": PROMPTS[seed % len(PROMPTS)], "max_new_tokens": NEW_TOKENS, "temperature": 0,
            "ignore_eos": True}  # fmt: skip


def mixed_body(seed: int) -> dict[str, Any]:
    """The same seed gives the same request on every system."""
    rng = random.Random(seed)
    words = round(math.exp(rng.uniform(0.0, math.log(120))))
    start = rng.randrange(len(WORDS) - words)
    return {"prompt": " ".join(WORDS[start : start + words]),
            "max_new_tokens": round(math.exp(rng.uniform(math.log(10), math.log(400)))),
            "temperature": 0, "ignore_eos": rng.random() >= EOS_SHARE}  # fmt: skip


def sentiment_body(seed: int) -> dict[str, Any]:
    return {"texts": [REVIEWS[seed % len(REVIEWS)]]}


def closed_seed(client: int, n: int) -> int:
    return client * 100_003 + n


# ---- the load generator ------------------------------------------------------------------------------------------
@dataclass
class Run:
    seconds: float
    latencies: list[float]
    ttfts: list[float]
    tokens: int
    errors: int
    unfinished: int = 0
    offered: float = 0.0  # open loop: arrivals per second

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds

    def _pct(self, values: list[float], q: float, missing: int = 0) -> float:
        """Percentile with `missing` requests counted as infinitely slow (unfinished ones)."""
        ordered = sorted(values) + [math.inf] * missing
        if not ordered:
            return math.nan
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p50(self) -> float:
        return self._pct(self.latencies, 0.5, self.unfinished)

    @property
    def p99(self) -> float:
        return self._pct(self.latencies, 0.99, self.unfinished)

    @property
    def ttft50(self) -> float:
        return self._pct(self.ttfts, 0.5, self.unfinished) if self.ttfts else math.nan

    @property
    def ttft99(self) -> float:
        return self._pct(self.ttfts, 0.99, self.unfinished) if self.ttfts else math.nan


class Connection:
    """One keep-alive HTTP/1.1 connection on raw asyncio streams (as benchmarks/loadgen.py): JSON replies with a
    Content-Length, or a chunked Server-Sent-Events stream, whose first event's arrival is the time to first token."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, path: str, body: dict[str, Any], t0: float) -> tuple[int, int, float | None]:
        """-> (status, completion tokens, seconds from t0 to the first event or None)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        reader = self.reader
        assert reader is not None
        payload = json.dumps(body).encode()
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json"
                          f"\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload)  # fmt: skip
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        headers = dict(line.lower().split(": ", 1) for line in head[1:] if line)
        first: float | None = None
        if headers.get("transfer-encoding") == "chunked":
            stream = b""
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await reader.readexactly(size + 2)
                if size == 0:
                    break
                if first is None:
                    first = time.perf_counter() - t0
                stream += chunk[:-2]
            tokens = 0
            for event in stream.split(b"\n\n"):
                if event.startswith(b"event: done"):
                    tokens = int(json.loads(event.split(b"data: ", 1)[1])["usage"]["completion_tokens"])
            content = b""
        else:
            content = await reader.readexactly(int(headers.get("content-length", "0")))
            tokens = 0
            if status == 200 and path != "/sentiment":
                tokens = int(json.loads(content)["usage"]["completion_tokens"])
        if headers.get("connection") == "close":
            self.close()
        if status == 200 and path == "/sentiment":
            assert "results" in json.loads(content), content[:200]
        return status, tokens, first

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


async def _closed(url: tuple[str, int], path: str, body: Callable[[int], dict[str, Any]], clients: int,
                  seconds: float, drain: float) -> Run:  # fmt: skip
    latencies: list[float] = []
    ttfts: list[float] = []
    tokens = errors = 0
    start = time.perf_counter()
    deadline = start + seconds

    async def client(cid: int) -> None:
        nonlocal tokens, errors
        connection = Connection(*url)
        n = 0
        try:
            while n == 0 or time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    status, new, first = await connection.request(path, body(closed_seed(cid, n)), t0)
                except Exception:  # a broken connection or a malformed reply: an error, reconnect
                    status, new, first = 0, 0, None
                    connection.close()
                n += 1
                if status != 200:
                    errors += 1
                    await asyncio.sleep(0.01)
                    continue
                latencies.append(time.perf_counter() - t0)
                if first is not None:
                    ttfts.append(first)
                tokens += new
        finally:
            connection.close()

    tasks = [asyncio.ensure_future(client(i)) for i in range(clients)]
    _, pending = await asyncio.wait(tasks, timeout=seconds + drain)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return Run(time.perf_counter() - start, latencies, ttfts, tokens, errors, unfinished=len(pending))


async def _open(url: tuple[str, int], path: str, body: Callable[[int], dict[str, Any]], rate: float,
                seconds: float, drain: float, seed: int) -> Run:  # fmt: skip
    """Poisson arrivals at `rate` for `seconds`; latency runs from each request's scheduled arrival (a request
    waiting for a free connection is waiting for the server all the same)."""
    rng = random.Random(seed)
    arrivals, t = [], rng.expovariate(rate)
    while t < seconds:
        arrivals.append(t)
        t += rng.expovariate(rate)
    latencies: list[float] = []
    ttfts: list[float] = []
    tokens = errors = 0
    idle: list[Connection] = []
    slots = asyncio.Semaphore(MAX_CONNECTIONS)
    last_done = 0.0
    start = time.perf_counter()

    async def one(i: int, at: float) -> None:
        nonlocal tokens, errors, last_done
        async with slots:
            connection = idle.pop() if idle else Connection(*url)
            try:
                status, new, first = await connection.request(path, body(10_000_000 + seed + i), at)
            except asyncio.CancelledError:
                connection.close()  # the server sees the client go
                raise
            except Exception:  # a broken connection or a malformed reply
                connection.close()
                errors += 1
                return
            idle.append(connection)
        last_done = time.perf_counter()
        if status != 200:
            errors += 1
            return
        latencies.append(last_done - at)
        if first is not None:
            ttfts.append(first)
        tokens += new

    tasks = []
    for i, offset in enumerate(arrivals):
        at = start + offset
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        tasks.append(asyncio.ensure_future(one(i, at)))
    _, pending = await asyncio.wait(tasks, timeout=drain) if tasks else (set(), set())
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for connection in idle:
        connection.close()
    end = time.perf_counter() if pending else max(last_done, start + seconds)
    return Run(end - start, latencies, ttfts, tokens, errors, unfinished=len(pending), offered=rate)


# ---- the systems -------------------------------------------------------------------------------------------------
@dataclass
class System:
    name: str
    command: Callable[[int], list[str]]
    ready: str
    env: dict[str, str] = field(default_factory=dict)
    streams: bool = False


def systems(threads: int, python: dict[str, str]) -> list[System]:
    py = {name: python.get(name, sys.executable) for name in ("cellstate", "plain", "litserve", "bentoml")}
    bentoml_cli = str(Path(py["bentoml"]).with_name("bentoml"))
    cellstate_env = {"CELLSTATE_LOG_LEVEL": "warning", "CELLSTATE_ACCESS_LOG": "false", "CELLSTATE_HOST": "127.0.0.1",
                     "CELLSTATE_INTRA_OP_THREADS": str(threads), "CELLSTATE_BATCH_MAX_SIZE": "64"}  # fmt: skip

    def litserve(ms: int) -> System:
        def command(port: int) -> list[str]:
            return [py["litserve"], "-m", "benchmarks.peers.litserve_server", "--port", str(port), "--batch-timeout",
                    str(ms / 1000)]  # fmt: skip

        return System(f"LitServe, {ms} ms window", command, "/health")

    def cellstate(port: int) -> list[str]:
        return [py["cellstate"], "-m", "service"]

    def plain(port: int) -> list[str]:
        return [py["plain"], "-m", "benchmarks.peers.plain_fastapi", "--port", str(port)]

    def bentoml(port: int) -> list[str]:
        return [bentoml_cli, "serve", "benchmarks.peers.bentoml_service:Front", "--host", "127.0.0.1", "--port",
                str(port)]  # fmt: skip

    return [
        # The peers serve the float32 graphs: so does "cellstate" here. Its int8 variants (the default where they
        # measured faster within tolerance) run as a system of their own, against float32 in the same rounds.
        System("cellstate", cellstate, "/ready", {**cellstate_env, "CELLSTATE_PRECISION": "fp32"}, streams=True),
        System(INT8, cellstate, "/ready", {**cellstate_env, "CELLSTATE_PRECISION": "int8"}),
        System("plain FastAPI + onnxruntime", plain, "/ready"),
        litserve(5),
        litserve(20),
        System("BentoML, adaptive batching", bentoml, "/readyz"),
    ]


@contextmanager
def serve(system: System, threads: int, ours: set[int]) -> Iterator[tuple[tuple[str, int], int]]:
    """Start the system in its own process group on a free loopback port; stop the whole group afterwards."""
    import httpx

    port = free_port()
    env = {**os.environ, **system.env, "PEER_THREADS": str(threads), "CELLSTATE_PORT": str(port),
           "PYTHONPATH": str(REPO)}  # fmt: skip
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{system.name.split(',')[0].split()[0].lower()}-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(system.command(port), cwd=REPO, env=env, stdout=out, stderr=out,
                                start_new_session=True)  # fmt: skip
        ours.add(proc.pid)  # its session's CPU time is this run's, not a neighbour's
        try:
            deadline = time.monotonic() + 180
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{system.name} exited during start-up:\n{log.read_text()[-3000:]}")
                try:
                    if httpx.get(f"http://127.0.0.1:{port}{system.ready}", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{system.name} not ready within 180 s")
                time.sleep(0.2)
            yield ("127.0.0.1", port), proc.pid
        finally:
            for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=wait)
                    time.sleep(0.5)  # the group's other processes exit with it
                except subprocess.TimeoutExpired:
                    continue
            for pid in _pids():  # stragglers of this server's session only
                stat = _stat(pid)
                if stat is not None and stat[1] == proc.pid:
                    with suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)


class Server:
    """A running system that can be restarted: after a run that left requests unfinished (a server still busy with
    abandoned work would steal CPU from the next measurement)."""

    def __init__(self, system: System, threads: int, ours: set[int]) -> None:
        self.system, self.threads, self.ours = system, threads, ours
        self.restarts = 0
        self.start()

    def start(self) -> None:
        self._context = serve(self.system, self.threads, self.ours)
        self.url, self.pid = self._context.__enter__()

    def stop(self) -> None:
        self._context.__exit__(None, None, None)

    def restart(self) -> None:
        self.stop()
        self.start()
        self.restarts += 1


# ---- what else ran: CPU time of every process outside this run's sessions, sampled ---------------------------------
def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _stat(pid: int) -> tuple[int, int, str] | None:
    """(user+system clock ticks, session id, command name) of a process, None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12]), int(fields[3]), name


def _rss_mib(session: int) -> tuple[float, int]:
    """Resident memory (MiB) and process count of one process session (a server and its workers)."""
    total, count = 0.0, 0
    for pid in _pids():
        stat = _stat(pid)
        if stat and stat[1] == session:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")), 0)
            count += 1
    return total / 1024, count


class Neighbours:
    """Samples /proc every 2 s: cores used by processes outside this run (its own session and the servers')."""

    def __init__(self) -> None:
        self.ours: set[int] = {os.getsid(0)}
        self.others: dict[str, float] = {}
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._tick = os.sysconf("SC_CLK_TCK")

    def _snapshot(self) -> dict[int, tuple[int, int, str]]:
        return {pid: s for pid in _pids() if (s := _stat(pid)) is not None}

    def _loop(self) -> None:
        before, t0 = self._snapshot(), time.monotonic()
        while not self._stop.wait(2.0):
            now, t1 = self._snapshot(), time.monotonic()
            for pid, (ticks, sid, name) in now.items():
                if sid in self.ours:
                    continue
                used = ticks - before[pid][0] if pid in before else 0
                if used > 0:
                    self.others[name] = self.others.get(name, 0.0) + used / self._tick
            self.seconds += t1 - t0
            before, t0 = now, t1

    def __enter__(self) -> Neighbours:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> str:
        if self.seconds == 0:
            return "not measured"
        total = sum(self.others.values()) / self.seconds
        top = sorted(self.others.items(), key=lambda kv: -kv[1])[:4]
        names = ", ".join(f"{name} {used / self.seconds:.2f}" for name, used in top if used / self.seconds >= 0.01)
        return f"{total:.2f} cores on average" + (f" ({names})" if names else "")


def loadavg() -> str:
    return " / ".join(Path("/proc/loadavg").read_text().split()[:3])


# ---- one round of one system -------------------------------------------------------------------------------------
@dataclass
class Settings:
    clients: list[int]
    windows: dict[int, float]
    open_seconds: float
    sentiment_seconds: float
    drain: float
    rate: float | None


def measure(server: Server, s: Settings, results: dict[tuple[str, ...], list[Run]], round_no: int,
            parity: dict[str, dict[str, str]]) -> None:  # fmt: skip
    system = server.system

    def record(workload: str, label: str, clients: str, run: Run, last: bool = False) -> None:
        results.setdefault((workload, label, clients), []).append(run)
        if run.unfinished and not last:
            print(f"{system.name}: {run.unfinished} requests unfinished; restarting it", flush=True)
            server.restart()
        extra = f" | TTFT p50 {1000 * run.ttft50:.0f} ms" if run.ttfts else ""
        print(f"round {round_no} | {label:28s} | {workload:9s} | {clients:>11s} | {run.tokens_per_s:8,.0f} tok/s | "
              f"{run.requests_per_s:7.1f} req/s | p50 {run.p50:.3f} s | p99 {run.p99:.3f} s{extra} | "
              f"{run.requests} done, {run.errors} errors, {run.unfinished} unfinished", flush=True)  # fmt: skip

    # Warm-up, and the greedy texts every system must agree on.
    texts = parity.setdefault(system.name, {})
    for seed in range(4):
        for kind, make in (("fixed", fixed_body), ("mixed", mixed_body)):
            body = make(seed + 7)
            reply = asyncio.run(_one(server.url, "/generate", body))
            texts[f"{kind}{seed}"] = reply["text"]
    asyncio.run(_closed(server.url, "/sentiment", sentiment_body, 1, 0.3, s.drain))

    paths = [("/generate", system.name)]
    if system.streams:
        paths.append(("/generate/stream", f"{system.name}, streamed"))
    for workload, make in (("fixed", fixed_body), ("mixed", mixed_body)):
        for clients in s.clients:
            for path, label in paths:
                run = asyncio.run(_closed(server.url, path, make, clients, s.windows[clients], s.drain))
                record(workload, label, str(clients), run)
                if system.name == "cellstate" and workload == "mixed" and clients == max(s.clients) and \
                        path == "/generate" and s.rate is None:  # fmt: skip
                    s.rate = round(0.9 * run.requests_per_s, 1)
                    print(f"open-loop rate for every system: {s.rate} requests/s (90% of this run)", flush=True)
    for clients in (1, 32):
        record(
            "sentiment",
            system.name,
            str(clients),
            asyncio.run(_closed(server.url, "/sentiment", sentiment_body, clients, s.sentiment_seconds, s.drain)),
        )
    assert s.rate is not None
    for path, label in paths:  # last: a system that cannot keep up is stopped right after, work left and all
        run = asyncio.run(_open(server.url, path, mixed_body, s.rate, s.open_seconds, s.drain, seed=round_no))
        record("open", label, f"{s.rate:g}/s", run, last=path == paths[-1][0])


async def _one(url: tuple[str, int], path: str, body: dict[str, Any]) -> dict[str, Any]:
    connection = Connection(*url)
    try:
        if connection.writer is None:
            connection.reader, connection.writer = await asyncio.open_connection(*url)
        payload = json.dumps(body).encode()
        connection.writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)  # fmt: skip
        assert connection.reader is not None
        head = (await connection.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in head[1:] if line)
        content = await connection.reader.readexactly(int(headers["content-length"]))
        assert " 200 " in head[0] + " ", (head[0], content[:300])
        reply: dict[str, Any] = json.loads(content)
        return reply
    finally:
        connection.close()


# ---- the report --------------------------------------------------------------------------------------------------
PEERS = ("plain FastAPI + onnxruntime", "LitServe", "BentoML, adaptive batching")
INT8 = "cellstate, int8"


def med(runs: list[Run], attr: str) -> float:
    return statistics.median(getattr(r, attr) for r in runs)


def fmt_s(x: float) -> str:
    return "—" if math.isnan(x) else ("> drain" if math.isinf(x) else f"{x:.3f}")


def fmt_ms(x: float) -> str:
    return "n/a" if math.isnan(x) else ("> drain" if math.isinf(x) else f"{1000 * x:.0f}")


def best_litserve(results: dict[tuple[str, ...], list[Run]], workload: str, clients: str,
                  attr: str) -> tuple[float, str]:  # fmt: skip
    options = [(med(results[(workload, f"LitServe, {ms} ms window", clients)], attr), f"{ms} ms")
               for ms in (5, 20) if (workload, f"LitServe, {ms} ms window", clients) in results]  # fmt: skip
    return max(options) if options else (math.nan, "not run")


def peer_value(results: dict[tuple[str, ...], list[Run]], peer: str, workload: str, clients: str,
               attr: str) -> tuple[float, str]:  # fmt: skip
    if peer == "LitServe":
        return best_litserve(results, workload, clients, attr)
    runs = results.get((workload, peer, clients))
    return (med(runs, attr), "") if runs else (math.nan, "not run")


def div(a: float, b: float) -> float:
    return a / b if b else math.nan


def report(results: dict[tuple[str, ...], list[Run]], s: Settings, rounds: int, notes: list[str]) -> str:
    labels = list(dict.fromkeys(key[1] for key in results))
    cl = [str(c) for c in s.clients]
    lines = ["## Against the stacks users would pick instead", ""]
    lines += [*notes, ""]

    def summary_row(name: str, values: list[str]) -> str:
        return f"| {name} | " + " | ".join(values) + " |"

    # Headline: tokens/s, the layout.
    cols = [f"fixed, {c}" for c in cl] + [f"mixed, {c}" for c in cl] + [f"mixed open loop, {s.rate:g} req/s"]
    lines += ["**Generation, tokens/s** (medians; LitServe: the better of its two windows, which in brackets)", "",
              "| system | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]  # fmt: skip
    keys = [("fixed", c) for c in cl] + [("mixed", c) for c in cl] + [("open", f"{s.rate:g}/s")]
    best: list[float] = [0.0] * len(keys)
    for name in ("cellstate", *PEERS):
        values = []
        for i, (w, c) in enumerate(keys):
            if name == "cellstate":
                v, note = med(results[(w, name, c)], "tokens_per_s"), ""
            else:
                v, note = peer_value(results, name, w, c, "tokens_per_s")
                best[i] = max(best[i], 0.0 if math.isnan(v) else v)
            values.append(f"{v:,.0f}" + (f" ({note})" if note else ""))
        lines.append(summary_row(name, values))
    lines.append(summary_row("**cellstate / best peer**",
                             [f"**{div(med(results[(w, 'cellstate', c)], 'tokens_per_s'), best[i]):.2f}×**"
                              for i, (w, c) in enumerate(keys)]))  # fmt: skip
    int8_runs = {key: results.get((key[0], INT8, key[1])) for key in keys}
    if any(int8_runs.values()):
        lines.append(summary_row(f"{INT8} (its own graphs)", [
            f"{med(runs, 'tokens_per_s'):,.0f}" if runs else "not run" for runs in int8_runs.values()]))  # fmt: skip
        lines.append(summary_row("cellstate int8 / fp32", [
            f"{div(med(runs, 'tokens_per_s'), med(results[(w, 'cellstate', c)], 'tokens_per_s')):.2f}×" if runs
            else "–" for (w, c), runs in int8_runs.items()]))  # fmt: skip
    lines += ["", "**/sentiment, one short text per request, requests/s**", "",
              "| system | 1 client | 32 clients |", "|---|---|---|"]  # fmt: skip
    sbest = [0.0, 0.0]
    for name in ("cellstate", *PEERS):
        values = []
        for i, c in enumerate(("1", "32")):
            if name == "cellstate":
                v, note = med(results[("sentiment", name, c)], "requests_per_s"), ""
            else:
                v, note = peer_value(results, name, "sentiment", c, "requests_per_s")
                sbest[i] = max(sbest[i], 0.0 if math.isnan(v) else v)
            values.append(f"{v:,.0f}" + (f" ({note})" if note else ""))
        lines.append(summary_row(name, values))
    plain = [peer_value(results, PEERS[0], "sentiment", c, "requests_per_s")[0] for c in ("1", "32")]
    cs = [med(results[("sentiment", "cellstate", c)], "requests_per_s") for c in ("1", "32")]
    lines.append(summary_row("**cellstate / best peer**", [f"**{div(cs[i], sbest[i]):.2f}×**" for i in range(2)]))
    lines.append(summary_row("cellstate / plain script", [f"{div(cs[i], plain[i]):.2f}×" for i in range(2)]))
    int8_sentiment = [results.get(("sentiment", INT8, c)) for c in ("1", "32")]
    if all(int8_sentiment):
        values = [med(runs, "requests_per_s") for runs in int8_sentiment if runs]
        lines.append(summary_row(f"{INT8} (its own graph)", [f"{v:,.0f}" for v in values]))
        lines.append(summary_row("cellstate int8 / plain script (float32)",
                                 [f"{div(values[i], plain[i]):.2f}×" for i in range(2)]))  # fmt: skip

    # The goals, met or missed in this run.
    def ratio(w: str, c: str) -> float:
        return div(med(results[(w, "cellstate", c)], "tokens_per_s"), best[keys.index((w, c))])

    goals = []
    if "1" in cl and "8" in cl:
        goals.append(f"fixed ≥ best peer at 1 and 8 clients: {ratio('fixed', '1'):.2f}×, {ratio('fixed', '8'):.2f}×")
    if "64" in cl:
        goals.append(f"fixed ≥ 1.2× best peer at 64 clients: {ratio('fixed', '64'):.2f}×")
        goals.append(f"mixed ≥ 2× best peer at 64 clients: {ratio('mixed', '64'):.2f}×")
    if "64" in cl and results.get(("fixed", INT8, "64")):
        int8_64, fp32_64 = (med(results[("fixed", name, "64")], "tokens_per_s") for name in (INT8, "cellstate"))
        goals.append(f"int8 ≥ 1.6× fp32 at 64 clients (fixed): {div(int8_64, fp32_64):.2f}×")
    goals.append(f"/sentiment ≥ plain script at 1 client: {div(cs[0], plain[0]):.2f}×; ≥ best peer at 32: "
                 f"{div(cs[1], sbest[1]):.2f}×")  # fmt: skip
    open_key = f"{s.rate:g}/s"
    open_p99 = {label: med(results[("open", label, open_key)], "p99") for label in labels
                if ("open", label, open_key) in results}  # fmt: skip
    peer_p99 = {k: v for k, v in open_p99.items() if not k.startswith("cellstate")}
    if "cellstate" in open_p99 and peer_p99:
        best_peer = min(peer_p99, key=lambda k: peer_p99[k])
        goals.append(f"open loop at {s.rate:g} requests/s, p99 latency: cellstate {fmt_s(open_p99['cellstate'])} s, "
                     f"best peer ({best_peer}) {fmt_s(peer_p99[best_peer])} s")  # fmt: skip
    lines += ["", "Goals of issue 18, this run: " + "; ".join(goals) + ".", ""]

    # Full tables.
    header = ("| clients | system | tokens/s | requests/s | p50 latency (s) | p99 latency (s) | TTFT p50 (ms) | "
              "TTFT p99 (ms) | requests done | errors |")  # fmt: skip
    for workload, title in (("fixed", f"Fixed workload: {NEW_TOKENS} new tokens, ignore_eos, greedy; closed loop"),
                            ("mixed", "Mixed workload, closed loop")):  # fmt: skip
        lines += [f"**{title}**", "", header, "|---" * 10 + "|"]
        for c in cl:
            for label in labels:
                runs = results.get((workload, label, c))
                if runs:
                    lines.append(f"| {c} | {label} | {med(runs, 'tokens_per_s'):,.0f} | "
                                 f"{med(runs, 'requests_per_s'):,.1f} | {fmt_s(med(runs, 'p50'))} | "
                                 f"{fmt_s(med(runs, 'p99'))} | {fmt_ms(med(runs, 'ttft50'))} | "
                                 f"{fmt_ms(med(runs, 'ttft99'))} | {sum(r.requests for r in runs)} | "
                                 f"{sum(r.errors for r in runs)} |")  # fmt: skip
        lines.append("")
    lines += [f"**Mixed workload, open loop: Poisson arrivals at {s.rate:g} requests/s for {s.open_seconds:g} s**"
              " (latency from each request's scheduled arrival; unfinished = still running "
              f"{s.drain:g} s after the last arrival, counted as infinitely slow)", "",
              "| system | tokens/s | requests/s done | p50 latency (s) | p99 latency (s) | TTFT p50 (ms) | "
              "TTFT p99 (ms) | unfinished | errors |", "|---" * 9 + "|"]  # fmt: skip
    for label in labels:
        runs = results.get(("open", label, f"{s.rate:g}/s"))
        if runs:
            lines.append(f"| {label} | {med(runs, 'tokens_per_s'):,.0f} | {med(runs, 'requests_per_s'):,.1f} | "
                         f"{fmt_s(med(runs, 'p50'))} | {fmt_s(med(runs, 'p99'))} | {fmt_ms(med(runs, 'ttft50'))} | "
                         f"{fmt_ms(med(runs, 'ttft99'))} | {sum(r.unfinished for r in runs)} | "
                         f"{sum(r.errors for r in runs)} |")  # fmt: skip
    lines += ["", "**/sentiment**", "", "| clients | system | requests/s | p50 (ms) | p99 (ms) | errors |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for c in ("1", "32"):
        for label in labels:
            runs = results.get(("sentiment", label, c))
            if runs:
                lines.append(f"| {c} | {label} | {med(runs, 'requests_per_s'):,.1f} | {fmt_ms(med(runs, 'p50'))} | "
                             f"{fmt_ms(med(runs, 'p99'))} | {sum(r.errors for r in runs)} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one round of short windows (smoke test)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--seconds", type=float, default=5.0, help="closed-loop window (64 clients: 1.5x)")
    parser.add_argument("--open-seconds", type=float, default=8.0, help="open-loop arrivals last this long")
    parser.add_argument("--rate", type=float, help="open-loop requests/s (default: 90%% of cellstate's mixed rate)")
    parser.add_argument("--drain", type=float, default=20.0, help="seconds to await in-flight requests after a run")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--only", nargs="+", help="run only the systems whose names start with these")
    parser.add_argument(
        "--python",
        nargs="+",
        default=[],
        metavar="SYSTEM=PYTHON",
        help="run a system's server with another interpreter (its own venv), e.g. bentoml=/path",
    )
    parser.add_argument("--max-minutes", type=float, default=40.0, help="no new round starts after this")
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument("--no-write", action="store_true", help="print the section, leave BENCHMARKS.md alone")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    seconds = 1.5 if args.quick else args.seconds
    s = Settings(clients=args.clients, windows={c: seconds * (1.5 if c >= 64 else 1.0) for c in args.clients},
                 open_seconds=3.0 if args.quick else args.open_seconds, sentiment_seconds=seconds,
                 drain=10.0 if args.quick else args.drain, rate=args.rate)  # fmt: skip
    chosen = systems(args.threads, dict(p.split("=", 1) for p in args.python))
    if args.only:
        chosen = [x for x in chosen if x.name.startswith("cellstate") or x.name.lower().startswith(tuple(args.only))]
    command = "python -m benchmarks.compare " + shlex.join(sys.argv[1:])
    started, load_before = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), loadavg()
    results: dict[tuple[str, ...], list[Run]] = {}
    parity: dict[str, dict[str, str]] = {}
    memory: dict[str, tuple[float, int]] = {}
    restarts: dict[str, int] = {}
    t0 = time.monotonic()
    done_rounds = 0
    with Neighbours() as neighbours:
        for r in range(1, rounds + 1):
            if r > 1 and (time.monotonic() - t0) / 60 > args.max_minutes:
                print(f"--max-minutes {args.max_minutes:g} reached: stopping after {done_rounds} rounds", flush=True)
                break
            for system in chosen:
                server = Server(system, args.threads, neighbours.ours)
                try:
                    measure(server, s, results, r, parity)
                    memory[system.name] = _rss_mib(server.pid)
                    restarts[system.name] = restarts.get(system.name, 0) + server.restarts
                finally:
                    server.stop()
            done_rounds += 1
            print(f"round {r} done at {(time.monotonic() - t0) / 60:.1f} min; load {loadavg()}", flush=True)
    minutes = (time.monotonic() - t0) / 60
    reference = parity.get("cellstate", {})
    mismatches = {name: sorted(k for k, v in texts.items() if reference.get(k) != v)
                  for name, texts in parity.items() if name not in ("cellstate", INT8)}  # fmt: skip
    same = all(not m for m in mismatches.values())
    versions = _versions(args)
    notes = [
        f"Run: `{command}`, {started}, {done_rounds} interleaved round{'s' if done_rounds > 1 else ''} "
        f"({minutes:.0f} minutes); medians over rounds. Machine: {machine()}; {versions}.",
        f"Load on the machine: load average {load_before} (1/5/15 min) at the start, {loadavg()} at the end; "
        f"processes outside this run used {neighbours.summary()} of the 2 shared cores while it ran "
        "(load generator, servers and everything else share them).",
        "Every system serves the committed ONNX files of the word LM and the sentiment model with the service's "
        "tokenizer, the same onnxruntime settings (2 intra-op threads, no spinning) and greedy decoding, one server "
        "at a time on a loopback port, driven by the same closed/open-loop generator on raw keep-alive "
        "connections (benchmarks/peers/, benchmarks/compare.py). "
        + (
            "The greedy texts agreed on every system (8 prompts checked)."
            if same
            else "Greedy texts that differed from cellstate's: "
            + "; ".join(f"{n}: {', '.join(m)}" for n, m in mismatches.items() if m)
            + "."
        ),
        f"Windows: closed loop {seconds:g} s ({seconds * 1.5:g} s at 64 clients), /sentiment {seconds:g} s, open "
        f"loop {s.open_seconds:g} s; requests in flight at a window's end are awaited (up to {s.drain:g} s) and "
        "counted. Mixed workload: max_new_tokens log-uniform in 10–400, prompts of 1–120 words cut from one text, "
        f"{EOS_SHARE:.0%} of requests with ignore_eos false (they may end at <eos>); the same requests in the same "
        "order on every system. cellstate: `python -m service` with CELLSTATE_LOG_LEVEL=warning, "
        "CELLSTATE_ACCESS_LOG=false, CELLSTATE_BATCH_MAX_SIZE=64 (continuous batching), CELLSTATE_PRECISION=fp32 "
        '(the float32 graphs the peers serve); "cellstate, int8" is the same with CELLSTATE_PRECISION=int8 (its '
        "own quantized graphs, so its greedy texts may differ; not in the peer ratios); its streamed rows use "
        "POST /generate/stream (TTFT = first event). The peers have no streaming endpoint here: TTFT not "
        "applicable (n/a). Plain script: one `def` route per request (thread pool, no batching), uvicorn's "
        "defaults (uvloop + httptools, as the bench extra installs them). LitServe: `max_batch_size` 64, "
        "`batch_timeout` 5 ms or 20 ms, static batches (a batch decodes to its longest member; finished rows "
        "leave the step batch). BentoML: `Front` service → batchable `Model` service (`max_batch_size` 64; `Front` "
        "retries a call on a keep-alive connection the `Model` worker dropped).",
        "Memory after the last round's load (RSS, all processes of the server): "
        + "; ".join(f"{n} {m:.0f} MiB in {k}" for n, (m, k) in memory.items())
        + ".",
    ]
    LOGS.mkdir(parents=True, exist_ok=True)
    raw = [{"workload": k[0], "system": k[1], "clients": k[2], "round": i + 1, "seconds": r.seconds,
            "requests": r.requests, "tokens": r.tokens, "errors": r.errors, "unfinished": r.unfinished,
            "p50": r.p50, "p99": r.p99, "ttft50": r.ttft50, "ttft99": r.ttft99}
           for k, runs in results.items() for i, r in enumerate(runs)]  # fmt: skip
    (LOGS / "results.json").write_text(json.dumps({"command": command, "rate": s.rate, "runs": raw}, indent=1))
    text = report(results, s, done_rounds, notes)
    print(text)
    if not args.no_write:
        write_section(args.out, "compare", text)


def _versions(args: argparse.Namespace) -> str:
    out = []
    for package in ("litserve", "bentoml", "fastapi", "uvicorn"):
        try:
            from importlib.metadata import version

            out.append(f"{package} {version(package)}")
        except Exception:  # a peer installed in its own venv only
            out.append(f"{package} (own venv)")
    return ", ".join(out)


if __name__ == "__main__":
    main()
