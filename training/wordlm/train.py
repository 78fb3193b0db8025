"""Training: SGD over truncated-BPTT windows, lr / 4 at each validation stall, NT-ASGD weight averaging from the
first stall, early stopping; the best weights go into a self-describing checkpoint."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from service.tokenizer import Vocab
from training.data.text import Corpus
from training.kit.checkpoint import Checkpoint, build_model, load_checkpoint, save_checkpoint
from training.kit.loop import Stopping, fit, progress
from training.kit.seed import set_seed
from training.wordlm.config import TrainConfig
from training.wordlm.data import batchify, get_batch
from training.wordlm.evaluate import perplexity
from training.wordlm.model import WordLM, WordLMConfig

log = logging.getLogger(__name__)

FAMILY = "wordlm"
METRIC = "valid_perplexity"


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


def train(corpus: Corpus, cfg: TrainConfig, checkpoint: Path) -> dict[str, float]:
    """Train with early stopping on validation perplexity; save the best weights in a self-describing checkpoint.
    Returns the best model's valid and test perplexity."""
    set_seed(cfg.seed)
    vocab = Vocab.build(corpus.train, cfg.min_count)
    train_data = batchify(vocab.encode(corpus.train), cfg.batch_size)  # (steps, B)
    valid_data = batchify(vocab.encode(corpus.valid), cfg.eval_batch_size)
    test_data = batchify(vocab.encode(corpus.test), cfg.eval_batch_size)
    model_cfg = WordLMConfig(vocab_size=len(vocab), **cfg.model)
    model = WordLM(model_cfg)
    n_params = sum(p.numel() for p in model.parameters())
    log.info(
        "corpus %s | vocab %d | model %s | %.2fM parameters", corpus.sizes(), len(vocab), model_cfg, n_params / 1e6
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    averaged: WeightAverage | None = None
    n_windows = math.ceil((train_data.size(0) - 1) / cfg.bptt)
    if cfg.max_batches:
        n_windows = min(n_windows, cfg.max_batches)

    def lr() -> float:
        return float(optimizer.param_groups[0]["lr"])

    def train_epoch(epoch: int) -> dict[str, Any]:
        model.train()
        state = model.init_state(cfg.batch_size)
        total_loss, total_tokens = 0.0, 0
        bar = progress(range(n_windows), f"epoch {epoch:2d}")
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
                    loss=f"{loss.item():.3f}", ppl=f"{math.exp(total_loss / total_tokens):.1f}", lr=f"{lr():g}"
                )
        return {"train_perplexity": math.exp(total_loss / total_tokens), "lr": lr(), "averaged": averaged is not None}

    def weights() -> AbstractContextManager[Any]:
        return averaged.swapped_in() if averaged is not None else nullcontext()

    def on_stall() -> bool:
        """The first stall starts the averaging (when on) and is not counted; later ones divide the lr."""
        nonlocal averaged
        if cfg.average and averaged is None:
            log.info("validation stalled: averaging the weights from here on (lr stays %g)", lr())
            averaged = WeightAverage(model)
            return False
        for group in optimizer.param_groups:
            group["lr"] /= cfg.lr_decay
        return True

    def report(record: dict[str, Any], improved: bool) -> None:
        log.info(
            "epoch %2d | lr %-6g | train ppl %7.2f | valid ppl %7.2f%s%s | %.1f min",
            record["epoch"],
            record["lr"],
            record["train_perplexity"],
            record[METRIC],
            " (averaged)" if record["averaged"] else "",
            " (best)" if improved else "",
            record["minutes"],
        )

    started = time.monotonic()
    result = fit(
        cfg.epochs,
        train_epoch,
        lambda: perplexity(model, valid_data),
        Stopping(METRIC, maximize=False, patience=cfg.patience, max_minutes=cfg.max_minutes),
        model=model,
        weights=weights,
        on_stall=on_stall,
        report=report,
    )
    assert result.best_state is not None
    metrics = {"valid_perplexity": perplexity(model, valid_data), "test_perplexity": perplexity(model, test_data)}
    log.info("best model: valid ppl %.2f | test ppl %.2f", metrics["valid_perplexity"], metrics["test_perplexity"])
    extra = {
        "vocab": vocab.itos,
        "metrics": metrics,
        "corpus": {"source": corpus.source, "sha256": corpus.sha256, "sizes": corpus.sizes()},
        "minutes": (time.monotonic() - started) / 60,
        "parameters": n_params,
    }
    save_checkpoint(
        Checkpoint(
            family=FAMILY,
            model_config=model_cfg.to_dict(),
            model_state=result.best_state,
            train_config=asdict(cfg),
            epoch=len(result.history),
            best_metric=result.best_metric,
            metric=METRIC,
            history=result.history,
            extra=extra,
        ),
        checkpoint,
    )
    return metrics


def load_trained(path: Path) -> tuple[WordLM, Vocab, Checkpoint]:
    """The trained model (eval mode), its vocabulary and the whole checkpoint."""
    ckpt = load_checkpoint(path, FAMILY)
    return build_model(ckpt, WordLM, WordLMConfig), Vocab(ckpt.extra["vocab"]), ckpt
