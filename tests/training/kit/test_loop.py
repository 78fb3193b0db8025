"""The epoch loop: best state kept and restored, early stop after `patience` counted stalls, time budget."""

from typing import Any

import pytest
import torch
from torch import nn

from training.kit import loop
from training.kit.loop import Stopping, fit


def _run(metrics: list[float], stopping: Stopping, **kwargs: Any) -> tuple[loop.FitResult, nn.Linear, list[int]]:
    """Epoch e sets the weight to e and validates as metrics[e - 1]."""
    model = nn.Linear(1, 1, bias=False)
    trained: list[int] = []

    def train_epoch(epoch: int) -> dict[str, Any]:
        trained.append(epoch)
        with torch.no_grad():
            model.weight.fill_(float(epoch))
        return {"train_loss": 1.0 / epoch}

    result = fit(len(metrics), train_epoch, lambda: metrics[len(trained) - 1], stopping, model=model, **kwargs)
    return result, model, trained


def test_stops_early_and_keeps_the_best_state() -> None:
    result, model, trained = _run([5.0, 3.0, 4.0, 3.5, 2.0, 1.0], Stopping("valid_loss", patience=2))
    assert trained == [1, 2, 3, 4] and result.stopped == "patience"
    assert (result.best_epoch, result.best_metric) == (2, 3.0)
    assert model.weight.item() == 2.0  # epoch 2's weights are back in the model
    assert [h["valid_loss"] for h in result.history] == [5.0, 3.0, 4.0, 3.5]
    assert list(result.history[0]) == ["epoch", "train_loss", "valid_loss", "minutes"]


def test_maximizing_and_stalls_that_do_not_count() -> None:
    stalls: list[int] = []

    def on_stall() -> bool:  # the first stall is forgiven (as the word LM's switch to averaging)
        stalls.append(1)
        return len(stalls) > 1

    result, model, trained = _run(
        [0.5, 0.4, 0.7, 0.6, 0.6, 0.9], Stopping("valid_accuracy", maximize=True, patience=2), on_stall=on_stall
    )
    assert trained == [1, 2, 3, 4, 5] and len(stalls) == 3
    assert result.best_epoch == 3 and model.weight.item() == 3.0


def test_patience_zero_runs_every_epoch() -> None:
    result, _, trained = _run([1.0, 2.0, 3.0], Stopping("valid_loss"))
    assert trained == [1, 2, 3] and result.stopped == "epochs" and result.best_epoch == 1


def test_time_budget_stops_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(0, 10_000, 60))  # every reading is a minute later
    monkeypatch.setattr(loop.time, "monotonic", lambda: float(next(clock)))
    result, _, trained = _run([3.0, 2.0, 1.0, 0.5], Stopping("valid_loss", max_minutes=2.5))
    assert result.stopped == "time budget" and len(trained) < 4


def test_validation_runs_under_the_given_weights() -> None:
    seen: list[str] = []

    class Marker:
        def __enter__(self) -> None:
            seen.append("in")

        def __exit__(self, *exc: object) -> None:
            seen.append("out")

    _run([1.0, 2.0], Stopping("valid_loss"), weights=Marker)
    assert seen == ["in", "out", "in", "out"]
