"""BiLSTM sentiment classifier: data -> (pre-train) -> train -> export + evaluate.

    python -m training.sentiment train  [--data FILE.csv|FILE.jsonl] [options] --checkpoint runs/sentiment.pt
    python -m training.sentiment export --checkpoint runs/sentiment.pt [--models-dir models]
    python -m training.sentiment all    [train options]             # what `make models-sentiment` runs
    python -m training.sentiment sweep  [--variants a,b,...]        # the recorded experiments (validation only)

Recipe of the default model (each choice measured on the validation split, see README "Sentiment"):

  1. vocabulary from the train split (min count 2), specials <pad> = 0 and <unk> = 1;
  2. train 3 classifiers (seeds 1234, 1235, 1236) on the labelled train split: packed padded batches, pooling =
     [last states, max, mean], label smoothing 0.1, early stopping on validation accuracy;
  3. export the members as one ONNX graph that averages their probabilities (float16-stored weights).

Optional (`--pretrain-epochs N`, off by default: no measurable gain at the scale available here): pre-train a
forward and a backward 2-layer LSTM language model (shared embedding) on unlabelled text (the train split's
snippets with labels unused, the archive's NYT editorial snippets, the word-LM books), then copy them into the
classifier's embedding and bidirectional LSTM (ULMFiT / ELMo style) and fine-tune with gradual unfreezing.

Padded batches go through `pack_padded_sequence(enforce_sorted=False)` in training and the export keeps it as the
ONNX LSTM's `sequence_lens`, so a text's probabilities are the same alone and inside a padded batch (checked at
export, with the parity against PyTorch, before anything is written).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import Tensor
from tqdm import tqdm

from service.tokenizer import PAD, UNK, Vocab, tokenize
from training.baselines_sentiment import Vader, classification_metrics, fit_tfidf_logreg
from training.data.archives import DEFAULT_CACHE
from training.data.sentiment import (
    DEFAULT_LABELS,
    Example,
    SentimentData,
    load_auxiliary_labelled,
    load_out_of_domain,
    load_sentiment_data,
    load_unlabelled_snippets,
)
from training.kit.export import (
    DataSpec,
    ParityError,
    TokenizerSpec,
    check_parity,
    export_onnx,
    graph_spec,
    ort_session,
    publish_built,
)
from training.models import BiLanguageModel, BiLSTMClassifier, SentimentConfig, SentimentProbs

log = logging.getLogger("training.sentiment")

FAMILY = "sentiment"
PARITY_ATOL = 1e-5
INVARIANCE_ATOL = 1e-5
SENTENCE_END = frozenset(".!?")


@dataclass
class PretrainConfig:
    """Bidirectional LM pre-training of the embedding and LSTM on unlabelled text (epochs 0 = none).

    Off by default: 3 epochs (4.5 minutes, validation perplexity 378) gave no measurable gain (README, Sentiment).
    """

    epochs: int = 0
    batch_size: int = 64
    lr: float = 2e-3
    max_tokens: int = 60  # longer unlabelled sequences are cut into pieces of this size
    use_train_texts: bool = True  # the labelled train split's snippets, labels unused (never valid/test)
    use_nyt: bool = True
    use_books: bool = True
    cutoffs: tuple[int, ...] = (2000,)  # adaptive softmax: the 2000 most frequent words in the head
    max_minutes: float = 0.0


# Embedding 64 / hidden 96 matched 128/128 on validation (0.797 vs 0.790, one seed each) at a third of the size.
DEFAULT_MODEL: dict[str, Any] = {"embedding": 64, "hidden": 96}


@dataclass
class TrainConfig:
    seed: int = 1234
    split_seed: int = 1234  # the data split (fixed, so experiments with other seeds see the same rows)
    min_count: int = 2
    max_tokens: int = 128  # longer texts are truncated (the service does the same and says so)
    batch_size: int = 64
    lr: float = 3e-3
    encoder_lr_scale: float = 0.5  # learning rate of the pre-trained embedding + LSTM relative to the head
    freeze_epochs: int = 1  # epochs with the pre-trained embedding + LSTM frozen (gradual unfreezing)
    weight_decay: float = 0.0
    clip: float = 1.0
    epochs: int = 12
    patience: int = 3  # stop after this many epochs without a new best validation accuracy
    label_smoothing: float = 0.1
    # Add the NYT editorial snippets, labelled by the sign of their rating, to the training rows (default data
    # only; vocabulary, validation and test stay movie reviews).
    nyt_labels: bool = False
    ensemble: int = 3  # classifiers fine-tuned with seeds seed, seed+1, ...; their probabilities are averaged
    max_minutes: float = 0.0  # per classifier (0 = no budget)
    max_batches: int = 0  # per epoch (0 = all); for tests
    model: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_MODEL))  # SentimentConfig overrides
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---- encoding and batching ------------------------------------------------------------------------------------------
def text_tokens(text: str, max_tokens: int) -> list[str]:
    """The service's tokenization of a snippet: no <eos>, cut to `max_tokens`."""
    return tokenize(text, add_eos=False)[:max_tokens]


