"""Word-level LSTM language model: data -> train -> evaluate -> export.

    python -m training.wordlm train  [--corpus FILE] [--epochs N] ... --checkpoint runs/wordlm.pt
    python -m training.wordlm export --checkpoint runs/wordlm.pt [--models-dir models]
    python -m training.wordlm all    [train options]            # what `make models` runs

Batching follows the classic word language model: the token stream is cut into B contiguous columns and read
in windows of `bptt` steps; the targets are the inputs shifted by one, and the LSTM state is carried (detached)
from one window to the next.

    stream  a b c d e f g h i j k l m n o p q r s t u v w x      B = 4 columns
            ┌ a g m s ┐
            │ b h n t │  window 1 (bptt = 3): inputs rows 0..2, targets rows 1..3
            │ c i o u │
            │ d j p v │
            │ e k q w │
            └ f l r x ┘
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from service.tokenizer import EOS, UNK, Vocab
from training.activations import export_activations
from training.baselines import KneserNeyLM
from training.data.text import Corpus, load_corpus
from training.export import (
    DataSpec,
    TokenizerSpec,
    check_parity,
    export_onnx,
    graph_spec,
    publish_version,
)
from training.models import WordLM, WordLMConfig, WordLMStep

log = logging.getLogger("training.wordlm")

FAMILY = "wordlm"
PARITY_ATOL = 1e-4


@dataclass
class TrainConfig:
    seed: int = 1111
    min_count: int = 2
    batch_size: int = 20
    bptt: int = 35
    lr: float = 20.0
    lr_decay: float = 4.0  # lr /= lr_decay whenever validation perplexity stalls
    clip: float = 0.25
    weight_decay: float = 1.2e-6
    epochs: int = 60
    patience: int = 4  # stop after this many epochs without a new best validation perplexity
    # NT-ASGD (Merity et al., 2017): at the first stall, keep the learning rate and start averaging the weights
    # of every step from then on; the average is what is evaluated and kept. Later stalls divide the lr as usual.
    average: bool = True
    max_minutes: float = 0.0  # wall-clock budget (0 = none)
    max_batches: int = 0  # per epoch (0 = all); for tests
    eval_batch_size: int = 10
    kn_order: int = 5
    model: dict[str, Any] = field(default_factory=dict)  # WordLMConfig overrides


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def batchify(ids: list[int], batch_size: int) -> Tensor:
    """Cut a token stream into `batch_size` contiguous columns: (n_steps, batch_size). The tail that does not
    fill a full row is dropped."""
    n_steps = len(ids) // batch_size
    data = torch.tensor(ids[: n_steps * batch_size], dtype=torch.long)
    return data.view(batch_size, n_steps).t().contiguous()


def get_batch(source: Tensor, i: int, bptt: int) -> tuple[Tensor, Tensor]:
    """Window starting at row i: inputs (B, T) and targets (B, T), the targets being the next tokens."""
    seq_len = min(bptt, source.size(0) - 1 - i)
    inputs = source[i : i + seq_len]
    targets = source[i + 1 : i + 1 + seq_len]
    return inputs.t().contiguous(), targets.t().contiguous()


class WeightAverage:
    """Running mean of a model's parameters over the optimizer steps since it was made (the "A" of ASGD)."""

    def __init__(self, model: nn.Module) -> None:
        self.params = dict(model.named_parameters())  # tied weights appear once
        self.mean = {name: p.detach().clone() for name, p in self.params.items()}
        self.steps = 1

    @torch.no_grad()
    def update(self) -> None:
        self.steps += 1
        for name, p in self.params.items():
            self.mean[name].add_(p - self.mean[name], alpha=1.0 / self.steps)

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The model holds the averaged weights inside the block, its own again after it."""
        with torch.no_grad():
            own = {name: p.detach().clone() for name, p in self.params.items()}
            for name, p in self.params.items():
                p.copy_(self.mean[name])
            try:
                yield
            finally:
                for name, p in self.params.items():
                    p.copy_(own[name])


def evaluate(model: WordLM, source: Tensor, bptt: int = 70) -> float:
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


def train(corpus: Corpus, cfg: TrainConfig, checkpoint: Path) -> dict[str, Any]:
    """Train with early stopping on validation perplexity; save the best weights in a self-describing checkpoint."""
    set_seed(cfg.seed)
    vocab = Vocab.build(corpus.train, cfg.min_count)
    train_data = batchify(vocab.encode(corpus.train), cfg.batch_size)
    valid_data = batchify(vocab.encode(corpus.valid), cfg.eval_batch_size)
    test_data = batchify(vocab.encode(corpus.test), cfg.eval_batch_size)
    model_cfg = WordLMConfig(vocab_size=len(vocab), **cfg.model)
    model = WordLM(model_cfg)
    n_params = sum(p.numel() for p in model.parameters())
    log.info(
        "corpus %s | vocab %d | model %s | %.2fM parameters",
        corpus.sizes(),
        len(vocab),
        model_cfg,
        n_params / 1e6,
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    best_ppl, best_state, stalls = math.inf, None, 0
    averaged: WeightAverage | None = None
    history: list[dict[str, float]] = []
    started = time.monotonic()
    n_windows = math.ceil((train_data.size(0) - 1) / cfg.bptt)
    if cfg.max_batches:
        n_windows = min(n_windows, cfg.max_batches)
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        state = model.init_state(cfg.batch_size)
        total_loss, total_tokens = 0.0, 0
        bar = tqdm(range(n_windows), desc=f"epoch {epoch:2d}", unit="batch", leave=False, file=sys.stderr)
        for b in bar:
            inputs, targets = get_batch(train_data, b * cfg.bptt, cfg.bptt)
            state = (state[0].detach(), state[1].detach())  # truncated BPTT
            logits, state = model(inputs, state)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            optimizer.step()
            if averaged is not None:
                averaged.update()
            total_loss += loss.item() * targets.numel()
            total_tokens += targets.numel()
            if b % 10 == 0:
                bar.set_postfix(
                    loss=f"{loss.item():.3f}",
                    ppl=f"{math.exp(total_loss / total_tokens):.1f}",
                    lr=f"{optimizer.param_groups[0]['lr']:g}",
                )
        train_ppl = math.exp(total_loss / total_tokens)
        with averaged.swapped_in() if averaged is not None else nullcontext():
            valid_ppl = evaluate(model, valid_data)
            improved = valid_ppl < best_ppl
            if improved:
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        lr = optimizer.param_groups[0]["lr"]
        history.append(
            {
                "epoch": epoch,
                "train_perplexity": train_ppl,
                "valid_perplexity": valid_ppl,
                "lr": lr,
                "averaged": averaged is not None,
                "minutes": (time.monotonic() - started) / 60,
            }
        )
        log.info(
            "epoch %2d | lr %-6g | train ppl %7.2f | valid ppl %7.2f%s%s | %.1f min",
            epoch,
            lr,
            train_ppl,
            valid_ppl,
            " (averaged)" if averaged is not None else "",
            " (best)" if improved else "",
            history[-1]["minutes"],
        )
        if improved:
            best_ppl, stalls = valid_ppl, 0
        elif cfg.average and averaged is None:
            log.info("validation stalled: averaging the weights from here on (lr stays %g)", lr)
            averaged = WeightAverage(model)
        else:
            stalls += 1
            for group in optimizer.param_groups:
                group["lr"] /= cfg.lr_decay
            if stalls >= cfg.patience:
                log.info("early stop: %d epochs without improvement", stalls)
                break
        if cfg.max_minutes and (time.monotonic() - started) / 60 >= cfg.max_minutes:
            log.info("time budget of %g minutes reached", cfg.max_minutes)
            break

    assert best_state is not None
    model.load_state_dict(best_state)
    metrics = {"valid_perplexity": evaluate(model, valid_data), "test_perplexity": evaluate(model, test_data)}
    log.info("best model: valid ppl %.2f | test ppl %.2f", metrics["valid_perplexity"], metrics["test_perplexity"])
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "family": FAMILY,
            "config": model_cfg.to_dict(),
            "train_config": asdict(cfg),
            "vocab": vocab.itos,
            "state_dict": best_state,
            "history": history,
            "metrics": metrics,
            "corpus": {"source": corpus.source, "sha256": corpus.sha256, "sizes": corpus.sizes()},
            "minutes": (time.monotonic() - started) / 60,
            "parameters": n_params,
        },
        checkpoint,
    )
    return metrics


def load_checkpoint(path: Path) -> tuple[WordLM, Vocab, dict[str, Any]]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = WordLM(WordLMConfig(**ckpt["config"]))
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, Vocab(ckpt["vocab"]), ckpt


def parity_cases(cfg: WordLMConfig, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Batch 1 and 8, sequence 1 and 37, with non-zero incoming state."""
    rng = np.random.default_rng(seed)
    cases = []
    for batch in (1, 8):
        for seq in (1, 37):
            cases.append(
                {
                    "tokens": rng.integers(0, cfg.vocab_size, size=(batch, seq), dtype=np.int64),
                    "h0": rng.standard_normal((cfg.layers, batch, cfg.hidden)).astype(np.float32) * 0.5,
                    "c0": rng.standard_normal((cfg.layers, batch, cfg.hidden)).astype(np.float32) * 0.5,
                }
            )
    return cases


