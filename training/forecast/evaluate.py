"""Evaluation: validation MASE for model selection; the held-out test horizons of every training series and of the
reserved R collections, scored against seasonal naive, ETS, ARIMA and Theta fitted per series; tables; the plot.

    per series:   MASE / sMAPE of the median, 80% coverage of [q0.1, q0.9], for the LSTM and every baseline;
                  "won vs ETS" = LSTM MASE < ETS MASE
    summaries:    mean per block (collection: fpp2, fpp3, statsmodels, us_employment, datasets, forecast) and per
                  frequency; the reserved blocks were never trained or selected on
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.families.forecast.engine import ForecastConfig, Forecaster, StepRunner
from service.families.forecast.seasonality import detect_season
from training.baselines_forecast import (
    ETSForecast,
    cached_statistical_forecasts,
    coverage,
    mase,
    seasonal_naive,
    smape,
)
from training.data.series import Series, SeriesSet
from training.forecast.model import QuantileLSTM

BASELINES = ("ets", "arima", "theta")
# Fitted when missing from the cache; ARIMA is read from the cache only (`python -m training.forecast baselines`
# fits it on the test series, `python -m evaluation.forecast --methods ets arima theta` on the reserved ones: 2-300 s
# per series, ~46 minutes for all 285 on one busy core); a block is given an ARIMA mean only when every series of it
# has a fit.
COMPUTED_BASELINES = ("ets", "theta")
BASELINE_CACHE = "forecast-baselines"  # under the cache dir: one JSON-lines file per method


# ---- forecasting with a PyTorch model (validation, evaluation, tests) ----------------------------------------------
def torch_runner(module: torch.nn.Module) -> StepRunner:
    """The step contract over a PyTorch module taking (x, h0, c0) or (x, (h0, c0))."""

    def run(x: np.ndarray, h0: np.ndarray, c0: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with torch.no_grad():
            args = (torch.from_numpy(x), torch.from_numpy(h0), torch.from_numpy(c0))
            if isinstance(module, QuantileLSTM):
                y, (h, c) = module(args[0], (args[1], args[2]))
            else:
                y, h, c = module(*args)
        return y.numpy(), h.numpy(), c.numpy()

    return run


def forecast_many(
    forecaster: Forecaster, histories: list[np.ndarray], horizons: list[int], seasons: list[int]
) -> list[np.ndarray]:
    """Quantile forecasts (H_i, Q) for many series; series with equal (read length, horizon) share a batch."""
    cfg = forecaster.config
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (history, horizon) in enumerate(zip(histories, horizons, strict=True)):
        groups.setdefault((min(len(history), cfg.max_context), horizon), []).append(i)
    out: list[np.ndarray] = [np.empty(0)] * len(histories)
    for (length, horizon), idx in groups.items():
        batch = np.stack([histories[i][-length:] for i in idx])
        result = forecaster.forecast(batch, horizon, np.array([seasons[i] for i in idx]))
        for j, i in enumerate(idx):
            out[i] = result[j]
    return out


def validation_mase(model: torch.nn.Module, series: list[Series], serving: ForecastConfig) -> float:
    model.eval()
    forecaster = Forecaster(serving, torch_runner(model))
    preds = forecast_many(
        forecaster, [s.valid_history for s in series], [s.horizon for s in series], [s.season_length for s in series]
    )
    med = serving.median_index
    scores = [
        mase(s.valid_target, p[:, med], s.valid_history, s.season_length) for s, p in zip(series, preds, strict=True)
    ]
    return float(np.nanmean(scores))


# ---- test horizons ---------------------------------------------------------------------------------------------------
def baseline_forecasts(series: list[Series], cache_dir: Path, methods: tuple[str, ...] = BASELINES,
                       compute: bool = False) -> dict[str, Any]:  # fmt: skip
    """Every statistical baseline on every series' test horizon (cached per series under cache_dir). ETS and Theta
    are fitted when missing; ARIMA too only with `compute` (`python -m training.forecast baselines`)."""
    jobs = [(s.test_history, s.horizon, s.season_length) for s in series]
    return {
        m: cached_statistical_forecasts(
            m, jobs, cache_dir / BASELINE_CACHE / f"{m}.jsonl", compute=compute or m in COMPUTED_BASELINES
        )
        for m in methods
    }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def score_series(
    series: list[Series],
    lstm: list[np.ndarray],
    baselines: dict[str, list[ETSForecast | None]],
    serving: ForecastConfig,
    detected_lstm: list[np.ndarray] | None = None,
) -> list[dict[str, Any]]:
    lo, med, hi = 0, serving.median_index, len(serving.quantiles) - 1
    rows = []
    for i, s in enumerate(series):
        row: dict[str, Any] = {
            "series": s.name,
            "block": s.collection,
            "frequency": s.frequency,
            "season_length": s.season_length,
            "horizon": s.horizon,
        }
        naive = seasonal_naive(s.test_history, s.horizon, s.season_length)
        points = {"lstm": lstm[i][:, med], "naive": naive}
        points |= {m: f[i].mean for m, f in baselines.items() if f[i] is not None}  # type: ignore[union-attr]
        for name in ("lstm", "naive", *baselines):
            fc = points.get(name)
            row[f"{name}_mase"] = (
                None if fc is None else _finite(mase(s.test_target, fc, s.test_history, s.season_length))
            )
            row[f"{name}_smape"] = None if fc is None else smape(s.test_target, fc)
        row["lstm_coverage"] = coverage(s.test_target, lstm[i][:, lo], lstm[i][:, hi])
        for m, f in baselines.items():
            fit = f[i]
            row[f"{m}_coverage"] = None if fit is None else coverage(s.test_target, fit.lower, fit.upper)
            row[f"{m}_model"] = None if fit is None else fit.model
        if detected_lstm is not None:
            row["season_detected"] = detect_season(s.test_history, serving.max_season_length).season_length
            row["lstm_detected_mase"] = _finite(
                mase(s.test_target, detected_lstm[i][:, med], s.test_history, s.season_length)
            )
        rows.append({k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()})
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k in rows[0] if k.endswith(("_mase", "_smape", "_coverage"))]
    out: dict[str, Any] = {"series": len(rows)}
    for key in keys:
        method = key.split("_", 1)[0]
        if f"{method}_model" in rows[0] and any(r[f"{method}_model"] is None for r in rows):
            out[key] = None  # a baseline not fitted on every series of the group is not averaged
            continue
        values = np.array([r[key] for r in rows if r.get(key) is not None], dtype=np.float64)
        values = values[np.isfinite(values)]
        out[key] = round(float(values.mean()), 4) if values.size else None
    if "ets_mase" in rows[0]:
        pairs = [
            (r["lstm_mase"], r["ets_mase"]) for r in rows if r["lstm_mase"] is not None and r["ets_mase"] is not None
        ]
        out["won_vs_ets"] = sum(a < b for a, b in pairs)
        out["compared_vs_ets"] = len(pairs)
    return out


def summaries(rows: list[dict[str, Any]], key: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    return {name: summarise(g) for name, g in sorted(groups.items())}


def forecast_set(
    forecaster: Forecaster, series: list[Series], detect: bool = False
) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """LSTM quantiles on the test horizons with the known seasons (and, with `detect`, with detected ones)."""
    histories, horizons = [s.test_history for s in series], [s.horizon for s in series]
    known = forecast_many(forecaster, histories, horizons, [s.season_length for s in series])
    if not detect:
        return known, None
    cfg = forecaster.config
    seasons = []
    for h in histories:
        found = detect_season(h[-cfg.max_context :], cfg.max_season_length, cfg.season_threshold).season_length
        seasons.append(found if found > 1 else cfg.default_season_length)
    return known, forecast_many(forecaster, histories, horizons, seasons)


def evaluate(
    forecaster: Forecaster,
    data: SeriesSet,
    reserved: SeriesSet | None,
    cache_dir: Path,
    baselines: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics, forecasts for plotting) on the test horizons of `data` and of the reserved series."""
    serving = forecaster.config
    metrics: dict[str, Any] = {
        "split": "test: the last H points of every series (18 monthly, 8 quarterly, 6 yearly, 13 weekly, 14 daily "
        "and other), never used in training or model selection; reserved: R datasets/forecast collections, never "
        "trained or selected on",
    }
    plots: dict[str, Any] = {}
    for name, part in (("test", data), ("reserved", reserved)):
        if part is None:
            continue
        lstm, detected = forecast_set(forecaster, part.series, detect=True)
        base = baseline_forecasts(part.series, cache_dir) if baselines else {}
        rows = score_series(part.series, lstm, base, serving, detected)
        metrics[name] = {
            "all": summarise(rows),
            "by_block": summaries(rows, lambda r: r["block"]),
            "by_frequency": summaries(rows, lambda r: r["frequency"]),
            "mase_undefined": [r["series"] for r in rows if r["naive_mase"] is None],
            "per_series": rows,
        }
        plots[name] = {"lstm": lstm, **base}
    return metrics, plots


