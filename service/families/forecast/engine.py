"""Forecast engine: scale a history, read it once (prefill), then roll the horizon out one step per call.

Every rule lives in the manifest's `config` (features, scaling, quantiles, limits); this module implements the
named rules and refuses a manifest that asks for one it does not know. Training imports the same functions, so
the features a model was trained on are the features it is served with.

    history y[0..T-1] (last `max_context` points)
        │ scaling fitted on it once: z = (y - loc) / scale         (fixed for the life of a session)
        ▼
    prefill:  x (1, T, F) ──► step model ──► quantiles of z[T]      (one call, state (h, c) carried out)
    rollout:  feed back the median of z[T] as the next input, flagged as a forecast (`horizon_step` k / max)
              ──► quantiles of z[T+1] ──► ... (one call per step)
    output:   loc + scale * quantiles                             (so 1000·y gives exactly 1000 × the forecast)

Scaling rules: `standardize` (loc = mean, scale = std of the read history) and `log_standardize` (the same on
log(y) for a series whose values are all positive and vary by more than `LOG_MIN_STD` in log units; the output is
exp(loc + scale · z); quantiles stay quantiles under the monotone exp; c·y shifts log(y) by log c, which the loc
absorbs, so the forecast of c·y is still exactly c × the forecast of y). Other series fall back to `standardize`.

Horizons past the trained rollout length (`max_horizon`) are served up to `horizon_limit` by rolling on with the
`horizon_step` feature held at 1; each interval's half-widths (q - median) are then multiplied by
sqrt(k / max_horizon), so they keep widening like a random walk's. The fed-back median is clipped to
±`rollout_clip` standardized units, so a long rollout stays finite. Quality was measured up to
`measured_horizon` (manifest); a response says when a forecast goes past it.

The step model's contract (DESIGN.md): `x float32 [batch, seq, features]`, `h0`, `c0 float32 [layers, batch,
hidden]` -> `y float32 [batch, seq, quantiles]`, `hn`, `cn`. Output position t is the forecast for position t + 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ...registry import LoadedModel
from .seasonality import detect_season

# x (B, T, F) float32, h0 (L, B, H), c0 (L, B, H) -> y (B, T, Q), hn, cn
StepRunner = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]

# The input features this engine can build, in the order a manifest may list them. For the input at position t
# (its target is position t + 1) with season length m:
#   value         z[t] (observed, or the fed-back median during a rollout)
#   seasonal_lag  z[t + 1 - m], the seasonal naive forecast of the target (z[t] while fewer than m points exist)
#   season_sin    sin(2π ((t + 1) mod m) / m): the target's phase within the season, counted from the context start
#   season_cos    cos of the same angle
#   log_season    log(m) / log(max_season_length): which frequency this is
#   horizon_step  min(k, max_horizon) / max_horizon, k = steps since the last observed value (0 when observed)
KNOWN_FEATURES = ("value", "seasonal_lag", "season_sin", "season_cos", "log_season", "horizon_step")
KNOWN_SCALING = ("standardize", "log_standardize")
LOG_MIN_STD = 1e-3  # log_standardize: a positive series whose log varies less than this is standardized instead
NAME = "forecast"


@dataclass(frozen=True)
class ForecastConfig:
    """The serving rules of one model version, read from `manifest.config`."""

    features: tuple[str, ...]
    quantiles: tuple[float, ...]  # ascending; the median is one of them
    layers: int
    hidden: int  # size of the state vectors h, c (all ensemble members side by side)
    min_history: int
    max_context: int  # only the last max_context points of a history are read (and scaled)
    max_horizon: int
    max_season_length: int
    default_season_length: int
    scaling: str
    constant_tolerance: float  # std <= tolerance * mean|y| counts as a constant series (see Scaling.fit)
    horizon_limit: int = 0  # longest horizon served (0: max_horizon); past max_horizon the rollout continues
    measured_horizon: int = 0  # longest horizon whose quality was measured (0: max_horizon)
    rollout_clip: float = 1e3  # fed-back medians are clipped to ±this (standardized units)
    season_threshold: float = 0.35  # seasonality.detect_season threshold when season_length is omitted

    @property
    def served_horizon(self) -> int:
        return max(self.horizon_limit, self.max_horizon)

    @property
    def quality_horizon(self) -> int:
        return self.measured_horizon or self.max_horizon

    @property
    def median_index(self) -> int:
        return self.quantiles.index(0.5)

    @classmethod
    def from_manifest(cls, config: dict[str, Any]) -> ForecastConfig:
        scaling = config["scaling"]
        cfg = cls(
            features=tuple(config["features"]),
            quantiles=tuple(float(q) for q in config["quantiles"]),
            layers=int(config["layers"]),
            hidden=int(config["state_hidden"]),
            min_history=int(config["min_history"]),
            max_context=int(config["max_context"]),
            max_horizon=int(config["max_horizon"]),
            max_season_length=int(config["max_season_length"]),
            default_season_length=int(config["default_season_length"]),
            scaling=str(scaling["rule"]),
            constant_tolerance=float(scaling["constant_tolerance"]),
            horizon_limit=int(config.get("horizon_limit", 0)),
            measured_horizon=int(config.get("measured_horizon", 0)),
            rollout_clip=float(config.get("rollout_clip", 1e3)),
            season_threshold=float(config.get("season_detection", {}).get("threshold", 0.35)),
        )
        cfg.validate()
        return cfg

    def validate(self) -> None:
        unknown = [f for f in self.features if f not in KNOWN_FEATURES]
        if unknown or "value" not in self.features:
            raise ValueError(f"features {list(self.features)}: unknown {unknown} (known: {list(KNOWN_FEATURES)})")
        if self.scaling not in KNOWN_SCALING:
            raise ValueError(f"scaling rule {self.scaling!r} is not one of {KNOWN_SCALING}")
        if list(self.quantiles) != sorted(self.quantiles) or 0.5 not in self.quantiles:
            raise ValueError(f"quantiles {self.quantiles} must be ascending and include 0.5")
        if not 1 <= self.default_season_length <= self.max_season_length:
            raise ValueError("default_season_length must be within 1..max_season_length")
        if not 1 <= self.min_history <= self.max_context:
            raise ValueError("min_history must be within 1..max_context")

    def to_manifest(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "quantiles": list(self.quantiles),
            "layers": self.layers,
            "state_hidden": self.hidden,
            "min_history": self.min_history,
            "max_context": self.max_context,
            "max_horizon": self.max_horizon,
            "max_season_length": self.max_season_length,
            "default_season_length": self.default_season_length,
            "horizon_limit": self.served_horizon,
            "measured_horizon": self.quality_horizon,
            "rollout_clip": self.rollout_clip,
            "long_horizon": "past max_horizon: horizon_step held at 1, interval half-widths x sqrt(k / max_horizon)",
            "season_detection": {
                "module": "service/families/forecast/seasonality.py",
                "threshold": self.season_threshold,
                "when": "season_length omitted (default_season_length is used only when detection finds none)",
            },
            "scaling": {
                "rule": self.scaling,
                "log_rule": f"log_standardize: rows with every value > 0 and std(log y) > {LOG_MIN_STD} are "
                "standardized in log units (output exp(loc + scale * z)); other rows as standardize",
                "window": "the last max_context points of the history (all of it when shorter)",
                "loc": "mean",
                "scale": "standard deviation (population)",
                "constant_tolerance": self.constant_tolerance,
                "constant_rule": "when std <= constant_tolerance * mean|y|: scale = mean|y|; when every value is "
                "0: loc = 0, scale = 1",
                "output": "loc + scale * model output",
            },
        }


@dataclass(frozen=True)
class Scaling:
    """Per-row standardisation z = (y - loc) / scale, fitted once on a history. loc, scale: (B,) float64."""

    loc: np.ndarray
    scale: np.ndarray
    log: np.ndarray | None = None  # (B,) bool: this row is scaled in log units (None: no row)
    floor: np.ndarray | None = None  # (B,) log rows: values below it (e.g. 0 observed later) are read as it

    @classmethod
    def fit_rule(cls, history: np.ndarray, rule: str, constant_tolerance: float) -> Scaling:
        """The manifest's scaling rule on histories (B, T)."""
        base = cls.fit(history, constant_tolerance)
        if rule != "log_standardize":
            return base
        history = np.asarray(history, dtype=np.float64)
        positive = np.all(history > 0, axis=1)
        logs = np.log(np.where(positive[:, None], history, 1.0))
        mean, std = logs.mean(axis=1), logs.std(axis=1)
        log = positive & (std > LOG_MIN_STD)
        floor = np.where(log, np.min(np.where(positive[:, None], history, 1.0), axis=1) * 1e-3, 0.0)
        return cls(
            loc=np.where(log, mean, base.loc),
            scale=np.where(log, std, base.scale),
            log=log,
            floor=floor,
        )

    @classmethod
    def fit(cls, history: np.ndarray, constant_tolerance: float) -> Scaling:
        """history (B, T) float64. Every comparison is relative, so scaling y by c > 0 scales loc and scale by c.

        A (near-)constant series has std ~ 0: it is scaled by its mean absolute value instead (z ~ 0, output ~ the
        constant); an all-zero series gets loc 0, scale 1. Values are divided by their peak first, so no square
        overflows even near the float64 limit.
        """
        history = np.asarray(history, dtype=np.float64)
        peak = np.max(np.abs(history), axis=1)
        zero = peak == 0
        peak = np.where(zero, 1.0, peak)
        unit = history / peak[:, None]  # (B, T) within [-1, 1]
        mean, std, mean_abs = unit.mean(axis=1), unit.std(axis=1), np.abs(unit).mean(axis=1)
        constant = std <= constant_tolerance * mean_abs
        scale = np.where(constant, mean_abs, std) * peak
        return cls(loc=np.where(zero, 0.0, mean * peak), scale=np.where(zero, 1.0, scale))

    def normalize(self, values: np.ndarray) -> np.ndarray:
        """values (B, T) -> z (B, T) float64."""
        values = np.asarray(values, dtype=np.float64)
        if self.log is not None and self.log.any():
            assert self.floor is not None
            logged = np.log(np.where(self.log[:, None], np.maximum(values, self.floor[:, None]), 1.0))
            values = np.where(self.log[:, None], logged, values)
        return np.asarray((values - self.loc[:, None]) / self.scale[:, None], dtype=np.float64)

    def denormalize(self, z: np.ndarray) -> np.ndarray:
        """z (B, ...) -> original units, float64."""
        shape = (-1,) + (1,) * (z.ndim - 1)
        out = self.loc.reshape(shape) + self.scale.reshape(shape) * np.asarray(z, dtype=np.float64)
        if self.log is not None and self.log.any():
            with np.errstate(over="ignore"):
                out = np.where(self.log.reshape(shape), np.exp(np.where(self.log.reshape(shape), out, 0.0)), out)
        return np.asarray(out, dtype=np.float64)

    @staticmethod
    def concat(parts: Sequence[Scaling]) -> Scaling:
        log = None
        floor = None
        if any(p.log is not None for p in parts):
            log = np.concatenate([p.log if p.log is not None else np.zeros(len(p.loc), bool) for p in parts])
            floor = np.concatenate([p.floor if p.floor is not None else np.zeros(len(p.loc)) for p in parts])
        return Scaling(
            loc=np.concatenate([p.loc for p in parts]),
            scale=np.concatenate([p.scale for p in parts]),
            log=log,
            floor=floor,
        )