def build_vocab(train: Sequence[Example], min_count: int) -> Vocab:
    tokens = (t for e in train for t in tokenize(e.text, add_eos=False))
    vocab = Vocab.build(tokens, min_count, specials=(PAD, UNK))
    assert vocab.stoi[PAD] == 0, "padding id must be 0"
    return vocab


@dataclass
class Encoded:
    ids: list[list[int]]  # one list per text, 1..max_tokens ids
    labels: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.ids)


def encode(examples: Sequence[Example], vocab: Vocab, max_tokens: int) -> Encoded:
    ids = [vocab.encode(text_tokens(e.text, max_tokens)) or [vocab.unk_id] for e in examples]
    return Encoded(ids=ids, labels=np.asarray([e.label for e in examples], dtype=np.int64))


def pad_batch(seqs: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    """Right-pad with id 0: tokens (B, T_max) int64, lengths (B,) int64."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    tokens = torch.zeros(len(seqs), int(lengths.max()), dtype=torch.long)
    for i, s in enumerate(seqs):
        tokens[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return tokens, lengths


def shuffled_batches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    order = rng.permutation(n)
    for i in range(0, n, batch_size):
        yield order[i : i + batch_size]


def length_sorted_batches(seqs: Sequence[Sequence[int]], batch_size: int) -> Iterator[np.ndarray]:
    """Batches of similar lengths (little padding); the caller scatters results back by index."""
    order = np.argsort([len(s) for s in seqs], kind="stable")
    for i in range(0, len(order), batch_size):
        yield order[i : i + batch_size]


@torch.no_grad()
def predict_probs(model: torch.nn.Module, seqs: Sequence[Sequence[int]], batch_size: int = 256) -> np.ndarray:
    """(N, classes) probabilities of a classifier or of a SentimentProbs ensemble, in input order."""
    model.eval()
    out: np.ndarray | None = None
    for index in length_sorted_batches(seqs, batch_size):
        tokens, lengths = pad_batch([seqs[i] for i in index])
        result = model(tokens, lengths)
        probs = result if isinstance(model, SentimentProbs) else F.softmax(result, dim=-1)
        if out is None:
            out = np.zeros((len(seqs), probs.size(1)), dtype=np.float32)
        out[index] = probs.numpy()
    assert out is not None
    return out


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float((probs.argmax(axis=1) == labels).mean())


# ---- language-model pre-training ------------------------------------------------------------------------------------
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
    if cfg.use_nyt:
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
) -> list[dict[str, float]]:
    """Train both directions on the unlabelled sequences; returns per-epoch history (both-direction perplexity)."""
    optimizer = torch.optim.Adam(lm.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(0)
    history: list[dict[str, float]] = []
    started = time.monotonic()
    for epoch in range(1, cfg.epochs + 1):
        lm.train()
        total, count = 0.0, 0
        batches = list(shuffled_batches(len(corpus), cfg.batch_size, rng))
        if max_batches:
            batches = batches[:max_batches]
        bar = tqdm(batches, desc=f"pretrain {epoch}", unit="batch", leave=False, file=sys.stderr)
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
        valid_ppl = lm_perplexity(lm, valid)
        minutes = (time.monotonic() - started) / 60
        history.append(
            {
                "epoch": epoch,
                "train_perplexity": math.exp(total / count),
                "valid_perplexity": valid_ppl,
                "minutes": minutes,
            }
        )
        log.info(
            "pretrain epoch %d | train ppl %.1f | valid ppl %.1f | %.1f min",
            epoch,
            history[-1]["train_perplexity"],
            valid_ppl,
            minutes,
        )
        if cfg.max_minutes and minutes >= cfg.max_minutes:
            log.info("pre-training budget of %g minutes reached", cfg.max_minutes)
            break
    return history


# ---- fine-tuning ---------------------------------------------------------------------------------------------------
def train_classifier(
    model: BiLSTMClassifier, train: Encoded, valid: Encoded, cfg: TrainConfig, seed: int, pretrained: bool
) -> tuple[dict[str, Tensor], list[dict[str, float]]]:
    """Fine-tune with early stopping on validation accuracy; returns the best weights and the history."""
    set_seed(seed)
    rng = np.random.default_rng(seed)
    encoder = [*model.embed.parameters(), *model.lstm.parameters()]
    encoder_lr = cfg.lr * (cfg.encoder_lr_scale if pretrained else 1.0)
    optimizer = torch.optim.Adam(
        [{"params": encoder, "lr": encoder_lr}, {"params": model.head.parameters(), "lr": cfg.lr}],
        weight_decay=cfg.weight_decay,
    )
    best_acc, best_state, stalls = -1.0, None, 0
    history: list[dict[str, float]] = []
    started = time.monotonic()
    for epoch in range(1, cfg.epochs + 1):
        frozen = pretrained and epoch <= cfg.freeze_epochs
        for p in encoder:
            p.requires_grad_(not frozen)
        model.train()
        total_loss, seen, correct = 0.0, 0, 0
        batches = list(shuffled_batches(len(train), cfg.batch_size, rng))
        if cfg.max_batches:
            batches = batches[: cfg.max_batches]
        bar = tqdm(batches, desc=f"seed {seed} epoch {epoch:2d}", unit="batch", leave=False, file=sys.stderr)
        for b, index in enumerate(bar):
            tokens, lengths = pad_batch([train.ids[i] for i in index])
            targets = torch.from_numpy(train.labels[index])
            logits = model(tokens, lengths)
            loss = F.cross_entropy(logits, targets, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            optimizer.step()
            total_loss += loss.item() * len(index)
            seen += len(index)
            correct += int((logits.argmax(1) == targets).sum())
            if b % 20 == 0:
                bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
        valid_acc = accuracy(predict_probs(model, valid.ids), valid.labels)
        minutes = (time.monotonic() - started) / 60
        history.append(
            {
                "epoch": epoch,
                "train_loss": total_loss / seen,
                "train_accuracy": correct / seen,
                "valid_accuracy": valid_acc,
                "minutes": minutes,
            }
        )
        improved = valid_acc > best_acc
        log.info(
            "seed %d epoch %2d%s | train loss %.3f acc %.3f | valid acc %.4f%s | %.1f min",
            seed,
            epoch,
            " (encoder frozen)" if frozen else "",
            total_loss / seen,
            correct / seen,
            valid_acc,
            " (best)" if improved else "",
            minutes,
        )
        if improved:
            best_acc, stalls = valid_acc, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stalls += 1
            if stalls >= cfg.patience:
                log.info("early stop: %d epochs without a better validation accuracy", stalls)
                break
        if cfg.max_minutes and minutes >= cfg.max_minutes:
            log.info("time budget of %g minutes reached", cfg.max_minutes)
            break
    for p in encoder:
        p.requires_grad_(True)
    assert best_state is not None
    return best_state, history


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


def train(
    data: SentimentData,
    cfg: TrainConfig,
    checkpoint: Path | None,
    cache_dir: Path = DEFAULT_CACHE,
    lm_cache: Path | None = None,
) -> dict[str, Any]:
    """Pre-train (optional), fine-tune `cfg.ensemble` classifiers, save a self-describing checkpoint.

    Returns the checkpoint dictionary (validation metrics only: the test split is read at export)."""
    started = time.monotonic()
    set_seed(cfg.seed)
    vocab = build_vocab(data.train, cfg.min_count)
    train_rows = list(data.train)
    if cfg.nyt_labels:
        if tuple(data.labels) != DEFAULT_LABELS:
            raise ValueError("nyt_labels needs the labels negative/positive")
        extra, _ = load_auxiliary_labelled(cache_dir)
        train_rows += extra
        log.info("training rows: %d movie reviews + %d labelled NYT editorial snippets", len(data.train), len(extra))
    train_set = encode(train_rows, vocab, cfg.max_tokens)
    valid_set = encode(data.valid, vocab, cfg.max_tokens)
    model_cfg = SentimentConfig(vocab_size=len(vocab), num_classes=len(data.labels), **cfg.model)
    log.info("data %s | labels %s | vocab %d | model %s", data.sizes(), data.labels, len(vocab), model_cfg)

    lm_state: dict[str, Tensor] | None = None
    pretrain_record: dict[str, Any] = {"epochs": 0}
    if cfg.pretrain.epochs > 0:
        lm_state, pretrain_record = pretrained_lm(data, vocab, valid_set, model_cfg, cfg, cache_dir, lm_cache)

    members, histories, member_valid = [], [], []
    for k in range(cfg.ensemble):
        seed = cfg.seed + k
        set_seed(seed)
        model = BiLSTMClassifier(model_cfg)
        if lm_state is not None:
            lm = BiLanguageModel(model_cfg, cfg.pretrain.cutoffs)
            lm.load_state_dict(lm_state)
            lm.transfer_to(model)
        state, history = train_classifier(model, train_set, valid_set, cfg, seed, pretrained=lm_state is not None)
        members.append(state)
        histories.append(history)
        member_valid.append(max(h["valid_accuracy"] for h in history))

    ensemble = build_ensemble(model_cfg, members)
    valid_probs = predict_probs(ensemble, valid_set.ids)
    metrics = {
        "valid": classification_metrics(valid_set.labels, valid_probs.argmax(1), len(data.labels)),
        "valid_accuracy_per_member": member_valid,
    }
    minutes = (time.monotonic() - started) / 60
    log.info(
        "valid accuracy: members %s | ensemble %.4f | %.1f min",
        [round(a, 4) for a in member_valid],
        metrics["valid"]["accuracy"],
        minutes,
    )
    ckpt = {
        "family": FAMILY,
        "config": model_cfg.to_dict(),
        "train_config": asdict(cfg),
        "vocab": vocab.itos,
        "labels": data.labels,
        "members": members,
        "history": histories,
        "pretrain": pretrain_record,
        "metrics": metrics,
        "data": {"source": data.source, "sha256": data.sha256, "split": data.split},
        "minutes": minutes,
        "parameters": sum(p.numel() for p in ensemble.parameters()),
    }
    if checkpoint is not None:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        torch.save(ckpt, checkpoint)
    return ckpt


def build_ensemble(model_cfg: SentimentConfig, members: Sequence[dict[str, Tensor]]) -> SentimentProbs:
    models = []
    for state in members:
        model = BiLSTMClassifier(model_cfg)
        model.load_state_dict(state)
        models.append(model)
    return SentimentProbs(models).eval()


def load_checkpoint(path: Path) -> tuple[SentimentProbs, Vocab, dict[str, Any]]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("family") != FAMILY:
        raise ValueError(f"{path} is not a sentiment checkpoint")
    return build_ensemble(SentimentConfig(**ckpt["config"]), ckpt["members"]), Vocab(ckpt["vocab"]), ckpt


# ---- export --------------------------------------------------------------------------------------------------------
def padded_case(seqs: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
    tokens, lengths = pad_batch(seqs)
    return {"tokens": tokens.numpy(), "lengths": lengths.numpy()}


def parity_cases(vocab_size: int, max_tokens: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Padded batches of mixed lengths, always including length 1 and the maximum length, plus batch 1 alone."""
    rng = np.random.default_rng(seed)

    def seq(n: int) -> list[int]:
        return rng.integers(1, vocab_size, size=n).tolist()  # ids >= 1: real tokens, never <pad>

    mixed = [seq(n) for n in (1, max_tokens, 7, 2, 23, 1, 64 if max_tokens > 64 else max_tokens // 2 or 1)]
    return [
        padded_case([seq(1)]),
        padded_case([seq(max_tokens)]),
        padded_case(mixed),
        padded_case([seq(int(n)) for n in rng.integers(1, min(max_tokens, 40) + 1, size=16)]),
    ]


def check_padding_invariance(path: Path, cases: Sequence[dict[str, np.ndarray]], atol: float) -> float:
    """Each text's probabilities alone (unpadded, batch 1) == its row inside the padded batch. Returns max |diff|."""
    session = ort_session(path)
    worst = 0.0
    for feeds in cases:
        batched = session.run(None, feeds)[0]
        for i, n in enumerate(feeds["lengths"]):
            alone_feeds = {"tokens": feeds["tokens"][i : i + 1, :n], "lengths": feeds["lengths"][i : i + 1]}
            alone = session.run(None, alone_feeds)
            diff = float(np.max(np.abs(alone[0][0] - batched[i])))
            worst = max(worst, diff)
            if not diff <= atol:
                raise ParityError(
                    f"padding changes row {i} (length {n}) of a batch {feeds['tokens'].shape}: "
                    f"max |diff| {diff:.3g} > {atol:g}"
                )
    log.info("padding invariance ok: max |diff| %.3g (limit %g)", worst, atol)
    return worst


@torch.no_grad()
def round_weights_to_fp16(module: torch.nn.Module) -> None:
    """Make every parameter exactly representable in float16 (so fp16 storage loses nothing more)."""
    for p in module.parameters():
        p.copy_(p.half().float())


def store_weights_as_fp16(path: Path, min_elements: int = 64) -> None:
    """Rewrite the graph's float32 weights as float16 initializers, each read through a Cast back to float32.

    Halves the file; the computation stays float32 (onnxruntime folds the Casts into float32 constants when it loads
    the graph). The weights must already be float16-representable (`round_weights_to_fp16`), so the result is
    bit-identical to the float32 graph.
    """
    model = onnx.load(str(path))
    graph = model.graph
    initializers, casts = [], []
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or int(np.prod(init.dims)) < min_elements:
            initializers.append(init)
            continue
        weights = numpy_helper.to_array(init)
        half = weights.astype(np.float16)
        assert np.array_equal(half.astype(np.float32), weights), f"{init.name} is not float16-representable"
        initializers.append(numpy_helper.from_array(half, f"{init.name}.fp16"))
        casts.append(
            onnx.helper.make_node(
                "Cast", [f"{init.name}.fp16"], [init.name], to=onnx.TensorProto.FLOAT, name=f"{init.name}.cast"
            )
        )
    nodes = list(graph.node)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    del graph.node[:]
    graph.node.extend([*casts, *nodes])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def onnx_probs(path: Path, seqs: Sequence[Sequence[int]], batch_size: int = 256) -> np.ndarray:
    """Run the exported graph over many texts (length-sorted batches), in input order."""
    session = ort_session(path)
    out: np.ndarray | None = None
    for index in length_sorted_batches(seqs, batch_size):
        probs = session.run(None, padded_case([seqs[i] for i in index]))[0]
        if out is None:
            out = np.zeros((len(seqs), probs.shape[1]), dtype=np.float32)
        out[index] = probs
    assert out is not None
    return out


def evaluate_baselines(data: SentimentData, out_of_domain: dict[str, list[Example]]) -> dict[str, dict[str, Any]]:
    n_labels = len(data.labels)

    def texts(rows: Sequence[Example]) -> list[str]:
        return [e.text for e in rows]

    def labels(rows: Sequence[Example]) -> list[int]:
        return [e.label for e in rows]

    log.info("baseline: TF-IDF + logistic regression")
    tfidf, search = fit_tfidf_logreg(
        (texts(data.train), labels(data.train)), (texts(data.valid), labels(data.valid)), n_labels
    )
    results: dict[str, dict[str, Any]] = {
        "tfidf_logreg": {
            "test": classification_metrics(labels(data.test), tfidf.predict(texts(data.test)), n_labels),
            "valid": classification_metrics(labels(data.valid), tfidf.predict(texts(data.valid)), n_labels),
            "selection": search,
        }
    }
    for name, rows in out_of_domain.items():
        results["tfidf_logreg"][f"out_of_domain_{name}"] = classification_metrics(
            labels(rows), tfidf.predict(texts(rows)), n_labels
        )
    if tuple(data.labels) == DEFAULT_LABELS:
        log.info("baseline: VADER")
        vader = Vader()
        results["vader"] = {
            "test": classification_metrics(labels(data.test), vader.predict(texts(data.test)), n_labels),
            "valid": classification_metrics(labels(data.valid), vader.predict(texts(data.valid)), n_labels),
            "rule": "compound >= 0 -> positive",
        }
        for name, rows in out_of_domain.items():
            results["vader"][f"out_of_domain_{name}"] = classification_metrics(
                labels(rows), vader.predict(texts(rows)), n_labels
            )
    return results


def save_training_curve(ckpt: dict[str, Any], baseline_valid: float | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for k, history in enumerate(ckpt["history"]):
        epochs = [h["epoch"] for h in history]
        ax.plot(epochs, [h["valid_accuracy"] for h in history], marker="o", label=f"member {k + 1} (valid)")
        ax.plot(epochs, [h["train_accuracy"] for h in history], linestyle=":", color=ax.lines[-1].get_color())
    ax.axhline(ckpt["metrics"]["valid"]["accuracy"], color="black", label="ensemble (valid)")
    if baseline_valid is not None:
        ax.axhline(baseline_valid, color="grey", linestyle="--", label="TF-IDF + LR (valid)")
    ax.set_xlabel("fine-tuning epoch (dotted: train accuracy, with dropout)")
    ax.set_ylabel("accuracy")
    ax.set_title("sentiment BiLSTM fine-tuning")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def export(
    checkpoint: Path,
    models_dir: Path,
    data: SentimentData,
    version: int | None = None,
    cache_dir: Path = DEFAULT_CACHE,
    curve: bool = True,
    baselines: bool = True,
    experiments: list[dict[str, Any]] | None = None,
    fp16_weights: bool = True,
) -> Path:
    """Export to ONNX, check parity and padding invariance, evaluate model and baselines, publish the version.

    With `fp16_weights` the weights are rounded to float16 first and stored as float16 (half the file, float32
    compute); parity is then checked against the rounded PyTorch model, and every metric is measured on the file.
    """
    ensemble, vocab, ckpt = load_checkpoint(checkpoint)
    if fp16_weights:
        round_weights_to_fp16(ensemble)
    if data.sha256 != ckpt["data"]["sha256"] or data.split["ids_sha256"] != ckpt["data"]["split"]["ids_sha256"]:
        raise ValueError("the data or its split differs from the one this checkpoint was trained on")
    train_cfg = ckpt["train_config"]
    model_cfg = SentimentConfig(**ckpt["config"])
    max_tokens = train_cfg["max_tokens"]
    out_of_domain = load_out_of_domain(cache_dir) if data.builtin else {}
    baseline_metrics = evaluate_baselines(data, out_of_domain) if baselines else {}

    def build(out: Path) -> dict[str, Any]:
        onnx_path = out / "model.onnx"
        cases = parity_cases(model_cfg.vocab_size, max_tokens)
        example = tuple(torch.from_numpy(v) for v in cases[2].values())
        export_onnx(
            ensemble,
            example,
            onnx_path,
            ["tokens", "lengths"],
            ["probs"],
            {"tokens": {0: "batch", 1: "seq"}, "lengths": {0: "batch"}, "probs": {0: "batch"}},
        )
        if fp16_weights:
            store_weights_as_fp16(onnx_path)
        max_diff = check_parity(ensemble, onnx_path, cases, PARITY_ATOL)
        invariance = check_padding_invariance(onnx_path, cases[2:], INVARIANCE_ATOL)

        # The metrics describe the file that is served: they come from onnxruntime, not from PyTorch.
        def score(rows: Sequence[Example]) -> dict[str, float]:
            encoded = encode(rows, vocab, max_tokens)
            probs = onnx_probs(onnx_path, encoded.ids)
            return classification_metrics(encoded.labels, probs.argmax(1), len(data.labels))

        model_metrics: dict[str, Any] = {"test": score(data.test), "valid": score(data.valid)}
        for name, rows in out_of_domain.items():
            model_metrics[f"out_of_domain_{name}"] = score(rows)
        model_metrics["valid_accuracy_per_member"] = ckpt["metrics"]["valid_accuracy_per_member"]
        model_metrics["valid_accuracy_pytorch_float32"] = ckpt["metrics"]["valid"]["accuracy"]
        model_metrics["onnx_parity_max_abs_diff"] = max_diff
        model_metrics["padding_invariance_max_abs_diff"] = invariance
        log.info("model (onnx): %s", {k: v for k, v in model_metrics.items() if k != "valid_accuracy_per_member"})
        vocab.save(out / "vocab.json")
        if curve:
            tfidf_valid = baseline_metrics.get("tfidf_logreg", {}).get("valid", {}).get("accuracy")
            save_training_curve(ckpt, tfidf_valid, out / "training_curve.png")
        members = len(ckpt["members"])
        return {
            "name": f"sentiment-bilstm-{model_cfg.layers}x{model_cfg.hidden}" + (f"-x{members}" if members > 1 else ""),
            "description": (
                "Bidirectional LSTM text classifier (packed sequences, pooling over time"
                + (f", average of {members} fine-tuned members" if members > 1 else "")
                + "): tokens + lengths -> class probabilities."
            ),
            "graphs": {"classify": graph_spec(onnx_path)},
            "tokenizer": TokenizerSpec(
                vocab_file="vocab.json", vocab_size=len(vocab), min_count=train_cfg["min_count"], eos="none"
            ),
            "config": {
                **model_cfg.to_dict(),
                "labels": list(data.labels),
                "max_tokens": max_tokens,
                "pad_token": PAD,
                "unk_token": UNK,
                "members": members,
                "weights": "float16 storage, float32 compute" if fp16_weights else "float32",
            },
            "data": DataSpec(source=ckpt["data"]["source"], sha256=ckpt["data"]["sha256"], splits=data.split),
            "training": {
                **{k: v for k, v in train_cfg.items() if k != "pretrain"},
                "pretrain": ckpt["pretrain"],
                "parameters": ckpt["parameters"],
                "minutes": round(ckpt["minutes"], 2),
                "history": ckpt["history"],
                "experiments": experiments or [],
                "command": "python -m training.sentiment all",
            },
            "metrics": {"model": model_metrics, "baselines": baseline_metrics},
        }

    return publish_built(models_dir, FAMILY, build, version)


# ---- experiments (validation only) ---------------------------------------------------------------------------------
# Each variant changes the default recipe in one respect; `sweep` trains it (one member) and records its
# validation accuracy. Test accuracy is never looked at while choosing.
VARIANTS: dict[str, dict[str, Any]] = {
    # The first recipe: embedding/hidden 128, batch 32, lr 2e-3, patience 4, from scratch or after 3 epochs of
    # bidirectional LM pre-training (fine-tuned with the encoder frozen for 1 epoch, then at half the head's lr).
    "e128-b32-scratch": {
        "batch_size": 32,
        "lr": 2e-3,
        "patience": 4,
        "epochs": 15,
        "model": {"embedding": 128, "hidden": 128},
    },
    "e128-b32-pretrained": {
        "batch_size": 32,
        "lr": 2e-3,
        "patience": 4,
        "epochs": 15,
        "pretrain": {"epochs": 3},
        "model": {"embedding": 128, "hidden": 128},
    },
    # Batch 64 at lr 3e-3: as good, in half the epochs.
    "e128-b64-scratch": {"patience": 2, "epochs": 15, "model": {"embedding": 128, "hidden": 128}},
    # Extra training rows: the NYT editorial snippets labelled by the sign of their rating.
    "e128-b64-scratch-nyt-labels": {
        "patience": 2,
        "epochs": 15,
        "nyt_labels": True,
        "model": {"embedding": 128, "hidden": 128},
    },
    # Smaller: embedding 64, hidden 96 (the default size).
    "e64-h96-b64-scratch": {"patience": 2, "epochs": 15},
    # Ablations at the default size (no-smoothing was run after the default model was exported).
    "e64-h96-last-pooling": {"model": {"pooling": "last"}},
    "e64-h96-no-smoothing": {"label_smoothing": 0.0},
}


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    pre = replace(cfg.pretrain, **overrides.get("pretrain", {}))
    model = {**cfg.model, **overrides.get("model", {})}
    rest = {k: v for k, v in overrides.items() if k not in ("pretrain", "model")}
    return replace(cfg, pretrain=pre, model=model, **rest)


def sweep(
    data: SentimentData, base: TrainConfig, names: Sequence[str], results: Path, cache_dir: Path, lm_cache: Path
) -> None:
    """Train each variant with one member and append `{variant, overrides, valid metrics, minutes}` to `results`."""
    results.parent.mkdir(parents=True, exist_ok=True)
    for name in names:
        cfg = apply_overrides(replace(base, ensemble=1), VARIANTS[name])
        log.info("variant %s: %s", name, VARIANTS[name])
        ckpt = train(data, cfg, None, cache_dir, lm_cache)
        record = {
            "variant": name,
            "overrides": VARIANTS[name],
            "valid_accuracy": round(ckpt["metrics"]["valid"]["accuracy"], 4),
            "valid_macro_f1": round(ckpt["metrics"]["valid"]["macro_f1"], 4),
            "epochs_run": len(ckpt["history"][0]),
            "minutes": round(ckpt["minutes"], 2),
            "seed": cfg.seed,
            "config": {k: v for k, v in asdict(cfg).items() if k not in ("max_batches", "max_minutes")},
        }
        if ckpt["pretrain"].get("history"):
            record["pretrain_valid_perplexity"] = round(ckpt["pretrain"]["history"][-1]["valid_perplexity"], 1)
        log.info("variant %s -> %s", name, record)
        with results.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def read_experiments(path: Path | None) -> list[dict[str, Any]]:
    if path is None or not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---- command line --------------------------------------------------------------------------------------------------
def _add_train_args(p: argparse.ArgumentParser) -> None:
    d, dp = TrainConfig(), PretrainConfig()
    p.add_argument("--data", type=Path, help="train on this CSV (columns text,label) or JSONL ({text, label}) file")
    for f in fields(TrainConfig):
        if f.name in ("model", "pretrain"):
            continue
        default = getattr(d, f.name)
        if isinstance(default, bool):
            p.add_argument(f"--{f.name.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=default)
        else:
            p.add_argument(f"--{f.name.replace('_', '-')}", type=type(default), default=default)
    p.add_argument("--embedding", type=int, default=DEFAULT_MODEL["embedding"])
    p.add_argument("--hidden", type=int, default=DEFAULT_MODEL["hidden"])
    p.add_argument("--pooling", choices=("last", "max", "mean", "concat"), default=SentimentConfig.pooling)
    p.add_argument("--dropout-output", type=float, default=SentimentConfig.dropout_output)
    p.add_argument("--pretrain-epochs", type=int, default=dp.epochs, help="0 = no LM pre-training")
    p.add_argument("--pretrain-max-minutes", type=float, default=dp.max_minutes)


def _train_config(args: argparse.Namespace) -> TrainConfig:
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if f.name not in ("model", "pretrain")}
    model = {
        "embedding": args.embedding,
        "hidden": args.hidden,
        "pooling": args.pooling,
        "dropout_output": args.dropout_output,
    }
    pre = PretrainConfig(epochs=args.pretrain_epochs, max_minutes=args.pretrain_max_minutes)
    return TrainConfig(**values, model=model, pretrain=pre)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m training.sentiment", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train and save a checkpoint")
    p_export = sub.add_parser("export", help="export a checkpoint as a new model version")
    p_all = sub.add_parser("all", help="train, then export")
    p_sweep = sub.add_parser("sweep", help="train the recorded variants (one member each), validation only")
    for p in (p_train, p_all, p_sweep):
        _add_train_args(p)
    for p in (p_train, p_export, p_all):
        p.add_argument("--checkpoint", type=Path, default=Path("runs/sentiment.pt"))
    for p in (p_export, p_all):
        p.add_argument("--models-dir", type=Path, default=Path("models"))
        p.add_argument("--version", type=int, help="version number (default: next free)")
        p.add_argument(
            "--experiments",
            type=Path,
            default=Path("training/sentiment_experiments.jsonl"),
            help="sweep results to record in the manifest",
        )
        p.add_argument("--fp32-weights", action="store_true", help="store float32 weights (default: float16)")
    p_export.add_argument("--data", type=Path)
    p_export.add_argument("--split-seed", type=int, default=TrainConfig.split_seed)
    p_sweep.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {list(VARIANTS)}")
    p_sweep.add_argument("--results", type=Path, default=Path("runs/sentiment_sweep.jsonl"))
    for p in (p_train, p_all, p_sweep):
        p.add_argument(
            "--lm-cache",
            type=Path,
            default=Path("runs/sentiment_lm.pt"),
            help="reuse the pre-trained LM saved here when its settings match (re-made otherwise)",
        )
    for p in (p_train, p_export, p_all, p_sweep):
        p.add_argument("--data-dir", type=Path, default=DEFAULT_CACHE, help="cache for downloaded data")
        p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    data = load_sentiment_data(args.data, args.split_seed, args.data_dir)
    if args.command == "sweep":
        sweep(data, _train_config(args), args.variants.split(","), args.results, args.data_dir, args.lm_cache)
        return
    if args.command in ("train", "all"):
        train(data, _train_config(args), args.checkpoint, args.data_dir, args.lm_cache)
    if args.command in ("export", "all"):
        experiments = read_experiments(args.experiments) if args.data is None else []
        print(
            export(
                args.checkpoint,
                args.models_dir,
                data,
                args.version,
                args.data_dir,
                experiments=experiments,
                fp16_weights=not args.fp32_weights,
            )
        )


if __name__ == "__main__":
    main()
