"""The word LM's command line: the Makefile's line is the default recipe, every config field is a flag."""

import argparse
import dataclasses
from pathlib import Path

from service.manifest import read_manifest
from training.wordlm.__main__ import add_train_args, main, parser, train_config
from training.wordlm.config import TrainConfig
from training.wordlm.model import WordLMConfig


def test_the_make_command_line_trains_the_default_recipe() -> None:
    cfg = train_config(parser().parse_args(["all", "--checkpoint", "runs/wordlm.pt"]))
    assert dataclasses.replace(cfg, model={}) == TrainConfig()
    assert WordLMConfig(vocab_size=7, **cfg.model) == WordLMConfig(vocab_size=7)


def test_the_historical_flags_still_work() -> None:
    args = parser().parse_args(
        ["train", "--no-tie", "--embedding", "8", "--hidden", "16", "--no-average", "--lr", "5", "--max-minutes", "1.5"]
    )
    cfg = train_config(args)
    assert (cfg.lr, cfg.max_minutes, cfg.average) == (5.0, 1.5, False)
    assert (cfg.model["embedding"], cfg.model["hidden"], cfg.model["tie_weights"]) == (8, 16, False)


def test_every_config_field_is_a_flag() -> None:
    p = argparse.ArgumentParser()
    add_train_args(p)
    flags = set(p._option_string_actions)
    for cls, given in ((TrainConfig, {"model"}), (WordLMConfig, {"vocab_size"})):
        for f in dataclasses.fields(cls):
            assert f.name in given or f"--{f.name.replace('_', '-')}" in flags, f.name


def test_all_trains_then_publishes(tiny_corpus: Path, tmp_path: Path) -> None:
    main(
        [
            "all",
            "--corpus",
            str(tiny_corpus),
            "--checkpoint",
            str(tmp_path / "w.pt"),
            "--models-dir",
            str(tmp_path / "models"),
            "--epochs",
            "1",
            "--max-batches",
            "3",
            "--min-count",
            "1",
            "--kn-order",
            "2",
            "--embedding",
            "8",
            "--hidden",
            "8",
            "--layers",
            "1",
            "--members",
            "1",
        ]
    )
    manifest = read_manifest(tmp_path / "models" / "wordlm" / "1")
    assert manifest.training["kn_order"] == 2 and manifest.config["hidden"] == 8 and manifest.config["layers"] == 1