def input_features(
    recent: np.ndarray,
    z_new: np.ndarray,
    position: np.ndarray,
    season_length: np.ndarray,
    horizon_step: int,
    cfg: ForecastConfig,
) -> np.ndarray:
    """Model inputs for new values z_new (B, T) -> x (B, T, F) float32.

    recent (B, R): the R = max_season_length standardized values before z_new, oldest first (NaN where none
    exist); position (B,): how many values came before z_new since the context start; season_length (B,) ints;
    horizon_step: k for every new value (0 = observed).
    """
    batch, steps = z_new.shape
    window = recent.shape[1]
    full = np.concatenate([recent, z_new], axis=1)  # (B, R + T)
    t = np.arange(steps)
    m = season_length.astype(np.int64)[:, None]  # (B, 1)
    lag = np.take_along_axis(full, window + t[None, :] + 1 - m, axis=1)  # z[t + 1 - m] (B, T)
    lag = np.where(np.isnan(lag), z_new, lag)
    angle = 2.0 * np.pi * ((position[:, None] + t[None, :] + 1) % m) / m
    columns = {
        "value": z_new,
        "seasonal_lag": lag,
        "season_sin": np.sin(angle),
        "season_cos": np.cos(angle),
        "log_season": np.broadcast_to(np.log(m) / math.log(cfg.max_season_length), (batch, steps)),
        "horizon_step": np.full((batch, steps), min(horizon_step, cfg.max_horizon) / cfg.max_horizon),
    }
    return np.stack([columns[name] for name in cfg.features], axis=-1).astype(np.float32)


