"""The recorded experiments: each variant is the default recipe changed in the respects it names."""

from dataclasses import replace
from pathlib import Path
from typing import Any

from training.sentiment.config import PretrainConfig, TrainConfig
from training.sentiment.experiments import VARIANTS, apply_overrides, read_experiments


def test_a_variant_changes_only_what_it_names() -> None:
    base = TrainConfig(model={"dropout_output": 0.4})
    cfg = apply_overrides(base, VARIANTS["e128-b32-pretrained"])
    assert cfg.model == {"dropout_output": 0.4, "embedding": 128, "hidden": 128}
    assert cfg.pretrain == PretrainConfig(epochs=3)
    same: dict[str, Any] = {
        "batch_size": base.batch_size,
        "lr": base.lr,
        "patience": base.patience,
        "epochs": base.epochs,
    }
    assert replace(cfg, model=base.model, pretrain=base.pretrain, **same) == base
    assert apply_overrides(base, VARIANTS["e64-h96-b64-scratch"]).model == base.model  # the default size


def test_every_recorded_run_names_a_known_variant() -> None:
    records = read_experiments(Path("training/sentiment_experiments.jsonl"))
    assert records and {r["variant"] for r in records} <= set(VARIANTS)
