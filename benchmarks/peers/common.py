"""What every peer server shares: the committed ONNX files, read with the service's own tokenizer, and the decoding
rules of the service's POST /generate (greedy), so the same load generator drives every system and gets the same
text back.

- word LM: prefill the prompt in one call, then one call per token carrying (h, c); `<unk>` is never written,
  `<eos>` neither when `ignore_eos` is true (otherwise it ends the text and counts as a completion token, as in the
  service); `generate(requests)` decodes a batch together (static batching: finished rows leave the step batch,
  the answers all wait for the longest);
- sentiment: tokens + lengths -> probabilities, a batch padded to its longest text (the graph stops each row at
  its length).

Only numpy, onnxruntime and service/tokenizer.py (pure Python) are needed, so a peer can run from any venv that has
its framework plus those two.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from service.tokenizer import EOS, Detokenizer, Vocab, tokenize

REPO = Path(__file__).resolve().parents[2]
MODELS = Path(os.environ.get("PEER_MODELS_DIR", REPO / "models"))
THREADS = int(os.environ.get("PEER_THREADS", len(os.sched_getaffinity(0))))
DEFAULT_NEW_TOKENS = 100


def latest(family: str) -> tuple[Path, dict[str, Any]]:
    versions = sorted((p for p in (MODELS / family).iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    return versions[-1], json.loads((versions[-1] / "manifest.json").read_text())


def session(path: Path, threads: int = THREADS) -> ort.InferenceSession:
    """The service's onnxruntime settings (service/registry.py), so only the serving stack differs."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class WordLM:
    def __init__(self) -> None:
        directory, manifest = latest("wordlm")
        self.session = session(directory / manifest["graphs"]["step"]["file"])
        self.vocab = Vocab.load(directory / manifest["tokenizer"]["vocab_file"])
        self.eos_mode = manifest["tokenizer"].get("eos", "line")
        self.layers, self.hidden = manifest["config"]["layers"], manifest["config"]["hidden"]
        self.eos_id, self.unk_id = self.vocab.stoi[EOS], self.vocab.unk_id

    def run(self, tokens: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        logits, h, c = self.session.run(None, {"tokens": tokens, "h0": h, "c0": c})
        return logits[:, -1], h, c

    def generate(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Decode every request of the batch together; answers in request order."""
        n = len(requests)
        limits = [int(r.get("max_new_tokens", DEFAULT_NEW_TOKENS)) for r in requests]
        ignore_eos = np.array([bool(r.get("ignore_eos", False)) for r in requests])
        detoks, texts, counts, reasons = [], [""] * n, [0] * n, [""] * n
        prompt_tokens, hs, cs, rows = [], [], [], []
        zeros = np.zeros((self.layers, 1, self.hidden), np.float32)
        for r in requests:  # prefill: one call per prompt (prompts differ in length)
            tokens = tokenize(r["prompt"], eos=self.eos_mode)
            ids = self.vocab.encode(tokens)
            logits, h, c = self.run(np.asarray([ids], dtype=np.int64), zeros, zeros)
            detok = Detokenizer(self.eos_mode)
            detok.prime(tokens)
            detoks.append(detok)
            prompt_tokens.append(len(ids))
            hs.append(h)
            cs.append(c)
            rows.append(logits)
        active = list(range(n))  # which request each row of the step batch belongs to
        logits, h, c = np.concatenate(rows), np.concatenate(hs, axis=1), np.concatenate(cs, axis=1)
        while True:
            logits[:, self.unk_id] = -np.inf
            logits[ignore_eos[active], self.eos_id] = -np.inf
            picked = logits.argmax(axis=-1)
            keep = []
            for row, i in enumerate(active):
                token = int(picked[row])
                counts[i] += 1
                if token == self.eos_id:
                    reasons[i] = "eos"
                    continue
                texts[i] += detoks[i].feed(self.vocab.itos[token])
                if counts[i] >= limits[i]:
                    reasons[i] = "length"
                else:
                    keep.append(row)
            if not keep:
                break
            if len(keep) < len(active):  # finished rows leave the batch
                active = [active[row] for row in keep]
                picked, h, c = picked[keep], h[:, keep], c[:, keep]
            logits, h, c = self.run(picked[:, None].astype(np.int64), h, c)
        return [{"text": texts[i], "finish_reason": reasons[i],
                 "usage": {"prompt_tokens": prompt_tokens[i], "completion_tokens": counts[i]}}
                for i in range(n)]  # fmt: skip


class Sentiment:
    def __init__(self) -> None:
        directory, manifest = latest("sentiment")
        self.session = session(directory / manifest["graphs"]["classify"]["file"])
        self.vocab = Vocab.load(directory / manifest["tokenizer"]["vocab_file"])
        config = manifest["config"]
        self.labels, self.max_tokens = list(config["labels"]), int(config["max_tokens"])
        self.pad_id = self.vocab.stoi[config["pad_token"]]
        self.add_eos = manifest["tokenizer"].get("eos") == "line"

    def classify(self, texts: list[str]) -> list[dict[str, Any]]:
        encoded = [self.vocab.encode(tokenize(t, add_eos=self.add_eos)[: self.max_tokens]) or [self.vocab.unk_id]
                   for t in texts]  # fmt: skip
        lengths = np.array([len(ids) for ids in encoded], dtype=np.int64)
        tokens = np.full((len(encoded), int(lengths.max())), self.pad_id, dtype=np.int64)
        for i, ids in enumerate(encoded):
            tokens[i, : len(ids)] = ids
        probs = self.session.run(None, {"tokens": tokens, "lengths": lengths})[0]
        return [{"label": self.labels[int(p.argmax())],
                 "probabilities": {label: float(v) for label, v in zip(self.labels, p, strict=True)},
                 "tokens": len(ids)} for p, ids in zip(probs, encoded, strict=True)]  # fmt: skip
