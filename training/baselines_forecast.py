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


# ---- ARIMA and Theta -----------------------------------------------------------------------------------------------
def _ndiffs(y: np.ndarray, max_d: int = 2) -> int:
    """Differences needed for a stationary series by the KPSS test at 5% (as R's forecast::ndiffs)."""
    from statsmodels.tsa.stattools import kpss

    d = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        while d < max_d and len(y) > 10 and np.std(y) > 0:
            try:
                if kpss(y, regression="c", nlags="auto")[1] >= 0.05:
                    break
            except (ValueError, OverflowError):
                break
            y, d = np.diff(y), d + 1
    return d


def arima_forecast(history: np.ndarray, horizon: int, season_length: int) -> ETSForecast:
    """A reduced automatic ARIMA (in the spirit of R's forecast::auto.arima): one seasonal difference when the
    series is seasonal and has three seasons, d by KPSS, then (p, q) from a small grid with a seasonal MA(1), a
    drift when the total differencing is one; lowest AICc wins."""
    from statsmodels.tsa.arima.model import ARIMA

    y = np.asarray(history, dtype=np.float64)
    m = season_length
    big_d = 1 if m > 1 and len(y) >= 3 * m + 4 else 0
    base = y[m:] - y[:-m] if big_d else y
    d = _ndiffs(base, max_d=1 if big_d else 2)
    seasonal = (0, big_d, 1 if big_d else 0, m if big_d else 0)
    trend = "t" if d + big_d == 1 else ("c" if d + big_d == 0 else "n")
    best: tuple[float, Any, str] | None = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p, q in ((1, 0), (0, 1), (1, 1), (2, 2)):
            try:
                result = ARIMA(y, order=(p, d, q), seasonal_order=seasonal, trend=trend).fit()
            except Exception as exc:  # a candidate that cannot be fitted is skipped
                log.debug("ARIMA(%d,%d,%d) failed: %s", p, d, q, exc)
                continue
            if math.isfinite(result.aicc) and (best is None or result.aicc < best[0]):
                label = f"ARIMA({p},{d},{q})" + (f"(0,1,1)[{m}]" if big_d else "") + (" drift" if trend == "t" else "")
                best = (result.aicc, result, label)
        if best is not None:
            frame = best[1].get_forecast(horizon).summary_frame(alpha=0.2)
            mean, lower, upper = (frame[c].to_numpy(np.float64) for c in ("mean", "mean_ci_lower", "mean_ci_upper"))
            if np.all(np.isfinite(mean)):
                return ETSForecast(mean, lower, upper, best[2])
    naive = seasonal_naive(y, horizon, m)
    return ETSForecast(naive, naive, naive, "seasonal naive (every ARIMA fit failed)")


def theta_forecast(history: np.ndarray, horizon: int, season_length: int) -> ETSForecast:
    """statsmodels' Theta method (SES with drift, classical multiplicative deseasonalisation when seasonal)."""
    from statsmodels.tsa.forecasting.theta import ThetaModel

    y = np.asarray(history, dtype=np.float64)
    m = season_length
    seasonal = m > 1 and len(y) >= 2 * m + 2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            method = "multiplicative" if np.all(y > 0) else "additive"
            result = ThetaModel(y, period=m if seasonal else 1, deseasonalize=seasonal, method=method).fit()
            mean = np.asarray(result.forecast(horizon), dtype=np.float64)
            bands = result.prediction_intervals(horizon, alpha=0.2)
            lower, upper = (np.asarray(bands[c], dtype=np.float64) for c in ("lower", "upper"))
        if np.all(np.isfinite(mean)):
            return ETSForecast(mean, lower, upper, "Theta")
    except Exception as exc:
        log.debug("Theta failed: %s", exc)
    naive = seasonal_naive(y, horizon, m)
    return ETSForecast(naive, naive, naive, "seasonal naive (Theta failed)")


STATISTICAL_METHODS = {"ets": ets_forecast, "arima": arima_forecast, "theta": theta_forecast}


ARIMA_MAX_HISTORY = 240  # ARIMA reads at most the last 240 points (20 years monthly): full-length fits take minutes


def _job_key(method: str, history: np.ndarray, horizon: int, season_length: int) -> str:
    import hashlib

    digest = hashlib.sha256(f"{method}|{horizon}|{season_length}|".encode())
    digest.update(np.ascontiguousarray(history, dtype="<f8").tobytes())
    return digest.hexdigest()[:24]


def cached_statistical_forecasts(
    method: str, jobs: list[tuple[np.ndarray, int, int]], cache: Any, progress: bool = True, compute: bool = True
) -> list[ETSForecast | None]:
    """STATISTICAL_METHODS[method] for (history, horizon, season_length) jobs; every fit is appended to the JSON
    lines file `cache` (a Path) as soon as it is made, keyed by a hash of its inputs, and read back from there.
    With compute=False only cached fits are returned (None for the others)."""
    import json

    from tqdm import tqdm

    done: dict[str, dict[str, Any]] = {}
    if cache.is_file():
        for line in cache.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                done[row["key"]] = row
    cache.parent.mkdir(parents=True, exist_ok=True)
    fit = STATISTICAL_METHODS[method]
    out: list[ETSForecast | None] = []
    with cache.open("a") as f:
        for history, horizon, season in tqdm(jobs, desc=method, unit="series", leave=False, disable=not progress):
            key = _job_key(method, history, horizon, season)
            if key not in done and not compute:
                out.append(None)
                continue
            if key not in done:
                read = history[-ARIMA_MAX_HISTORY:] if method == "arima" else history
                r = fit(read, horizon, season)
                done[key] = {"key": key, "mean": r.mean.tolist(), "lower": r.lower.tolist(),
                             "upper": r.upper.tolist(), "model": r.model}  # fmt: skip
                f.write(json.dumps(done[key]) + "\n")
                f.flush()
            row = done[key]
            mean, lower, upper = (np.array(row[k]) for k in ("mean", "lower", "upper"))
            out.append(ETSForecast(mean, lower, upper, model=row["model"]))
    return out
