"""The plain script: FastAPI + onnxruntime, each request's decode loop alone in the thread pool (a `def` route), no
batching. Same request and response JSON as the service's POST /generate and POST /sentiment.

    python -m benchmarks.peers.plain_fastapi --port 8101
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn
from fastapi import FastAPI

from benchmarks.peers.common import Sentiment, WordLM

app = FastAPI(title="plain FastAPI + onnxruntime")
wordlm = WordLM()
sentiment = Sentiment()


@app.get("/ready")
def ready() -> dict[str, bool]:
    return {"ready": True}


@app.post("/generate")
def generate(body: dict[str, Any]) -> dict[str, Any]:
    return wordlm.generate([body])[0]  # prefill, then one step call per token with (h, c)


@app.post("/sentiment")
def classify(body: dict[str, Any]) -> dict[str, Any]:
    return {"results": sentiment.classify(list(body["texts"]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")  # uvicorn's defaults otherwise


if __name__ == "__main__":
    main()
