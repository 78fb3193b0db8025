"""Flags made from config dataclasses: every field, its type and default, bools both ways, nested configs."""

import argparse
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from training.kit.cli import add_dataclass_args, dataclass_from_args, values_from_args


@dataclass
class Inner:
    epochs: int = 0
    lr: float = 2e-3


@dataclass
class Config:
    batch_size: int = 64
    lr: float = 3e-3
    name: str = "run"
    average: bool = True
    pooling: Literal["last", "max"] = "last"
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    budget: float | None = None
    inner: Inner = field(default_factory=Inner)
    model: dict[str, Any] = field(default_factory=dict)


def _parse(argv: list[str]) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser()
    add_dataclass_args(parser, Config, skip={"model"})
    return parser, parser.parse_args(argv)


def test_no_flags_give_the_defaults() -> None:
    _, args = _parse([])
    assert dataclass_from_args(Config, args, skip={"model"}) == Config()


def test_every_field_is_settable() -> None:
    argv = "--batch-size 8 --lr 0.5 --name x --no-average --pooling max --quantiles 0.2 0.8 --budget 1.5"
    _, args = _parse([*argv.split(), "--inner-epochs", "3", "--inner-lr", "0.25"])
    cfg = dataclass_from_args(Config, args, skip={"model"}, model={"hidden": 4})
    assert cfg == Config(8, 0.5, "x", False, "max", (0.2, 0.8), 1.5, Inner(3, 0.25), {"hidden": 4})
    assert isinstance(cfg.quantiles, tuple)
    assert values_from_args(Inner, args, prefix="inner_") == {"epochs": 3, "lr": 0.25}


def test_types_and_choices_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in (["--batch-size", "1.5"], ["--pooling", "mean"]):
        with pytest.raises(SystemExit):
            _parse(bad)
    assert "invalid choice: 'mean'" in capsys.readouterr().err


def test_a_field_that_cannot_be_a_flag_must_be_skipped() -> None:
    with pytest.raises(TypeError, match="model"):
        add_dataclass_args(argparse.ArgumentParser(), Config)
