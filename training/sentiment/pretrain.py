"""Optional language-model pre-training of the classifier's encoder (ULMFiT / ELMo style; off by default).

A forward and a backward LSTM language model with a shared embedding learn from unlabelled text (the train split's
snippets with labels unused, the archive's NYT editorial snippets, the word-LM books); `BiLanguageModel.transfer_to`
then copies them into the classifier's embedding and bidirectional LSTM. A pre-trained LM is cached on disk under a
key of everything it depends on, so experiments that share it train it once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from service.tokenizer import Vocab, tokenize
from training.data.sentiment import SentimentData, load_unlabelled_snippets
from training.kit.loop import Stopping, fit, progress
from training.kit.seed import set_seed
from training.sentiment.config import PretrainConfig, TrainConfig
from training.sentiment.encoding import Encoded, length_sorted_batches, pad_batch, shuffled_batches
from training.sentiment.model import BiLanguageModel, SentimentConfig

log = logging.getLogger(__name__)

SENTENCE_END = frozenset(".!?")


def sentence_pieces(tokens: Sequence[str], max_tokens: int) -> list[list[str]]:
    """Cut a token stream (the books) into sentences at . ! ? and pieces of at most `max_tokens`; <eos> dropped."""
    pieces: list[list[str]] = []
    current: list[str] = []
    for tok in tokens:
        if tok.startswith("<"):  # <eos> (line wraps inside sentences) and other specials
            continue
        current.append(tok)
        if tok in SENTENCE_END or len(current) >= max_tokens:
            pieces.append(current)
            current = []
    if current:
        pieces.append(current)
    return pieces


def unlabelled_corpus(data: SentimentData, cfg: PretrainConfig, cache_dir: Path) -> tuple[list[list[str]], str]:
    """Token sequences for LM pre-training and a description of where they come from."""
    sequences: list[list[str]] = []
    sources = []
    if cfg.use_train_texts:
        sequences += [tokenize(e.text, add_eos=False)[: cfg.max_tokens] for e in data.train]
        sources.append(f"{len(data.train)} train-split texts (labels unused)")
    if cfg.use_nyt and "nyt" not in data.domains():  # (when NYT is a labelled domain, its valid/test must not leak)
        texts, _ = load_unlabelled_snippets(cache_dir)
        sequences += [tokenize(t, add_eos=False)[: cfg.max_tokens] for t in texts]
        sources.append(f"{len(texts)} NYT editorial snippets (vaderSentiment archive, ratings unused)")
    if cfg.use_books:
        from training.data.text import load_corpus

        corpus = load_corpus(None, cache_dir)
        pieces = sentence_pieces(corpus.train, cfg.max_tokens)
        sequences += pieces
        sources.append(f"{len(pieces)} sentences of the word-LM books' train split")
    return [s for s in sequences if len(s) >= 2], "; ".join(sources)


@torch.no_grad()
def lm_perplexity(lm: BiLanguageModel, seqs: Sequence[Sequence[int]], batch_size: int = 256) -> float:
    """Perplexity of both directions together over the sequences of length >= 2."""
    lm.eval()
    total, count = 0.0, 0
    usable = [s for s in seqs if len(s) >= 2]
    for index in length_sorted_batches(usable, batch_size):
        tokens, lengths = pad_batch([usable[i] for i in index])
        nll, n = lm(tokens, lengths)
        total += float(nll)
        count += n
    return math.exp(total / max(count, 1))


def pretrain(
    lm: BiLanguageModel, corpus: list[list[int]], valid: list[list[int]], cfg: PretrainConfig, max_batches: int
) -> list[dict[str, Any]]:
    """Train both directions on the unlabelled sequences for `cfg.epochs` (or the budget); returns the history."""
    optimizer = torch.optim.Adam(lm.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(0)

    def train_epoch(epoch: int) -> dict[str, Any]:
        lm.train()
        total, count = 0.0, 0
        batches = list(shuffled_batches(len(corpus), cfg.batch_size, rng))
        if max_batches:
            batches = batches[:max_batches]
        bar = progress(batches, f"pretrain {epoch}")
        for b, index in enumerate(bar):
            tokens, lengths = pad_batch([corpus[i] for i in index])
            nll, n = lm(tokens, lengths)
            optimizer.zero_grad(set_to_none=True)
            (nll / n).backward()
            torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
            optimizer.step()
            total, count = total + nll.item(), count + n
            if b % 20 == 0:
                bar.set_postfix(ppl=f"{math.exp(total / count):.1f}")
        return {"train_perplexity": math.exp(total / count)}

    def report(record: dict[str, Any], improved: bool) -> None:
        log.info(
            "pretrain epoch %d | train ppl %.1f | valid ppl %.1f | %.1f min",
            record["epoch"],
            record["train_perplexity"],
            record["valid_perplexity"],
            record["minutes"],
        )

    stopping = Stopping("valid_perplexity", max_minutes=cfg.max_minutes)  # no early stop: the last epoch is kept
    return fit(cfg.epochs, train_epoch, lambda: lm_perplexity(lm, valid), stopping, report=report).history


def pretrain_key(vocab: Vocab, model_cfg: SentimentConfig, cfg: TrainConfig) -> str:
    """What a pre-trained LM depends on: vocabulary, sizes, dropouts, pre-training settings and seed."""
    model = {k: v for k, v in model_cfg.to_dict().items() if k not in ("pooling", "num_classes")}  # not in the LM
    content = {
        "vocab": vocab.itos,
        "model": model,
        "pretrain": asdict(cfg.pretrain),
        "seed": cfg.seed,
        "max_batches": cfg.max_batches,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def pretrained_lm(
    data: SentimentData,
    vocab: Vocab,
    valid: Encoded,
    model_cfg: SentimentConfig,
    cfg: TrainConfig,
    cache_dir: Path,
    lm_cache: Path | None,
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Pre-train the bidirectional LM, or reuse the one in `lm_cache` when it was made with the same settings."""
    key = pretrain_key(vocab, model_cfg, cfg)
    if lm_cache is not None and lm_cache.is_file():
        cached = torch.load(lm_cache, map_location="cpu", weights_only=True)
        if cached.get("key") == key:
            log.info("reusing the pre-trained language model in %s", lm_cache)
            return cached["state"], cached["record"]
    set_seed(cfg.seed)
    sequences, source = unlabelled_corpus(data, cfg.pretrain, cache_dir)
    corpus = [vocab.encode(s) for s in sequences]
    log.info("pre-training on %d sequences, %d tokens: %s", len(corpus), sum(map(len, corpus)), source)
    lm = BiLanguageModel(model_cfg, cfg.pretrain.cutoffs)
    started = time.monotonic()
    history = pretrain(lm, corpus, valid.ids, cfg.pretrain, cfg.max_batches)
    record = {
        **asdict(cfg.pretrain),
        "corpus": source,
        "sequences": len(corpus),
        "tokens": sum(map(len, corpus)),
        "history": history,
        "minutes": round((time.monotonic() - started) / 60, 2),
    }
    state = lm.state_dict()
    if lm_cache is not None:
        lm_cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"key": key, "state": state, "record": record}, lm_cache)
    return state, record
