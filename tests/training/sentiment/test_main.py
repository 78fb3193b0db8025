"""The sentiment command line: the Makefile's line is the default recipe, every config field is a flag."""

import argparse
import dataclasses
from pathlib import Path

import pytest

from service.manifest import read_manifest
from training.sentiment.__main__ import add_train_args, main, parser, train_config
from training.sentiment.config import PretrainConfig, TrainConfig
from training.sentiment.model import SentimentConfig


def test_the_make_command_line_trains_the_default_recipe() -> None:
    args = parser().parse_args(["all", "--checkpoint", "runs/sentiment.pt", "--threads", "1"])
    cfg = train_config(args)
    assert dataclasses.replace(cfg, model={}) == TrainConfig()
    model = SentimentConfig(vocab_size=9, num_classes=2, **cfg.model)
    # The default model: embedding 64, hidden 96, pooling last + max + mean; three members from seed 1234.
    assert model == SentimentConfig(vocab_size=9, num_classes=2, embedding=64, hidden=96, pooling="concat")
    assert (cfg.seed, cfg.ensemble, cfg.pretrain.epochs, args.threads) == (1234, 3, 0, 1)


def test_the_historical_flags_still_work() -> None:
    argv = "train --embedding 8 --hidden 12 --pooling max --dropout-output 0.2 --pretrain-epochs 2"
    cfg = train_config(parser().parse_args([*argv.split(), "--pretrain-max-minutes", "1.5", "--nyt-labels"]))
    assert cfg.model["embedding"] == 8 and cfg.model["pooling"] == "max" and cfg.model["dropout_output"] == 0.2
    assert cfg.pretrain == PretrainConfig(epochs=2, max_minutes=1.5) and cfg.nyt_labels
    with pytest.raises(SystemExit):
        parser().parse_args(["train", "--pooling", "sum"])


def test_every_config_field_is_a_flag() -> None:
    p = argparse.ArgumentParser()
    add_train_args(p)
    flags = set(p._option_string_actions)
    for cls, prefix, given in (
        (TrainConfig, "", {"model", "pretrain"}),
        (PretrainConfig, "pretrain-", set()),
        (SentimentConfig, "", {"vocab_size", "num_classes", "pad_id", "valence"}),
    ):
        for f in dataclasses.fields(cls):
            assert f.name in given or f"--{prefix}{f.name.replace('_', '-')}" in flags, f.name


def test_user_data_trains_then_publishes(tmp_path: Path) -> None:
    rows = [(f"a good film number {i}", "pos") if i % 2 else (f"a bad film number {i}", "neg") for i in range(60)]
    data = tmp_path / "mine.csv"
    data.write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows), encoding="utf-8")
    argv = f"all --data {data} --checkpoint {tmp_path / 's.pt'} --models-dir {tmp_path / 'models'} --threads 1"
    flags = "--ensemble 1 --epochs 1 --min-count 1 --embedding 8 --hidden 8 --no-lexicon"
    main([*argv.split(), *flags.split()])
    manifest = read_manifest(tmp_path / "models" / "sentiment" / "1")
    assert manifest.config["labels"] == ["neg", "pos"] and manifest.config["hidden"] == 8
    assert manifest.training["experiments"] == []  # the recorded sweep describes the default data only
