"""Training: SGD over truncated-BPTT windows, lr / 4 at each validation stall, NT-ASGD weight averaging from the
first stall, early stopping; the best weights go into a self-describing checkpoint.

With `members` > 1 the recipe trains that many models with seeds seed, seed+1, ... (side by side, one process each,
the cores shared between them) and the checkpoint holds their ensemble (`model.WordLMEnsemble`)."""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
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
from training.wordlm.model import WordLM, WordLMConfig, WordLMEnsemble

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


def train_member(corpus: Corpus, cfg: TrainConfig, seed: int) -> dict[str, Any]:
    """Train one model from `seed` with early stopping on validation perplexity; its best weights, history, metrics."""
    set_seed(seed)
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
    log.info("seed %d: valid ppl %.2f | test ppl %.2f", seed, metrics["valid_perplexity"], metrics["test_perplexity"])
    return {
        "seed": seed,
        "model_config": model_cfg.to_dict(),
        "state": result.best_state,
        "history": result.history,
        "best_metric": result.best_metric,
        "metrics": metrics,
        "minutes": (time.monotonic() - started) / 60,
    }


def _train_member_in_process(corpus: Corpus, cfg: TrainConfig, seed: int, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s member {seed}: %(message)s")
    return train_member(corpus, cfg, seed)


def train(corpus: Corpus, cfg: TrainConfig, checkpoint: Path) -> dict[str, float]:
    """Train `cfg.members` models; save the best weights (of the ensemble, with several) in a self-describing
    checkpoint. Returns the valid and test perplexity of what was saved."""
    started = time.monotonic()
    seeds = [cfg.seed + k for k in range(cfg.members)]
    workers = min(cfg.members, cfg.workers or os.cpu_count() or 1)
    if workers > 1:
        threads = max(1, torch.get_num_threads() // workers)
        log.info("training %d members side by side, %d torch thread(s) each", cfg.members, threads)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            n = len(seeds)
            runs = list(pool.map(_train_member_in_process, [corpus] * n, [cfg] * n, seeds, [threads] * n))
    else:
        runs = [train_member(corpus, cfg, s) for s in seeds]
    vocab = Vocab.build(corpus.train, cfg.min_count)
    model, metrics = _assemble(corpus, cfg, vocab, runs)
    save_trained(corpus, cfg, model, vocab, runs, metrics, (time.monotonic() - started) / 60, checkpoint)
    return metrics


def _assemble(
    corpus: Corpus, cfg: TrainConfig, vocab: Vocab, runs: list[dict[str, Any]]
) -> tuple[WordLM | WordLMEnsemble, dict[str, float]]:
    """The trained model, or the ensemble of the members with its own valid and test perplexity."""
    model_cfg = WordLMConfig(**runs[0]["model_config"])
    if len(runs) == 1:
        model = WordLM(model_cfg)
        model.load_state_dict(runs[0]["state"])
        return model, runs[0]["metrics"]
    ensemble = WordLMEnsemble(model_cfg, len(runs))
    for member, run in zip(ensemble.members, runs, strict=True):
        member.load_state_dict(run["state"])
    metrics = {
        f"{split}_perplexity": perplexity(ensemble, batchify(vocab.encode(getattr(corpus, split)), cfg.eval_batch_size))
        for split in ("valid", "test")
    }
    log.info(
        "members: valid ppl %s | ensemble: valid ppl %.2f | test ppl %.2f",
        " ".join(f"{r['metrics']['valid_perplexity']:.2f}" for r in runs),
        metrics["valid_perplexity"],
        metrics["test_perplexity"],
    )
    return ensemble, metrics


def combine(corpus: Corpus, checkpoints: list[Path], checkpoint: Path) -> dict[str, float]:
    """An ensemble checkpoint from single-model checkpoints trained apart (same corpus, vocabulary and model
    config; their seeds differ): what `train` with `members` = len(checkpoints) saves, measured again here."""
    loaded = [load_checkpoint(path, FAMILY) for path in checkpoints]
    first = loaded[0]
    for ckpt in loaded:
        assert int(ckpt.extra.get("members", 1)) == 1, "combine single models"
        if ckpt.model_config != first.model_config or ckpt.extra["vocab"] != first.extra["vocab"]:
            raise ValueError("members differ in model config or vocabulary")
        if ckpt.extra["corpus"]["sha256"] != corpus.sha256 or ckpt.extra["corpus"].get("eos", "line") != corpus.eos:
            raise ValueError("a member was trained on another corpus")
    runs = [
        {
            "seed": ckpt.train_config["seed"],
            "model_config": ckpt.model_config,
            "state": ckpt.model_state,
            "history": ckpt.history,
            "best_metric": ckpt.best_metric,
            "metrics": ckpt.extra["metrics"],
            "minutes": ckpt.extra["minutes"],
        }
        for ckpt in loaded
    ]
    cfg = TrainConfig(**{**first.train_config, "seed": runs[0]["seed"], "members": len(runs)})
    model, metrics = _assemble(corpus, cfg, Vocab(first.extra["vocab"]), runs)
    save_trained(
        corpus, cfg, model, Vocab(first.extra["vocab"]), runs, metrics, max(r["minutes"] for r in runs), checkpoint
    )
    return metrics


def save_trained(
    corpus: Corpus,
    cfg: TrainConfig,
    model: WordLM | WordLMEnsemble,
    vocab: Vocab,
    runs: list[dict[str, Any]],
    metrics: dict[str, float],
    minutes: float,
    checkpoint: Path,
) -> None:
    extra = {
        "vocab": vocab.itos,
        "metrics": metrics,
        "corpus": {"source": corpus.source, "sha256": corpus.sha256, "sizes": corpus.sizes(), "eos": corpus.eos},
        "minutes": minutes,
        "parameters": sum(p.numel() for p in model.parameters()),
        "members": len(runs),
    }
    if len(runs) > 1:
        extra["member_runs"] = [
            {k: run[k] for k in ("seed", "metrics", "minutes", "history", "best_metric")} for run in runs
        ]
    save_checkpoint(
        Checkpoint(
            family=FAMILY,
            model_config=model.config.to_dict(),
            model_state={k: v.detach().clone() for k, v in model.state_dict().items()},
            train_config=asdict(cfg),
            epoch=max(len(run["history"]) for run in runs),
            best_metric=metrics["valid_perplexity"] if len(runs) > 1 else runs[0]["best_metric"],
            metric=METRIC,
            history=runs[0]["history"],
            extra=extra,
        ),
        checkpoint,
    )


def load_trained(path: Path) -> tuple[WordLM | WordLMEnsemble, Vocab, Checkpoint]:
    """The trained model or ensemble (eval mode), its vocabulary and the whole checkpoint."""
    ckpt = load_checkpoint(path, FAMILY)
    members = int(ckpt.extra.get("members", 1))
    if members == 1:
        return build_model(ckpt, WordLM, WordLMConfig), Vocab(ckpt.extra["vocab"]), ckpt
    model = build_model(ckpt, lambda config: WordLMEnsemble(config, members), WordLMConfig)
    return model, Vocab(ckpt.extra["vocab"]), ckpt
