"""The epoch loop every family trains with: train an epoch, validate, keep the best weights, stop early.

    for epoch in 1..epochs:
        record = train_epoch(epoch)              # the family's batches, optimizer and progress bar
        with weights():                          # e.g. averaged weights swapped in (NT-ASGD); default: as they are
            metric = validate()
            best so far? -> copy the model's state
        not better -> on_stall(): does it count towards `patience`? (a family may react first, e.g. lower the lr)
        stop after `patience` counted stalls, or once `max_minutes` have passed
    the model ends with its best state loaded

`progress` is the one progress bar (tqdm on stderr, gone when the epoch ends).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, TypeVar

from torch import Tensor, nn
from tqdm import tqdm

log = logging.getLogger(__name__)

T = TypeVar("T")


def progress(items: Iterable[T], desc: str) -> tqdm[T]:
    """A per-epoch progress bar over batches; set its postfix with running figures."""
    return tqdm(items, desc=desc, unit="batch", leave=False, file=sys.stderr)


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    """A copy of the model's state that later training steps do not change."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@dataclass
class Stopping:
    """When the loop ends. `metric` is the history key of the validation figure it watches."""

    metric: str
    maximize: bool = False
    patience: int = 0  # stop after this many counted epochs without a better metric (0 = never stop early)
    max_minutes: float = 0.0  # wall-clock budget (0 = none)

    def better(self, value: float, best: float) -> bool:
        return value > best if self.maximize else value < best


@dataclass
class FitResult:
    history: list[dict[str, Any]]  # one record per epoch: {"epoch", the train_epoch record, metric, "minutes"}
    best_metric: float
    best_epoch: int  # 0 = no epoch improved on the start (a NaN metric, say)
    best_state: dict[str, Tensor] | None = field(repr=False)  # None without a model to keep
    stopped: str  # "epochs", "patience" or "time budget"
    minutes: float


def fit(
    epochs: int,
    train_epoch: Callable[[int], dict[str, Any]],
    validate: Callable[[], float],
    stopping: Stopping,
    *,
    model: nn.Module | None = None,
    weights: Callable[[], AbstractContextManager[Any]] = nullcontext,
    on_stall: Callable[[], bool] = lambda: True,
    report: Callable[[dict[str, Any], bool], None] | None = None,
) -> FitResult:
    """Run up to `epochs` epochs and keep `model`'s best state (loaded into it at the end).

    `train_epoch(epoch)` trains one epoch and returns its record (train figures); `validate()` measures the model
    under `weights()`; `on_stall()` is called after an epoch that is not better and says whether it counts towards
    the patience; `report(record, improved)` logs an epoch. Without a model, nothing is kept: the loop only runs,
    records and watches the budget.
    """
    started = time.monotonic()
    best, best_epoch, best_state = -math.inf if stopping.maximize else math.inf, 0, None
    history: list[dict[str, Any]] = []
    stalls, stopped = 0, "epochs"
    for epoch in range(1, epochs + 1):
        record = train_epoch(epoch)
        with weights():
            value = validate()
            improved = stopping.better(value, best)
            if improved and model is not None:
                best_state = snapshot(model)
        history.append({"epoch": epoch, **record, stopping.metric: value, "minutes": _minutes(started)})
        if report is not None:
            report(history[-1], improved)
        if improved:
            best, best_epoch, stalls = value, epoch, 0
        elif on_stall():
            stalls += 1
            if stopping.patience and stalls >= stopping.patience:
                log.info("early stop: %d epochs without a better %s", stalls, stopping.metric)
                stopped = "patience"
                break
        if stopping.max_minutes and _minutes(started) >= stopping.max_minutes:
            log.info("time budget of %g minutes reached", stopping.max_minutes)
            stopped = "time budget"
            break
    if model is not None:
        assert best_state is not None, f"no epoch gave a finite {stopping.metric}"
        model.load_state_dict(best_state)
    return FitResult(history, best, best_epoch, best_state, stopped, _minutes(started))


def _minutes(started: float) -> float:
    return (time.monotonic() - started) / 60
