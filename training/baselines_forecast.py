"""Forecast baselines and metrics (M4 conventions).

- Seasonal naive: repeat the last season (the last value when the season length is 1).
- ETS: statsmodels `ETSModel` fitted per series, the model chosen by AICc among additive/multiplicative error,
  none/damped-additive trend and none/additive/multiplicative season (multiplicative parts only for positive
  series; seasonal parts only when two full seasons exist) — a reduced version of the automatic ETS of R's
  `forecast::ets`, fitted on the whole history with heuristic initial states (see `_fit_ets`). Its 80% interval
  comes from statsmodels' prediction intervals.
- MASE: mean absolute error over the horizon divided by the in-sample mean absolute error of the seasonal naive
  forecast (lag = season length; lag 1 when the history is not longer than one season).
- sMAPE: mean of 200 |y - f| / (|y| + |f|) in percent (a 0/0 term counts as 0).
- Coverage: share of horizon points inside [q0.1, q0.9] (nominal 80%).
"""

from __future__ import annotations

import logging
import math
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


# ---- metrics -------------------------------------------------------------------------------------------------------
def mase_scale(history: np.ndarray, season_length: int) -> float:
    """In-sample mean absolute error of the seasonal naive forecast (NaN when it is 0 or undefined)."""
    m = season_length if len(history) > season_length else 1
    if len(history) <= m:
        return math.nan
    scale = float(np.mean(np.abs(history[m:] - history[:-m])))
    return scale if scale > 0 else math.nan


def mase(actual: np.ndarray, forecast: np.ndarray, history: np.ndarray, season_length: int) -> float:
    return float(np.mean(np.abs(actual - forecast))) / mase_scale(history, season_length)


def smape(actual: np.ndarray, forecast: np.ndarray) -> float:
    num = 2.0 * np.abs(actual - forecast)
    den = np.abs(actual) + np.abs(forecast)
    terms = np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)
    return float(100.0 * np.mean(terms))


def coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    return float(np.mean((actual >= lower) & (actual <= upper)))


# ---- seasonal naive ------------------------------------------------------------------------------------------------
def seasonal_naive(history: np.ndarray, horizon: int, season_length: int) -> np.ndarray:
    m = season_length if len(history) >= season_length else 1
    last_season = history[len(history) - m :]
    return np.asarray(last_season[np.arange(horizon) % m], dtype=np.float64)


# ---- ETS -----------------------------------------------------------------------------------------------------------
@dataclass
class ETSForecast:
    mean: np.ndarray  # (H,)
    lower: np.ndarray  # (H,) 10% quantile
    upper: np.ndarray  # (H,) 90% quantile
    model: str  # e.g. "ETS(M,Ad,M)", or "seasonal naive (every ETS fit failed)"


def _ets_grid(positive: bool, seasonal: bool) -> list[tuple[str, str | None, bool, str | None]]:
    """(error, trend, damped, season) candidates."""
    grid: list[tuple[str, str | None, bool, str | None]] = [("add", None, False, None), ("add", "add", True, None)]
    if positive:
        grid += [("mul", None, False, None), ("mul", "add", True, None)]
    if seasonal:
        grid += [("add", None, False, "add"), ("add", "add", True, "add")]
        if positive:
            grid += [("mul", None, False, "mul"), ("mul", "add", True, "mul")]
    return grid


def _label(error: str, trend: str | None, damped: bool, season: str | None) -> str:
    e = error[0].upper()
    t = "N" if trend is None else ("Ad" if damped else "A")
    s = "N" if season is None else season[0].upper()
    return f"ETS({e},{t},{s})"


def _fit_ets(y: Any, error: str, trend: str | None, damped: bool, season: str | None, season_length: int) -> Any:
    """Heuristic initial states (fitted smoothing parameters only): ~10x faster than estimating the states too,
    with the same accuracy on our series; the estimated initialisation is the fallback when the heuristic one
    cannot be computed (too few points)."""
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    spec = {"error": error, "trend": trend, "damped_trend": damped, "seasonal": season,
            "seasonal_periods": season_length if season else None}  # fmt: skip
    try:
        return ETSModel(y, initialization_method="heuristic", **spec).fit(disp=False, maxiter=200)
    except ValueError:
        return ETSModel(y, **spec).fit(disp=False, maxiter=200)


def ets_forecast(history: np.ndarray, horizon: int, season_length: int) -> ETSForecast:
    """Fit every candidate, keep the lowest AICc with finite forecasts; seasonal naive when all fail."""
    import pandas as pd

    history = np.asarray(history, dtype=np.float64)
    y = pd.Series(history)
    seasonal = season_length > 1 and len(history) >= 2 * season_length + 2
    fits = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter from the optimiser, per candidate
        for error, trend, damped, season in _ets_grid(bool(np.all(history > 0)), seasonal):
            try:
                result = _fit_ets(y, error, trend, damped, season, season_length)
                if math.isfinite(result.aicc):
                    fits.append((result.aicc, (error, trend, damped, season), result))
            except Exception as exc:  # a candidate that cannot be fitted is skipped
                log.debug("ETS candidate %s failed: %s", _label(error, trend, damped, season), exc)
        for _, spec, result in sorted(fits, key=lambda f: f[0]):
            try:
                frame = result.get_prediction(len(y), len(y) + horizon - 1).summary_frame(alpha=0.2)
            except Exception as exc:
                log.debug("ETS %s prediction failed: %s", _label(*spec), exc)
                continue
            mean, lower, upper = (frame[c].to_numpy(np.float64) for c in ("mean", "pi_lower", "pi_upper"))
            if np.all(np.isfinite(mean)) and np.all(np.isfinite(lower)) and np.all(np.isfinite(upper)):
                return ETSForecast(mean, lower, upper, _label(*spec))
    naive = seasonal_naive(history, horizon, season_length)
    return ETSForecast(naive, naive, naive, "seasonal naive (every ETS fit failed)")


def _ets_job(args: tuple[np.ndarray, int, int]) -> ETSForecast:
    return ets_forecast(*args)


def ets_forecasts(jobs: list[tuple[np.ndarray, int, int]], workers: int = 2) -> list[ETSForecast]:
    """ETS for many (history, horizon, season_length) jobs, in `workers` processes (1 = in this process)."""
    from tqdm import tqdm

    if workers <= 1:
        return [ets_forecast(*job) for job in tqdm(jobs, desc="ETS", unit="series", leave=False)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(tqdm(pool.map(_ets_job, jobs, chunksize=2), total=len(jobs), desc="ETS", unit="series"))