@dataclass(frozen=True)
class ForecastState:
    """Everything needed to continue a series (a session stores this; a few KB).

    The scaling is fixed when the state is made, so later observations are read in the same units.
    """

    h: np.ndarray  # (L, B, H) float32
    c: np.ndarray  # (L, B, H) float32
    scaling: Scaling
    season_length: np.ndarray  # (B,) int64
    recent: np.ndarray  # (B, max_season_length) float64: last standardized inputs, oldest first, NaN = none yet
    position: np.ndarray  # (B,) int64: values read since the context start
    next_quantiles: np.ndarray  # (B, Q) float32: standardized forecast of the next value

    @property
    def batch(self) -> int:
        return int(self.h.shape[1])

    def session_data(self) -> dict[str, Any]:
        """Everything but (h, c) as JSON-able data, for a session store (one series: batch 1)."""
        assert self.batch == 1, "a session holds one series"
        log = self.scaling.log is not None and bool(self.scaling.log[0])
        return {
            "loc": float(self.scaling.loc[0]),
            "scale": float(self.scaling.scale[0]),
            "log": log,
            "floor": float(self.scaling.floor[0]) if log and self.scaling.floor is not None else 0.0,
            "season_length": int(self.season_length[0]),
            "recent": [None if math.isnan(v) else float(v) for v in self.recent[0]],
            "position": int(self.position[0]),
            "next_quantiles": [float(v) for v in self.next_quantiles[0]],
        }

    @classmethod
    def from_session_data(cls, h: np.ndarray, c: np.ndarray, data: dict[str, Any]) -> ForecastState:
        """Rebuild a state from (h, c) (L, 1, H) and `session_data()`."""
        return cls(
            h=np.asarray(h, dtype=np.float32),
            c=np.asarray(c, dtype=np.float32),
            scaling=Scaling(
                loc=np.array([data["loc"]]),
                scale=np.array([data["scale"]]),
                log=np.array([bool(data.get("log", False))]),
                floor=np.array([float(data.get("floor", 0.0))]),
            ),
            season_length=np.array([data["season_length"]], dtype=np.int64),
            recent=np.array([[math.nan if v is None else v for v in data["recent"]]], dtype=np.float64),
            position=np.array([data["position"]], dtype=np.int64),
            next_quantiles=np.array([data["next_quantiles"]], dtype=np.float32),
        )


