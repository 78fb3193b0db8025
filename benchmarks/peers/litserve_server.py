"""LitServe serving the same ONNX files, with its request batching: requests waiting in the queue are collected
for up to `--batch-timeout` seconds (at most 64), then decoded together to the end (static batches; the next batch
starts when this one is done). Same request and response JSON as the service's POST /generate and POST /sentiment.

    python -m benchmarks.peers.litserve_server --port 8102 --batch-timeout 0.005
"""

from __future__ import annotations

import argparse
from typing import Any

import litserve as ls

from benchmarks.peers.common import Sentiment, WordLM


class GenerateAPI(ls.LitAPI):
    def setup(self, device: str) -> None:
        self.model = WordLM()

    # No annotation on `request`: LitServe builds the route from it, and an unannotated one is the JSON body.
    def decode_request(self, request):  # type: ignore[no-untyped-def]
        return request

    def predict(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.model.generate(batch)

    def unbatch(self, output: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return output

    def encode_response(self, output: dict[str, Any]) -> dict[str, Any]:
        return output


class SentimentAPI(ls.LitAPI):
    """One text per element of the batch: each request's texts stay together and come back as its `results`."""

    def setup(self, device: str) -> None:
        self.model = Sentiment()

    def decode_request(self, request):  # type: ignore[no-untyped-def]
        return list(request["texts"])

    def predict(self, batch: list[list[str]]) -> list[list[dict[str, Any]]]:
        results = self.model.classify([text for texts in batch for text in texts])
        out, start = [], 0
        for texts in batch:
            out.append(results[start : start + len(texts)])
            start += len(texts)
        return out

    def unbatch(self, output: list[Any]) -> list[Any]:
        return output

    def encode_response(self, output: list[dict[str, Any]]) -> dict[str, Any]:
        return {"results": output}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8102)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--batch-timeout", type=float, default=0.005, help="seconds a batch waits to fill")
    args = parser.parse_args()
    batching = {"max_batch_size": args.max_batch_size, "batch_timeout": args.batch_timeout}
    apis = [GenerateAPI(api_path="/generate", **batching), SentimentAPI(api_path="/sentiment", **batching)]
    server = ls.LitServer(apis, accelerator="cpu", timeout=False)
    server.run(host=args.host, port=args.port, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
