"""A tiny forecaster trained for a few seconds on synthetic seasonal series, exported like the real one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.data.series import Series, SeriesSet, default_horizon, seasonal_trend, series_digest

TINY_SEASONS = (12, 4, 1)


def tiny_series(count: int = 12, length: int = 150, seed: int = 0, constants: int = 1) -> SeriesSet:
    """Seasonal series (trend + a fixed seasonal shape + noise) with season lengths 12, 4 and 1, at magnitudes
    from 1e-2 to 1e4, and `constants` constant series."""
    rng = np.random.default_rng(seed)
    series = []
    for i in range(count):
        m = TINY_SEASONS[i % len(TINY_SEASONS)]
        values = seasonal_trend(length, m, rng, noise=0.02) * 10.0 ** rng.uniform(-2, 4)
        series.append(Series(f"tiny/{i}", values, m, default_horizon(m), "synthetic"))
    for i in range(constants):
        m = TINY_SEASONS[i % len(TINY_SEASONS)]
        series.append(
            Series(f"tiny/constant-{i}", np.full(length, 10.0 ** (i - 1)), m, default_horizon(m), "synthetic")
        )
    return SeriesSet(series=series, source="tests/fixtures_forecast.py", sha256=series_digest(series))


def tiny_checkpoint_path(models_root: Path) -> Path:
    """Where build_tiny_forecast_model leaves the PyTorch checkpoint (beside the models directory)."""
    return models_root.parent / f"{models_root.name}-forecast.pt"


def build_tiny_forecast_model(models_root: Path) -> Path:
    """Train (a few seconds) and export a tiny forecaster into models_root/forecast/1; returns that directory."""
    from tests.torch_threads import one_torch_thread
    from training.forecast.config import TrainConfig
    from training.forecast.export import export
    from training.forecast.train import train

    data = tiny_series()
    cfg = TrainConfig(
        members=2,  # two members: the exported graph is an ensemble, as the default model is
        steps=120,
        batch_size=32,
        hidden=16,
        layers=2,
        max_context=48,
        max_horizon=24,
        min_history=8,
        synthetic_series=0,
        eval_every=60,
        warmup=10,
        grad_context=24,
        baselines=False,
    )
    checkpoint = tiny_checkpoint_path(models_root)
    with one_torch_thread():
        train(data, cfg, checkpoint)
        return export(checkpoint, models_root, data, version=1, cache_dir=models_root.parent)
