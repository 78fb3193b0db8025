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

# x (B, T, F) float32, h0 (L, B, H), c0 (L, B, H) -> y (B, T, Q), hn, cn
StepRunner = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]

# The input features this engine can build, in the order a manifest may list them. For the input at position t
# (its target is position t + 1) with season length m:
#   value         z[t] (observed, or the fed-back median during a rollout)
#   seasonal_lag  z[t + 1 - m], the seasonal naive forecast of the target (z[t] while fewer than m points exist)
#   season_sin    sin(2π ((t + 1) mod m) / m): the target's phase within the season, counted from the context start
#   season_cos    cos of the same angle
#   log_season    log(m) / log(max_season_length): which frequency this is
#   horizon_step  k / max_horizon, k = steps since the last observed value (0 for observed inputs)
KNOWN_FEATURES = ("value", "seasonal_lag", "season_sin", "season_cos", "log_season", "horizon_step")
KNOWN_SCALING = "standardize"


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
        )
        cfg.validate()
        return cfg

    def validate(self) -> None:
        unknown = [f for f in self.features if f not in KNOWN_FEATURES]
        if unknown or "value" not in self.features:
            raise ValueError(f"features {list(self.features)}: unknown {unknown} (known: {list(KNOWN_FEATURES)})")
        if self.scaling != KNOWN_SCALING:
            raise ValueError(f"scaling rule {self.scaling!r} is not {KNOWN_SCALING!r}")
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
            "scaling": {
                "rule": self.scaling,
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
        return (np.asarray(values, dtype=np.float64) - self.loc[:, None]) / self.scale[:, None]

    def denormalize(self, z: np.ndarray) -> np.ndarray:
        """z (B, ...) -> original units, float64."""
        shape = (-1,) + (1,) * (z.ndim - 1)
        return self.loc.reshape(shape) + self.scale.reshape(shape) * np.asarray(z, dtype=np.float64)


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
        "horizon_step": np.full((batch, steps), horizon_step / cfg.max_horizon),
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
        return {
            "loc": float(self.scaling.loc[0]),
            "scale": float(self.scaling.scale[0]),
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
            scaling=Scaling(loc=np.array([data["loc"]]), scale=np.array([data["scale"]])),
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
        scaling = scaling or Scaling.fit(history, cfg.constant_tolerance)
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
        med = self.config.median_index
        out = [state.next_quantiles]
        for k in range(1, horizon):
            state = self._advance(state, out[-1][:, med : med + 1].astype(np.float64), horizon_step=k)
            out.append(state.next_quantiles)
        return np.stack(out, axis=1)

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
        scaling=Scaling(
            loc=np.concatenate([s.scaling.loc for s in states]), scale=np.concatenate([s.scaling.scale for s in states])
        ),
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
    season_length: int


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