def save_training_curve(history: list[dict[str, float]], path: Path, baseline_valid: float | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(epochs, [h["train_perplexity"] for h in history], label="train (with dropout)")
    ax.plot(epochs, [h["valid_perplexity"] for h in history], label="valid")
    if baseline_valid is not None:
        ax.axhline(baseline_valid, color="grey", linestyle="--", label="Kneser-Ney 5-gram (valid)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("perplexity")
    ax.set_yscale("log")
    ax.set_title("word LM training")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def export(checkpoint: Path, models_dir: Path, corpus: Corpus, version: int | None = None, curve: bool = True) -> Path:
    """Export the checkpoint's model to ONNX, check parity, measure the baseline, publish the version."""
    model, vocab, ckpt = load_checkpoint(checkpoint)
    if corpus.sha256 != ckpt["corpus"]["sha256"]:
        raise ValueError("the corpus differs from the one this checkpoint was trained on")
    train_cfg = ckpt["train_config"]
    cfg = model.config
    step = WordLMStep(model)

    log.info("baseline: interpolated modified Kneser-Ney %d-gram", train_cfg["kn_order"])
    kn = KneserNeyLM(train_cfg["kn_order"], len(vocab)).fit(vocab.encode(corpus.train))
    baseline = {
        "valid_perplexity": kn.perplexity(vocab.encode(corpus.valid)),
        "test_perplexity": kn.perplexity(vocab.encode(corpus.test)),
    }
    log.info("baseline: valid ppl %.2f | test ppl %.2f", baseline["valid_perplexity"], baseline["test_perplexity"])

    def build(out: Path) -> dict[str, Any]:
        onnx_path = out / "model.onnx"
        example = tuple(torch.from_numpy(v) for v in parity_cases(cfg)[1].values())
        export_onnx(
            step,
            example,
            onnx_path,
            ["tokens", "h0", "c0"],
            ["logits", "hn", "cn"],
            {
                "tokens": {0: "batch", 1: "seq"},
                "h0": {1: "batch"},
                "c0": {1: "batch"},
                "logits": {0: "batch", 1: "seq"},
                "hn": {1: "batch"},
                "cn": {1: "batch"},
            },
        )
        max_diff = check_parity(step, onnx_path, parity_cases(cfg), PARITY_ATOL)
        activations = export_activations(model, out)  # activations.onnx + embeddings.npy, for POST /inspect
        vocab.save(out / "vocab.json")
        if curve:
            save_training_curve(ckpt["history"], out / "training_curve.png", baseline["valid_perplexity"])
        return {
            "name": f"wordlm-{cfg.layers}x{cfg.hidden}",
            "description": "Word-level LSTM language model (step model: prefill a prompt, then one call per token).",
            "graphs": {"step": graph_spec(onnx_path), "activations": activations.graph},
            "tokenizer": TokenizerSpec(
                vocab_file="vocab.json", vocab_size=len(vocab), min_count=train_cfg["min_count"]
            ),
            "config": {
                **cfg.to_dict(),
                "eos_token": EOS,
                "unk_token": UNK,
                "embeddings_file": activations.embeddings_file,
            },
            "data": DataSpec(
                source=ckpt["corpus"]["source"],
                sha256=ckpt["corpus"]["sha256"],
                splits={**ckpt["corpus"]["sizes"], "method": "each book cut 80/10/10 in order"},
            ),
            "training": {
                **train_cfg,
                "parameters": ckpt["parameters"],
                "minutes": round(ckpt["minutes"], 2),
                "epochs_run": len(ckpt["history"]),
                "history": ckpt["history"],
                "command": "python -m training.wordlm all",
            },
            "metrics": {
                "model": {
                    **ckpt["metrics"],
                    "onnx_parity_max_abs_diff": max_diff,
                    "activations_parity_max_abs_diff": activations.max_abs_diff,
                },
                "baselines": {f"kneser_ney_{train_cfg['kn_order']}gram": baseline},
            },
        }

    return publish_version(models_dir, FAMILY, build, version)


def _add_train_args(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p.add_argument("--corpus", type=Path, help="train on this UTF-8 text file instead of the default books")
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="cache for downloaded data")
    for name in ("seed", "min_count", "batch_size", "bptt", "epochs", "patience", "max_batches", "kn_order"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(d, name))
    for name in ("lr", "clip", "max_minutes"):
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(d, name))
    p.add_argument("--embedding", type=int, default=400)
    p.add_argument("--hidden", type=int, default=400)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--no-tie", action="store_true", help="separate decoder weights")
    p.add_argument("--no-average", action="store_true", help="plain SGD: divide the lr at every stall, no averaging")


def _train_config(args: argparse.Namespace) -> TrainConfig:
    fields = {
        k: getattr(args, k)
        for k in (
            "seed",
            "min_count",
            "batch_size",
            "bptt",
            "epochs",
            "patience",
            "max_batches",
            "kn_order",
            "lr",
            "clip",
            "max_minutes",
        )
    }
    model = {
        "embedding": args.embedding,
        "hidden": args.hidden,
        "layers": args.layers,
        "tie_weights": not args.no_tie,
    }
    return TrainConfig(**fields, average=not args.no_average, model=model)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m training.wordlm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train and save a checkpoint")
    p_export = sub.add_parser("export", help="export a checkpoint as a new model version")
    p_all = sub.add_parser("all", help="train, then export")
    for p in (p_train, p_all):
        _add_train_args(p)
    for p in (p_train, p_export, p_all):
        p.add_argument("--checkpoint", type=Path, default=Path("runs/wordlm.pt"))
    for p in (p_export, p_all):
        p.add_argument("--models-dir", type=Path, default=Path("models"))
        p.add_argument("--version", type=int, help="version number (default: next free)")
    p_export.add_argument("--corpus", type=Path)
    p_export.add_argument("--data-dir", type=Path, default=Path("data"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    corpus = load_corpus(args.corpus, args.data_dir)
    if args.command in ("train", "all"):
        train(corpus, _train_config(args), args.checkpoint)
    if args.command in ("export", "all"):
        print(export(args.checkpoint, args.models_dir, corpus, args.version))


if __name__ == "__main__":
    main()
