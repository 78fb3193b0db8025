"""Generation throughput and latency: this service vs a naive baseline vs the raw onnxruntime ceiling, in one run.

    python -m benchmarks.generation                     # full run (~10 minutes), writes BENCHMARKS.md
    python -m benchmarks.generation --quick             # a smoke run with short windows

Configurations, each measured with 1, 8 and 64 closed-loop clients asking for 100 new tokens (greedy):
  naive      PyTorch eager in a FastAPI route, re-feeding the whole prefix every token, one request at a time
  unbatched  this service with batching disabled (every request runs alone in the thread pool)
  batched    this service (continuous batching)
  raw        onnxruntime alone, no HTTP: prefill each prompt, then step all sequences together (the ceiling)
Rounds are interleaved (round 1 of every configuration, then round 2 ...) so machine noise hits them alike;
the tables give medians over rounds.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from benchmarks.loadgen import LoadResult, run_load
from service.config import Settings
from service.manifest import read_manifest
from service.registry import discover, session_options
from service.tokenizer import Vocab, tokenize
from tests.live_server import free_port, live_server

REPO = Path(__file__).resolve().parents[1]
NEW_TOKENS = 100
PROMPTS = [
    "alice was beginning to get very tired of sitting by her sister",
    "the white rabbit",
    "i went to the school",
    "'what is the use of a book,' thought alice",
    "the queen said",
    "father did nothing, and always said",
    "down, down, down",
    "the mathematics teacher",
]


def generate_body(client: int, n: int) -> dict[str, Any]:
    return {"prompt": PROMPTS[(client + n) % len(PROMPTS)], "max_new_tokens": NEW_TOKENS, "temperature": 0,
            "ignore_eos": True}  # fmt: skip


def completion_tokens(body: dict[str, Any]) -> int:
    return int(body["usage"]["completion_tokens"])


@dataclass
class RawResult:
    clients: int
    tokens_per_s: float
    per_token_ms: float  # wall time of one sequence's prefill + 100 steps, divided by 100


def raw_ceiling(model_path: Path, vocab: Vocab, layers: int, hidden: int, clients: int, seconds: float,
                threads: int) -> RawResult:  # fmt: skip
    """Batches of `clients` sequences, back to back for `seconds`: prefill each, then step all together."""
    session = ort.InferenceSession(str(model_path), session_options(Settings(intra_op_threads=threads)),
                                   providers=["CPUExecutionProvider"])  # fmt: skip
    tokens = batches = 0
    start = time.perf_counter()
    batch_times = []
    while time.perf_counter() - start < seconds or batches == 0:
        t0 = time.perf_counter()
        hs, cs, nxt = [], [], []
        for i in range(clients):
            ids = np.asarray([vocab.encode(tokenize(PROMPTS[i % len(PROMPTS)]))], dtype=np.int64)
            zeros = np.zeros((layers, 1, hidden), np.float32)
            logits, h, c = session.run(None, {"tokens": ids, "h0": zeros, "c0": zeros})
            hs.append(h), cs.append(c), nxt.append(int(logits[0, -1].argmax()))
        h, c = np.concatenate(hs, axis=1), np.concatenate(cs, axis=1)
        step = np.asarray(nxt, dtype=np.int64)[:, None]
        for _ in range(NEW_TOKENS - 1):
            logits, h, c = session.run(None, {"tokens": step, "h0": h, "c0": c})
            step = logits[:, 0].argmax(axis=-1)[:, None].astype(np.int64)
        batch_times.append(time.perf_counter() - t0)
        tokens += clients * NEW_TOKENS
        batches += 1
    elapsed = time.perf_counter() - start
    return RawResult(clients, tokens / elapsed, 1000 * statistics.median(batch_times) / NEW_TOKENS)


@contextmanager
def naive_server(threads: int, log: Path) -> Iterator[str]:
    port = free_port()
    cmd = [sys.executable, "-m", "benchmarks.naive_server", "--port", str(port), "--threads", str(threads)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=out)
        url = f"http://127.0.0.1:{port}"
        try:
            import httpx

            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, log.read_text()[-2000:]
                try:
                    if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "naive server not ready"
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()  # it may still be busy with abandoned requests: do not wait for them
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass
class Table:
    rows: dict[tuple[str, int], list[Any]] = field(default_factory=dict)

    def add(self, name: str, clients: int, result: Any) -> None:
        self.rows.setdefault((name, clients), []).append(result)

    def median(self, name: str, clients: int, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in self.rows[(name, clients)])


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    return (f"{cpu}; {len(os.sched_getaffinity(0))} cores; Python {platform.python_version()}; "
            f"onnxruntime {ort.__version__}; numpy {np.__version__}")  # fmt: skip


def report(table: Table, clients_list: list[int], rounds: int, windows: dict[int, float], model: str) -> str:
    lines = [
        "## Generation: tokens/s and latency (100 new tokens per request, greedy)",
        "",
        f"Machine: {machine()}. Model: {model}. Medians of {rounds} interleaved rounds; windows of "
        + ", ".join(f"{windows[c]:g} s at {c} client{'s' if c > 1 else ''}" for c in clients_list)
        + " (requests in flight when a window closes are awaited and counted; every client sends at least one)."
        + " Load generator, servers and the raw loop share the same cores; the load generator (asyncio streams)"
        + f" used {max(r.client_cpu for rows in table.rows.values() for r in rows if hasattr(r, 'client_cpu')):.2f}"
        + " of a core at most.",
        "",
        "| clients | configuration | tokens/s | p50 latency (s) | p99 latency (s) | requests done |",
        "|---|---|---|---|---|---|",
    ]
    for c in clients_list:
        for name in ("naive", "unbatched", "batched"):
            if (name, c) not in table.rows:
                continue
            lines.append(f"| {c} | {name} | {table.median(name, c, 'tokens_per_s'):,.0f} | "
                         f"{table.median(name, c, 'p50'):.3f} | {table.median(name, c, 'p99'):.3f} | "
                         f"{sum(r.requests for r in table.rows[(name, c)])} |")  # fmt: skip
        lines.append(f"| {c} | raw onnxruntime (ceiling) | {table.median('raw', c, 'tokens_per_s'):,.0f} | "
                     f"per token {table.median('raw', c, 'per_token_ms'):.3f} ms | | |")  # fmt: skip
    lines += ["", "Ratios (medians):", ""]
    for c in clients_list:
        b = table.median("batched", c, "tokens_per_s")
        parts = [
            f"- {c} client{'s' if c > 1 else ''}: batched / naive = "
            f"{b / table.median('naive', c, 'tokens_per_s'):.1f}×",
            f"batched / unbatched = {b / table.median('unbatched', c, 'tokens_per_s'):.2f}×",
            f"batched / raw ceiling = {100 * b / table.median('raw', c, 'tokens_per_s'):.0f}%",
        ]
        if c == 1:
            service_ms = 1000 * table.median("batched", 1, "p50") / NEW_TOKENS
            raw_ms = table.median("raw", 1, "per_token_ms")
            parts.append(f"per-token latency {service_ms:.3f} ms vs raw {raw_ms:.3f} ms = {service_ms / raw_ms:.2f}×")
        lines.append("; ".join(parts))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short windows, one round (smoke test)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                        help="the service's and the raw loop's graph; the naive server is PyTorch")  # fmt: skip
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    windows = {c: (3.0 if args.quick else (12.0 if c < 64 else 20.0)) for c in args.clients}

    version_dir = discover(REPO / "models")["wordlm"][0]
    manifest = read_manifest(version_dir)
    assert manifest.tokenizer is not None
    vocab = Vocab.load(version_dir / manifest.tokenizer.vocab_file)
    layers, hidden = manifest.config["layers"], manifest.config["hidden"]
    logs = REPO / "runs" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    base_env = {**os.environ, "CELLSTATE_LOG_LEVEL": "warning", "CELLSTATE_ACCESS_LOG": "false",
                "CELLSTATE_INTRA_OP_THREADS": str(args.threads), "CELLSTATE_BATCH_MAX_SIZE": "64",
                "CELLSTATE_PRECISION": args.precision}  # fmt: skip
    step_file = version_dir / manifest.graph_files(args.precision)["step"]
    table = Table()
    with ExitStack() as stack:
        unbatched_env = {**base_env, "CELLSTATE_BATCHING": "false"}
        urls = {
            "naive": stack.enter_context(naive_server(args.threads, logs / "naive.log")),
            "unbatched": stack.enter_context(
                live_server(sys.executable, REPO, unbatched_env, log_file=logs / "unbatched.log")
            ),
            "batched": stack.enter_context(live_server(sys.executable, REPO, base_env, log_file=logs / "batched.log")),
        }
        urls = {name: u[0] if isinstance(u, tuple) else u for name, u in urls.items()}
        for url in urls.values():  # warm up: first requests pay for lazy initialisation
            run_load(url, "/generate", generate_body, 1, 1.0, completion_tokens)
        for r in range(rounds):
            for c in args.clients:
                for name, url in urls.items():
                    result: LoadResult = run_load(url, "/generate", generate_body, c, windows[c], completion_tokens)
                    table.add(name, c, result)
                    print(f"round {r + 1} | {c:2d} clients | {name:9s} | {result.tokens_per_s:8,.0f} tokens/s | "
                          f"p50 {result.p50:.3f} s | p99 {result.p99:.3f} s | {result.requests} requests "
                          f"| {result.errors} errors", flush=True)  # fmt: skip
                raw = raw_ceiling(step_file, vocab, layers, hidden, c, windows[c], args.threads)
                table.add("raw", c, raw)
                print(f"round {r + 1} | {c:2d} clients | raw       | {raw.tokens_per_s:8,.0f} tokens/s | "
                      f"{raw.per_token_ms:.3f} ms/token", flush=True)  # fmt: skip
    text = report(table, args.clients, rounds, windows, f"{manifest.name} v{manifest.version}, {args.precision}")
    print(text)
    write_section(args.out, "generation", text)


def write_section(path: Path, name: str, text: str) -> None:
    """Replace (or append) the section between this benchmark's markers in BENCHMARKS.md."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{text}{end}\n"
    current = path.read_text() if path.exists() else "# Benchmarks\n\nProduced by the scripts in `benchmarks/`.\n\n"
    if begin in current:
        head, rest = current.split(begin, 1)
        current = head + block + rest.split(end, 1)[1].lstrip("\n")
    else:
        current = current.rstrip("\n") + "\n\n" + block
    path.write_text(current)


if __name__ == "__main__":
    main()
