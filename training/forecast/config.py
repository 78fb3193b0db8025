"""The forecaster's training recipe and the serving rules it implies (one place for both)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from service.families.forecast.engine import KNOWN_FEATURES, ForecastConfig

FAMILY = "forecast"
FEATURES = KNOWN_FEATURES  # every feature the engine can build, in its order: defined once, in the engine


@dataclass
class TrainConfig:
    seed: int = 1
    members: int = 3  # ensemble size (each member trained with seed + i)
    steps: int = 2000  # batches per member
    batch_size: int = 128
    lr: float = 3e-3
    lr_final: float = 1e-4  # cosine decay to this
    warmup: int = 100
    clip: float = 1.0
    hidden: int = 64
    layers: int = 2
    dropout: float = 0.1
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    min_history: int = 8
    max_context: int = 120
    max_horizon: int = 48  # longest rollout trained on (synthetic windows draw 6..this)
    horizon_limit: int = 1000  # longest horizon served (the rollout continues past max_horizon)
    max_season_length: int = 52
    default_season_length: int = 1
    constant_tolerance: float = 1e-6
    scaling: Literal["standardize", "log_standardize"] = "log_standardize"
    full_context_share: float = 0.5  # windows whose context is as long as possible (what a long history gets)
    synthetic_series: int = 1000  # drawn by training/data/synthetic.py
    synthetic_share: float = 0.35  # share of batches cut from synthetic series
    detected_share: float = 0.3  # windows told the season detected in their series instead of the known one
    frequency_balance: float = 0.5  # P(frequency group) ∝ its series count ** this (1: every series alike)
    grad_context: int = 48  # context steps that carry gradients (the earlier ones only build the state)
    context_loss_weight: float = 0.5  # one-step-ahead loss inside the context, relative to the horizon loss
    mase_floor: float = 0.05  # window weight = 1 / max(seasonal naive MAE in standardized units, floor)
    target_limit: float = 10.0  # windows whose horizon leaves ±this (standardized units) carry no loss
    eval_every: int = 250
    max_minutes: float = 9.5  # per member (0 = no limit): `make models-forecast` fits in ~30 min on 2 cores
    baselines: bool = True  # fit ETS, ARIMA and Theta per series at export (cached; minutes the first time)
    legacy_synthetic: bool = False  # the first generator (training/data/series.py synthetic_series), for ablation

    def serving(self, state_hidden: int, measured_horizon: int = 0) -> ForecastConfig:
        return ForecastConfig(
            features=FEATURES,
            quantiles=tuple(self.quantiles),
            layers=self.layers,
            hidden=state_hidden,
            min_history=self.min_history,
            max_context=self.max_context,
            max_horizon=self.max_horizon,
            max_season_length=self.max_season_length,
            default_season_length=self.default_season_length,
            scaling=self.scaling,
            constant_tolerance=self.constant_tolerance,
            horizon_limit=self.horizon_limit,
            measured_horizon=measured_horizon,
        )
