"""Sentiment engine: tokenize -> length buckets -> one ONNX call per bucket -> probabilities per text, in order.

The graph takes `tokens int64 [batch, seq]` (right-padded with the pad id) and `lengths int64 [batch]`, and returns
`probs float32 [batch, classes]`. Its LSTMs stop at each row's length, so padding never changes a result; but the
LSTM's cost grows with batch x longest row, so texts are sorted by length and cut into buckets (measured on 256
snippets of 1-45 tokens: one call padded to the longest took ~2.9x as long as one call per bucket).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...registry import LoadedModel
from ...tokenizer import Vocab, tokenize

# Upper bounds (in tokens) of the length buckets; texts up to the model's max_tokens fall in the last one.
DEFAULT_BUCKETS = (8, 16, 32, 64)


NAME = "sentiment"


@dataclass
class EncodedSnippet:
    ids: list[int]  # what the model reads: at most max_tokens ids
    tokens: int  # len(ids)
    unknown: int  # ids that are <unk>
    truncated: bool  # the text had more than max_tokens tokens


@dataclass
class Classification:
    label: str
    probabilities: dict[str, float]
    tokens: int
    unknown_tokens: int
    truncated: bool


class SentimentEngine:
    def __init__(self, model: LoadedModel, buckets: Sequence[int] = DEFAULT_BUCKETS) -> None:
        self.model = model
        manifest = model.manifest
        assert manifest.tokenizer is not None, "a sentiment model needs a tokenizer"
        self.session = model.sessions["classify"]
        self.labels: list[str] = list(manifest.config["labels"])
        self.max_tokens: int = int(manifest.config["max_tokens"])
        self.vocab = Vocab.load(model.directory / manifest.tokenizer.vocab_file)
        self.pad_id = self.vocab.stoi[manifest.config["pad_token"]]
        self.add_eos = manifest.tokenizer.eos == "line"
        self.buckets = sorted({b for b in buckets if b < self.max_tokens} | {self.max_tokens})

    def encode(self, text: str) -> EncodedSnippet:
        """Tokenize one text and cut it to max_tokens. The text must contain at least one token."""
        tokens = tokenize(text, add_eos=self.add_eos)
        ids = self.vocab.encode(tokens[: self.max_tokens])
        assert ids, "an empty text reached the engine (the request schema rejects them)"
        unk = self.vocab.unk_id
        return EncodedSnippet(
            ids=ids, tokens=len(ids), unknown=sum(i == unk for i in ids), truncated=len(tokens) > self.max_tokens
        )

    def bucket_plan(self, lengths: Sequence[int]) -> list[np.ndarray]:
        """Row indices per ONNX call: sorted by length, grouped by bucket (empty buckets skipped)."""
        order = np.argsort(np.asarray(lengths), kind="stable")
        groups: dict[int, list[int]] = {}
        for i in order:
            groups.setdefault(bisect.bisect_left(self.buckets, lengths[i]), []).append(int(i))
        return [np.asarray(rows) for _, rows in sorted(groups.items())]

    def run(self, rows: Sequence[Sequence[int]]) -> np.ndarray:
        """One ONNX call: id sequences (each 1..max_tokens long) -> probs (B, classes) float32."""
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        tokens = np.full((len(rows), int(lengths.max())), self.pad_id, dtype=np.int64)  # (B, T_max)
        for i, r in enumerate(rows):
            tokens[i, : len(r)] = r
        probs: np.ndarray = self.session.run(None, {"tokens": tokens, "lengths": lengths})[0]
        return probs

    def probabilities(self, encoded: Sequence[EncodedSnippet]) -> np.ndarray:
        """(N, classes) for N encoded texts, in input order."""
        probs = np.empty((len(encoded), len(self.labels)), dtype=np.float32)
        for rows in self.bucket_plan([e.tokens for e in encoded]):
            probs[rows] = self.run([encoded[i].ids for i in rows])
        return probs

    def classify(self, texts: Sequence[str]) -> list[Classification]:
        """Classify a batch of texts (each with at least one token); results in input order."""
        encoded = [self.encode(t) for t in texts]
        probs = self.probabilities(encoded)
        return [
            Classification(
                label=self.labels[int(np.argmax(p))],
                probabilities={label: float(v) for label, v in zip(self.labels, p, strict=True)},
                tokens=e.tokens,
                unknown_tokens=e.unknown,
                truncated=e.truncated,
            )
            for e, p in zip(encoded, probs, strict=True)
        ]
