"""Training windows: random (context, horizon) cuts of real and synthetic series, scaled as the service scales.

    real series     [ ...... train ...... | valid | test ]   windows end before the validation horizon
    synthetic       [ ........ whole series ........ ]       windows anywhere (never scored)

A batch takes its horizon R and context length C from one random anchor series (its own horizon; C the longest it
allows, or a random shorter one), then fills up with windows of every series of that pool that is long enough, so
short series get batches of short contexts and long series are read at every length. Each window is scaled by the
manifest's rule on its context alone (standardize, or log_standardize for positive rows) and is told either its
known season length or, with probability `detected_share`, the one `seasonality.detect_season` finds in it (what a
request without `season_length` gets).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from service.families.forecast.engine import Scaling, input_features
from service.families.forecast.seasonality import detect_season
from training.baselines_forecast import mase_scale
from training.data.series import Series
from training.forecast.config import TrainConfig


@dataclass
class Batch:
    """B windows with one context length C and one horizon R (buckets: no padding, so no packing is needed)."""

    x: Tensor  # (B, C, F) context features
    context_targets: Tensor  # (B, C) z[t + 1] for t < C - 1; the last column is the first horizon value
    targets: Tensor  # (B, R) the horizon in standardized units
    weights: Tensor  # (B,) 1 / in-sample seasonal naive MAE (standardized)
    recent: np.ndarray  # (B, W) standardized values before the horizon (for the rollout's lag feature)
    position: np.ndarray  # (B,) = C
    season_length: np.ndarray  # (B,)


@dataclass(frozen=True)
class Pooled:
    values: np.ndarray  # what windows may be cut from
    season_length: int  # known
    detected: int  # found by detect_season in `values`


def _pooled(values: np.ndarray, known: int, max_season: int) -> Pooled:
    return Pooled(values, known, detect_season(values, max_season).season_length)


class WindowSampler:
    """Random training windows. Real series only give windows that end before their validation horizon."""

    def __init__(self, real: list[Series], synthetic: list[Series], cfg: TrainConfig, seed: int) -> None:
        self.cfg = cfg
        self.serving = cfg.serving(cfg.hidden)
        self.rng = np.random.default_rng(seed)
        m = cfg.max_season_length
        self.synthetic = [
            _pooled(s.values, s.season_length, m)
            for s in synthetic
            if len(s.values) >= cfg.min_history + cfg.max_horizon
        ]
        real = [s for s in real if len(s.train) >= cfg.min_history + s.horizon]
        if not real and not self.synthetic:
            raise ValueError(f"no series is long enough for training (min_history {cfg.min_history} + horizon)")
        # Real series grouped by horizon (= frequency); a group is drawn with probability ∝ count ** balance.
        by_horizon: dict[int, list[Pooled]] = {}
        for s in real:
            by_horizon.setdefault(s.horizon, []).append(_pooled(s.train, s.season_length, m))
        self.horizons = list(by_horizon)
        self.groups = list(by_horizon.values())
        weights = np.array([len(g) for g in self.groups], dtype=np.float64) ** cfg.frequency_balance
        self.group_weights = weights / weights.sum() if len(weights) else weights

    def sample(self) -> Batch:
        cfg, rng = self.cfg, self.rng
        if self.synthetic and (not self.groups or rng.random() < cfg.synthetic_share):
            horizon = int(rng.integers(6, cfg.max_horizon + 1))
            pool = self.synthetic
        else:
            g = int(rng.choice(len(self.groups), p=self.group_weights))
            horizon, pool = self.horizons[g], self.groups[g]  # real windows roll out exactly their horizon
        anchor = pool[int(rng.integers(len(pool)))].values
        longest = min(len(anchor) - horizon, cfg.max_context)
        context = longest if rng.random() < cfg.full_context_share else int(rng.integers(cfg.min_history, longest + 1))
        pool = [p for p in pool if len(p.values) >= context + horizon]
        rows = []
        for i in rng.integers(len(pool), size=cfg.batch_size):
            p = pool[int(i)]
            end = int(rng.integers(context, len(p.values) - horizon + 1))  # context y[end-C..end), horizon after
            season = p.detected if rng.random() < cfg.detected_share else p.season_length
            rows.append((p.values[end - context : end], p.values[end : end + horizon], season))
        return self.collate(rows)

    def collate(self, rows: list[tuple[np.ndarray, np.ndarray, int]]) -> Batch:
        cfg = self.cfg
        window = cfg.max_season_length
        contexts = np.stack([r[0] for r in rows])  # (B, C)
        horizons = np.stack([r[1] for r in rows])  # (B, R)
        seasons = np.array([r[2] for r in rows], dtype=np.int64)
        batch, context = contexts.shape
        scaling = Scaling.fit_rule(contexts, cfg.scaling, cfg.constant_tolerance)
        z, z_target = scaling.normalize(contexts), scaling.normalize(horizons)
        empty = np.full((batch, window), np.nan)
        x = input_features(empty, z, np.zeros(batch, np.int64), seasons, 0, self.serving)
        recent = np.concatenate([empty, z], axis=1)[:, -window:]
        weights = np.array(
            [1.0 / max(_nan_to(mase_scale(z[b], int(seasons[b])), 1.0), cfg.mase_floor) for b in range(batch)],
            dtype=np.float32,
        )
        # A horizon that leaves ±target_limit standardized units of its context (an all-zero context before a
        # demand, an explosion) cannot be learnt from the context; such windows (a few % of the synthetic ones)
        # would dominate the pinball loss, so they carry none.
        weights[np.abs(z_target).max(axis=1) > cfg.target_limit] = 0.0
        return Batch(
            x=torch.from_numpy(x),
            context_targets=torch.from_numpy(np.concatenate([z[:, 1:], z_target[:, :1]], axis=1).astype(np.float32)),
            targets=torch.from_numpy(z_target.astype(np.float32)),
            weights=torch.from_numpy(weights),
            recent=recent,
            position=np.full(batch, context, dtype=np.int64),
            season_length=seasons,
        )


def _nan_to(value: float, default: float) -> float:
    return value if math.isfinite(value) else default
