"""Where a request's time goes: a sampling profiler (py-spy) on a real server, samples sorted into the stages of
a request, in CPU milliseconds per /sentiment request and per generated token.

    python -m benchmarks.profile                          # this checkout, writes the section in BENCHMARKS.md
    python -m benchmarks.profile --repo /tmp/before --label before --no-write   # another checkout, same models

One closed-loop client (the per-request overhead is what one client pays), `--seconds` of load per workload, py-spy
sampling every thread of the server at `--rate` Hz (idle threads excluded). Each sample is put in the stage of its
frame nearest the leaf that belongs to one (STAGES); what matches none is "other" (mostly asyncio's loop). A thread
waiting for the GIL counts as busy in the frame where it waits: on 2 cores that shows up as "queue hand-offs".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from benchmarks.generation import write_section
from tests.live_server import live_server

REPO = Path(__file__).resolve().parents[1]
PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")

# (stage, substrings of "function (file)" that put a frame in it), most specific first.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("onnxruntime", ("onnxruntime_inference_collection",)),
    ("logging", ("logging/__init__", "_log_access", "/logging/")),
    ("sampling", ("service/sampling.py",)),
    ("detokenization", ("feed (service/tokenizer.py", "detokenize")),
    ("tokenization", ("service/tokenizer.py",)),
    ("model pre/post-processing", ("engine.py", "service/engines/")),
    ("route and family service", ("service/families/", "service/routes/")),
    ("serialisation", ("serialize_response", "jsonable_encoder", "json/encoder", "render (", "model_dump")),
    ("validation", ("pydantic", "request_body_to_args", "solve_dependencies", "_validate")),
    (
        "middleware",
        ("service/security.py", "service/observability.py", "service/app.py", "starlette/middleware", "exceptions.py"),
    ),
    ("HTTP parsing", ("h11", "httptools", "uvicorn/protocols")),
    (
        "queue hand-offs",
        (
            "service/batching.py",
            "queue.py",
            "threading.py",
            "concurrent/futures",
            "call_soon_threadsafe",
            "to_thread",
            "anyio",
        ),
    ),
]
SENTIMENT = {"texts": ["A gorgeous, witty, seductive movie."]}
GENERATE = {"prompt": "alice was beginning to get very tired of", "max_new_tokens": 100, "temperature": 0,
            "ignore_eos": True}  # fmt: skip


def stage_of(stack: str) -> str:
    """The stage of the frame nearest the leaf that belongs to one (ties: the order of STAGES)."""
    for frame in reversed(stack.split(";")):
        for stage, marks in STAGES:
            if any(mark in frame for mark in marks):
                return stage
    return "other"


def profile(repo: Path, path: str, body: dict[str, object], seconds: float, rate: int, pin: str
            ) -> tuple[Counter[str], int, int]:  # fmt: skip
    """(samples per stage, requests served, tokens generated) for one workload on a fresh server. py-spy now and
    then records nothing (and says nothing) on a busy machine: such a window is run again, up to three times."""
    for attempt in range(3):
        try:
            return profile_once(repo, path, body, seconds, rate, pin)
        except RuntimeError as exc:
            print(f"{path}: {exc}; attempt {attempt + 1} of 3", file=sys.stderr)
    raise RuntimeError(f"py-spy recorded nothing for {path} three times")


def profile_once(repo: Path, path: str, body: dict[str, object], seconds: float, rate: int, pin: str
                 ) -> tuple[Counter[str], int, int]:  # fmt: skip
    env = {**os.environ, "CELLSTATE_MODELS_DIR": str(REPO / "models"), "PYTHONPATH": str(repo),
           "CELLSTATE_PINNED_VERSIONS": pin, "CELLSTATE_PRECISION": "fp32"}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, live_server(sys.executable, repo, env) as (url, proc):
        out = Path(tmp) / "stacks.txt"
        with httpx.Client(base_url=url, timeout=30) as http:
            for _ in range(20):  # warm up
                http.post(path, json=body)
            spy = subprocess.Popen([PY_SPY, "record", "--pid", str(proc.pid), "--rate", str(rate), "--format", "raw",
                                    "--output", str(out), "--duration", str(int(seconds) + 1), "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
            time.sleep(0.5)  # py-spy attached
            requests = tokens = 0
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                answer = http.post(path, json=body).json()
                requests += 1
                tokens += answer.get("usage", {}).get("completion_tokens", 0)
            _, spy_err = spy.communicate(timeout=60)
            if not out.is_file():
                raise RuntimeError(f"py-spy wrote nothing: {spy_err.decode(errors='replace')[-2000:]}")
        stages: Counter[str] = Counter()
        for line in out.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if count.isdigit():  # a frame name with a line break in it splits its sample over two lines
                stages[stage_of(stack)] += int(count)
    return stages, requests, tokens


def table(results: dict[str, dict[str, float]], unit: str) -> list[str]:
    labels = list(results)
    stages = [s for s, _ in STAGES] + ["other"]
    lines = [f"| stage ({unit}) | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for stage in [*stages, "total"]:
        cells = [f"{results[label].get(stage, 0.0):.3f}" for label in labels]
        name = f"**{stage}**" if stage == "total" else stage
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def per_unit(stages: Counter[str], units: int, rate: int) -> dict[str, float]:
    ms = {stage: 1000 * n / rate / max(units, 1) for stage, n in stages.items()}
    ms["total"] = sum(ms.values())
    return ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, action="append", help="checkout(s) to profile (default: this one)")
    parser.add_argument("--label", action="append", help="a label per --repo")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pin", default="{}", help='model versions, e.g. {"wordlm": 1}: the same files for all')
    parser.add_argument("--no-write", action="store_true", help="print the tables, leave BENCHMARKS.md alone")
    args = parser.parse_args()
    repos = args.repo or [REPO]
    labels = args.label or [r.name for r in repos]
    # Interleaved rounds (round 1 of every checkout, then round 2 ...): samples add up over rounds, throughputs are
    # medians over rounds, so machine noise hits every checkout alike.
    samples = {label: {"sentiment": Counter[str](), "generate": Counter[str]()} for label in labels}
    units = {label: {"sentiment": 0, "generate": 0} for label in labels}
    rates: dict[str, dict[str, list[float]]] = {label: {"sentiment": [], "generate": []} for label in labels}
    for _ in range(args.rounds):
        for repo, label in zip(repos, labels, strict=True):
            stages, requests, _ = profile(repo, "/sentiment", SENTIMENT, args.seconds, args.rate, args.pin)
            samples[label]["sentiment"] += stages
            units[label]["sentiment"] += requests
            rates[label]["sentiment"].append(requests / args.seconds)
            stages, _, tokens = profile(repo, "/generate", GENERATE, args.seconds, args.rate, args.pin)
            samples[label]["generate"] += stages
            units[label]["generate"] += tokens
            rates[label]["generate"].append(tokens / args.seconds)
    sentiment = {label: per_unit(samples[label]["sentiment"], units[label]["sentiment"], args.rate) for label in labels}
    generate = {label: per_unit(samples[label]["generate"], units[label]["generate"], args.rate) for label in labels}
    for label in labels:
        sentiment[label]["requests/s"] = statistics.median(rates[label]["sentiment"])
        generate[label]["tokens/s"] = statistics.median(rates[label]["generate"])
    raw = {
        label: {"sentiment": sentiment[label], "generate": generate[label], "rounds": rates[label]} for label in labels
    }
    lines = ["## Where the time goes (py-spy, one client)", "",
             f"`python -m benchmarks.profile {' '.join(sys.argv[1:])}` — {args.rounds} interleaved rounds of "
             f"{args.seconds:.0f} s per workload, py-spy at {args.rate} Hz over every thread of the server (idle "
             "excluded), CPU ms per unit summed over rounds; throughputs are medians over rounds. The machine's 2 "
             f"cores were shared (load average {os.getloadavg()[0]:.1f} at the end).", "",
             "/sentiment, one short text, CPU ms per request:", "", *table(sentiment, "ms/request"), "",
             "requests/s: " + ", ".join(f"{k} {v['requests/s']:.0f}" for k, v in sentiment.items()), "",
             "/generate, 100 greedy tokens, CPU ms per generated token:", "", *table(generate, "ms/token"), "",
             "tokens/s: " + ", ".join(f"{k} {v['tokens/s']:.0f}" for k, v in generate.items()), ""]  # fmt: skip
    text = "\n".join(lines)
    print(text)
    print(json.dumps(raw, indent=1))
    if not args.no_write:
        write_section(REPO / "BENCHMARKS.md", "profile", text + "\n")


if __name__ == "__main__":
    main()