class Forecaster:
    """The forecasting algorithm over any step runner (onnxruntime in the service, PyTorch in training)."""

    def __init__(self, config: ForecastConfig, run: StepRunner) -> None:
        self.config = config
        self.run = run

    def _advance(self, state: ForecastState, z_new: np.ndarray, horizon_step: int) -> ForecastState:
        """Feed standardized values z_new (B, T) through the model; returns the new state."""
        x = input_features(state.recent, z_new, state.position, state.season_length, horizon_step, self.config)
        y, h, c = self.run(x, state.h, state.c)  # y (B, T, Q)
        window = state.recent.shape[1]
        recent = np.concatenate([state.recent, z_new], axis=1)[:, -window:]
        return replace(
            state, h=h, c=c, recent=recent, position=state.position + z_new.shape[1], next_quantiles=y[:, -1]
        )

    def prefill(
        self, history: np.ndarray, season_length: int | np.ndarray, scaling: Scaling | None = None
    ) -> ForecastState:
        """Read histories (B, T) (equal lengths, T >= 1) in one model call: fits the scaling on the last
        `max_context` points (unless one is given) and returns the state after them, with the forecast of the
        next value."""
        cfg = self.config
        history = np.asarray(history, dtype=np.float64)[:, -cfg.max_context :]
        batch = history.shape[0]
        scaling = scaling or Scaling.fit_rule(history, cfg.scaling, cfg.constant_tolerance)
        zeros = np.zeros((cfg.layers, batch, cfg.hidden), dtype=np.float32)
        empty = ForecastState(
            h=zeros,
            c=zeros.copy(),
            scaling=scaling,
            season_length=np.broadcast_to(np.asarray(season_length, dtype=np.int64), (batch,)).copy(),
            recent=np.full((batch, cfg.max_season_length), np.nan),
            position=np.zeros(batch, dtype=np.int64),
            next_quantiles=np.zeros((batch, len(cfg.quantiles)), dtype=np.float32),
        )
        return self._advance(empty, scaling.normalize(history), horizon_step=0)

    def observe(self, state: ForecastState, values: np.ndarray) -> ForecastState:
        """Continue a state with new observations (B, T) in original units, keeping its scaling."""
        return self._advance(state, state.scaling.normalize(values), horizon_step=0)

    def rollout_standardized(self, state: ForecastState, horizon: int) -> np.ndarray:
        """Standardized quantiles (B, horizon, Q): step k's median is fed back as the input of step k + 1.
        The state is not changed (a rollout is a look ahead, not an observation)."""
        cfg = self.config
        med = cfg.median_index
        out = [state.next_quantiles]
        for k in range(1, horizon):
            z_in = np.clip(out[-1][:, med : med + 1].astype(np.float64), -cfg.rollout_clip, cfg.rollout_clip)
            state = self._advance(state, z_in, horizon_step=k)
            out.append(state.next_quantiles)
        q = np.stack(out, axis=1)  # (B, horizon, Q)
        if horizon > cfg.max_horizon:  # past the trained rollout: widen the intervals like a random walk's
            steps = np.arange(1, horizon + 1, dtype=np.float64)
            growth = np.sqrt(np.maximum(steps / cfg.max_horizon, 1.0))[None, :, None]  # (1, H, 1)
            median = q[:, :, med : med + 1]
            q = (median + (q - median) * growth).astype(np.float32)
        return q

    def rollout(self, state: ForecastState, horizon: int) -> np.ndarray:
        """Quantiles (B, horizon, Q) in original units, float64."""
        return state.scaling.denormalize(self.rollout_standardized(state, horizon))

    def forecast(self, history: np.ndarray, horizon: int, season_length: int | np.ndarray) -> np.ndarray:
        return self.rollout(self.prefill(history, season_length), horizon)


