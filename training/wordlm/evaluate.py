"""Perplexity of the word LM over a split, and of the Kneser-Ney baseline it is compared with."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from service.tokenizer import Vocab
from training.baselines import KneserNeyLM
from training.data.text import Corpus
from training.kit.export import ort_session
from training.wordlm.data import batchify, get_batch
from training.wordlm.model import WordLM, WordLMEnsemble

log = logging.getLogger(__name__)


def perplexity(model: WordLM | WordLMEnsemble, source: Tensor, bptt: int = 70) -> float:
    """Perplexity over a batchified split, carrying the state through it."""
    model.eval()
    state = model.init_state(source.size(1))
    total_nll, total_tokens = 0.0, 0
    with torch.no_grad():
        for i in range(0, source.size(0) - 1, bptt):
            inputs, targets = get_batch(source, i, bptt)
            logits, state = model(inputs, state)
            total_nll += F.cross_entropy(
                logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="sum"
            ).item()
            total_tokens += targets.numel()
    return math.exp(total_nll / max(total_tokens, 1))


def kneser_ney_baseline(corpus: Corpus, vocab: Vocab, order: int) -> dict[str, float]:
    """Valid and test perplexity of an interpolated modified Kneser-Ney model fitted on the train split."""
    log.info("baseline: interpolated modified Kneser-Ney %d-gram", order)
    kn = KneserNeyLM(order, len(vocab)).fit(vocab.encode(corpus.train))
    baseline = {
        "valid_perplexity": kn.perplexity(vocab.encode(corpus.valid)),
        "test_perplexity": kn.perplexity(vocab.encode(corpus.test)),
    }
    log.info("baseline: valid ppl %.2f | test ppl %.2f", baseline["valid_perplexity"], baseline["test_perplexity"])
    return baseline


def onnx_perplexity(path: Path, ids: list[int], batch_size: int, layers: int, hidden: int, bptt: int = 70) -> float:
    """Perplexity of an exported step graph over a token stream, carrying (h, c) through it as `perplexity` does
    (the same columns and windows), so a graph's figure and its PyTorch model's agree."""
    session = ort_session(path)
    source = batchify(ids, batch_size).numpy()
    h = np.zeros((layers, batch_size, hidden), dtype=np.float32)
    c = np.zeros_like(h)
    total_nll, total_tokens = 0.0, 0
    for i in range(0, source.shape[0] - 1, bptt):
        seq = min(bptt, source.shape[0] - 1 - i)
        inputs, targets = source[i : i + seq].T, source[i + 1 : i + 1 + seq].T
        logits, h, c = session.run(None, {"tokens": np.ascontiguousarray(inputs), "h0": h, "c0": c})
        logits = logits.astype(np.float64)
        top = logits.max(axis=-1, keepdims=True)
        log_z = top[..., 0] + np.log(np.exp(logits - top).sum(axis=-1))
        total_nll += float((log_z - np.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]).sum())
        total_tokens += targets.size
    return math.exp(total_nll / max(total_tokens, 1))
