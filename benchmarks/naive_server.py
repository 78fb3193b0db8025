"""The baseline most tutorials write: PyTorch eager inside a FastAPI route, re-feeding the whole prefix for every new
token, one request at a time. Used only by the benchmark, never by the service.

It builds a model of exactly the shape of the served word LM (from its manifest) with seeded random weights: speed
does not depend on the weights' values, and the trained PyTorch checkpoint is not committed.

    python -m benchmarks.naive_server --port 8100
"""

from __future__ import annotations

import argparse
import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
import uvicorn
from fastapi import FastAPI

from service.manifest import read_manifest
from service.registry import discover
from service.tokenizer import Vocab, detokenize, tokenize
from training.wordlm.model import WordLM, WordLMConfig


def create_naive_app(models_dir: Path, threads: int) -> FastAPI:
    version_dir = discover(models_dir)["wordlm"][0]
    manifest = read_manifest(version_dir)
    assert manifest.tokenizer is not None
    vocab = Vocab.load(version_dir / manifest.tokenizer.vocab_file)
    fields = set(WordLMConfig.__dataclass_fields__)
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    model = WordLM(WordLMConfig(**{k: v for k, v in manifest.config.items() if k in fields})).eval()
    # One request at a time, always on the same thread. (A plain `def` route behind a lock runs each request on
    # whichever pool thread got it; each such thread brings its own OpenMP team, and the idle teams' spinning made
    # that version ~3x slower at 8 clients. This baseline is the kinder of the two.)
    worker = ThreadPoolExecutor(max_workers=1)
    app = FastAPI(title="naive baseline")

    @app.get("/ready")
    def ready() -> dict[str, bool]:
        return {"ready": True}

    def decode(prompt: str, max_new_tokens: int) -> list[int]:
        ids = vocab.encode(tokenize(prompt))
        new: list[int] = []
        with torch.no_grad():
            for _ in range(max_new_tokens):
                logits, _ = model(torch.tensor([ids + new]))  # the whole prefix, every token
                new.append(int(logits[0, -1].argmax()))
        return new

    @app.post("/generate")
    async def generate(body: dict[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        new = await loop.run_in_executor(worker, decode, body["prompt"], int(body.get("max_new_tokens", 50)))
        return {"text": detokenize(vocab.decode(new)), "usage": {"completion_tokens": len(new)}}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    uvicorn.run(create_naive_app(args.models_dir, args.threads), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