def concat_states(states: Sequence[ForecastState]) -> ForecastState:
    """One batch from several states (row order kept), so their rollouts share every model call."""
    return ForecastState(
        h=np.concatenate([s.h for s in states], axis=1),
        c=np.concatenate([s.c for s in states], axis=1),
        scaling=Scaling.concat([s.scaling for s in states]),
        season_length=np.concatenate([s.season_length for s in states]),
        recent=np.concatenate([s.recent for s in states]),
        position=np.concatenate([s.position for s in states]),
        next_quantiles=np.concatenate([s.next_quantiles for s in states]),
    )


@dataclass(frozen=True)
class ForecastItem:
    """One stateless forecast request, for micro-batching."""

    series: Sequence[float]
    horizon: int
    season_length: int  # resolved (given or detected: see ForecastEngine.season_length)


@dataclass
class ForecastResult:
    quantiles: dict[float, list[float]]  # every trained quantile -> horizon values
    median: list[float]


class ForecastEngine:
    """The served forecaster: the manifest's rules over the version's onnxruntime session."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.config = ForecastConfig.from_manifest(model.manifest.config)
        self.session = model.sessions["step"]
        self.forecaster = Forecaster(self.config, self._run)

    def _run(self, x: np.ndarray, h0: np.ndarray, c0: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        y, h, c = self.session.run(None, {"x": x, "h0": h0, "c0": c0})
        return y, h, c

    def season_length(self, history: Sequence[float] | np.ndarray, season_length: int | None) -> tuple[int, str]:
        """(season length to use, where it came from: "request", "detected" or "default"): an explicit value wins;
        otherwise the season detected in the history (seasonality.py), or the model's default when none is found."""
        if season_length is not None:
            return season_length, "request"
        cfg = self.config
        found = detect_season(np.asarray(history, dtype=np.float64), cfg.max_season_length, cfg.season_threshold)
        if found.season_length > 1:
            return found.season_length, "detected"
        return cfg.default_season_length, "default"

    def prefill(self, history: list[float] | np.ndarray, season_length: int) -> ForecastState:
        """State after reading one history (for sessions: keep it and `observe` new values later)."""
        return self.forecaster.prefill(np.asarray(history, dtype=np.float64)[None, :], season_length)

    def observe(self, state: ForecastState, values: list[float] | np.ndarray) -> ForecastState:
        return self.forecaster.observe(state, np.asarray(values, dtype=np.float64)[None, :])

    def rollout(self, state: ForecastState, horizon: int) -> ForecastResult:
        values = self.forecaster.rollout(state, horizon)[0]  # (horizon, Q)
        quantiles = {q: values[:, i].tolist() for i, q in enumerate(self.config.quantiles)}
        return ForecastResult(quantiles=quantiles, median=quantiles[0.5])

    def forecast(self, history: list[float] | np.ndarray, horizon: int, season_length: int) -> ForecastResult:
        return self.rollout(self.prefill(history, season_length), horizon)

    def forecast_many(self, items: Sequence[ForecastItem]) -> list[ForecastResult]:
        """Many forecasts in few calls: histories of equal (context) length are read together, then all of them
        roll out together for the longest horizon. Each row is computed as if alone."""
        cfg = self.config
        groups: dict[int, list[int]] = {}
        for i, item in enumerate(items):
            groups.setdefault(min(len(item.series), cfg.max_context), []).append(i)
        states: list[ForecastState] = []
        order: list[int] = []
        for length, rows in groups.items():
            history = np.array([np.asarray(items[i].series, dtype=np.float64)[-length:] for i in rows])
            seasons = np.array([items[i].season_length for i in rows], dtype=np.int64)
            states.append(self.forecaster.prefill(history, seasons))
            order += rows
        values = self.forecaster.rollout(concat_states(states), max(item.horizon for item in items))  # (B, H, Q)
        results: list[ForecastResult] = [None] * len(items)  # type: ignore[list-item]
        for row, i in enumerate(order):
            horizon = items[i].horizon
            quantiles = {q: values[row, :horizon, k].tolist() for k, q in enumerate(cfg.quantiles)}
            results[i] = ForecastResult(quantiles=quantiles, median=quantiles[0.5])
        return results