def measured_horizon(data: SeriesSet) -> int:
    return max(s.horizon for s in data.series)


# ---- tables and the picture ------------------------------------------------------------------------------------------
def format_table(summary: dict[str, Any]) -> str:
    """Markdown: mean MASE (LSTM and baselines), sMAPE, 80% coverage and series won vs ETS per group."""
    lines = [
        "| group | n | MASE LSTM | naive | ETS | ARIMA | Theta | sMAPE LSTM | sMAPE ETS | 80% cover LSTM | "
        "80% cover ETS | LSTM < ETS |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(v: Any, pct: bool = False) -> str:
        return "–" if v is None else (f"{100 * v:.1f}%" if pct else f"{v:.3f}")

    for name, s in summary.items():
        won = f"{s['won_vs_ets']}/{s['compared_vs_ets']}" if "won_vs_ets" in s else "–"
        lines.append(
            f"| {name} | {s['series']} | {cell(s.get('lstm_mase'))} | {cell(s.get('naive_mase'))} | "
            f"{cell(s.get('ets_mase'))} | {cell(s.get('arima_mase'))} | {cell(s.get('theta_mase'))} | "
            f"{cell(s.get('lstm_smape'))} | {cell(s.get('ets_smape'))} | {cell(s.get('lstm_coverage'), True)} | "
            f"{cell(s.get('ets_coverage'), True)} | {won} |"
        )
    return "\n".join(lines)


def tables(metrics: dict[str, Any]) -> str:
    parts = []
    for name in ("test", "reserved"):
        if name in metrics:
            m = metrics[name]
            parts.append(f"#### {name}: by block\n\n" + format_table({**m["by_block"], "all": m["all"]}))
            parts.append(f"#### {name}: by frequency\n\n" + format_table(m["by_frequency"]))
    return "\n\n".join(parts) + "\n"


def example_series() -> list[tuple[str, np.ndarray, int, int | None]]:
    """(title, history, horizon, season_length or None = detect) of the picture's made-up examples."""
    t = np.arange(200, dtype=np.float64)
    rng = np.random.default_rng(0)
    noise = 0.2 * rng.standard_normal(200)
    trend = 50 * np.exp(t / 90) * (1 + 0.25 * np.sin(2 * np.pi * t / 12)) * (1 + 0.02 * rng.standard_normal(200))
    return [
        ("sin(2πt/20), no season_length given", np.sin(2 * np.pi * t / 20), 120, None),
        ("sin(2πt/17.5) + noise 0.2, no season_length", np.sin(2 * np.pi * t / 17.5) + noise, 120, None),
        ("exponential trend × seasonality (m = 12)", trend, 36, 12),
    ]


def plot_forecasts(
    forecaster: Forecaster, reserved: SeriesSet | None, plots: dict[str, Any], path: Path, names: list[str]
) -> None:
    """Made-up examples (a sine continued without a season length, a trending multiplicative series) and reserved
    series the model never saw, with the LSTM median and 80% band, ETS and seasonal naive."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = forecaster.config
    med, lo, hi = cfg.median_index, 0, len(cfg.quantiles) - 1
    panels: list[dict[str, Any]] = []
    for title, history, horizon, season in example_series():
        m = season or detect_season(history, cfg.max_season_length, cfg.season_threshold).season_length
        q = forecaster.forecast(history[None, :], horizon, m)[0]
        panels.append({"title": f"{title} -> m={m}", "history": history, "truth": None, "q": q, "ets": None,
                       "m": m, "tail": 100})  # fmt: skip
    if reserved is not None and "reserved" in plots:
        index = {s.name: i for i, s in enumerate(reserved.series)}
        for n in names:
            if n in index:
                i = index[n]
                s = reserved.series[i]
                ets = plots["reserved"].get("ets")
                panels.append({"title": f"{s.name} (reserved; {s.frequency}, m={s.season_length})",
                               "history": s.test_history, "truth": s.test_target, "q": plots["reserved"]["lstm"][i],
                               "ets": None if ets is None else ets[i].mean, "m": s.season_length,
                               "tail": 4 * s.horizon})  # fmt: skip
    cols = 2
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(12, 3.2 * rows), dpi=90, squeeze=False)
    for ax, p in zip(axes.flat, panels, strict=False):
        history, q = p["history"], p["q"]
        tail = min(len(history), p["tail"])
        t_hist = np.arange(len(history) - tail, len(history))
        t_future = np.arange(len(history), len(history) + len(q))
        ax.plot(t_hist, history[-tail:], color="black", lw=1, label="history")
        if p["truth"] is not None:
            ax.plot(t_future, p["truth"], color="black", lw=1, ls=":", label="truth (held out)")
        ax.fill_between(t_future, q[:, lo], q[:, hi], color="tab:blue", alpha=0.25,
                        label=f"LSTM {cfg.quantiles[lo]:g}–{cfg.quantiles[hi]:g}")  # fmt: skip
        ax.plot(t_future, q[:, med], color="tab:blue", lw=1.5, label="LSTM median")
        if p["ets"] is not None:
            ax.plot(t_future, p["ets"], color="tab:orange", lw=1, label="ETS")
        ax.plot(t_future, seasonal_naive(history, len(q), p["m"]), color="grey", lw=1, ls="--",
                label="seasonal naive")  # fmt: skip
        ax.set_title(p["title"], fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    axes.flat[-1 if len(panels) > 3 else 0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
