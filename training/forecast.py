"""Global LSTM forecaster with quantiles: data -> train -> evaluate -> export.

    python -m training.forecast train  [--data FILE.csv] [--steps N] ... --checkpoint runs/forecast.pt
    python -m training.forecast export --checkpoint runs/forecast.pt [--models-dir models]
    python -m training.forecast all    [train options]            # what `make models-forecast` runs

One model for every series (a "global" model). A training window is cut from a random point of a random series,
standardised with the same rule the service uses (z = (y - mean) / std of the window's context), then:

    context z[0..C-1]  ──prefill (teacher forcing)──►  quantiles of z[1..C-1] and of the first horizon step
    horizon step k>1   ◄──the median of step k-1 fed back as input (flagged horizon_step = k / max_horizon)

and the pinball loss of the 0.1/0.5/0.9 quantiles is taken at every context position and every horizon step, each
window weighted by 1 / (its in-sample seasonal naive error), so the loss tracks MASE. Rolling the horizon out during
training (instead of only one-step-ahead teacher forcing) is what makes the intervals widen with the horizon.

The features and the scaling come from service/families/forecast/engine.py (one implementation, shared with serving).
Several members trained with different seeds form an ensemble whose quantiles are averaged; it is exported as one
ONNX step model. Model selection (best validation step per member) uses only the validation horizon: the H points
before each series' held-out test horizon; the test horizon is scored once, at export, against seasonal naive and
ETS.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from service.families.forecast.engine import ForecastConfig, Forecaster, Scaling, StepRunner, input_features
from training.baselines_forecast import (
    coverage,
    ets_forecasts,
    mase,
    mase_scale,
    seasonal_naive,
    smape,
)
from training.data.series import Series, SeriesSet, load_series, synthetic_series
from training.kit.export import DataSpec, check_parity, export_onnx, graph_spec
from training.kit.export import publish_built as publish_version
from training.models import ForecastEnsemble, ForecasterConfig, QuantileLSTM

log = logging.getLogger("training.forecast")

FAMILY = "forecast"
PARITY_ATOL = 1e-4
FEATURES = ("value", "seasonal_lag", "season_sin", "season_cos", "log_season", "horizon_step")
ETS_CACHE_VERSION = 2  # bump when training/baselines_forecast.py's ETS changes


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
    max_horizon: int = 48
    max_season_length: int = 52
    default_season_length: int = 1
    constant_tolerance: float = 1e-6
    full_context_share: float = 0.5  # windows whose context is as long as possible (what a long history gets)
    synthetic_series: int = 400
    synthetic_share: float = 0.2  # share of batches cut from synthetic series
    frequency_balance: float = 1.0  # P(frequency group) ∝ its series count ** this (1: every series alike)
    grad_context: int = 48  # context steps that carry gradients (the earlier ones only build the state)
    context_loss_weight: float = 0.5  # one-step-ahead loss inside the context, relative to the horizon loss
    mase_floor: float = 0.05  # window weight = 1 / max(seasonal naive MAE in standardized units, floor)
    eval_every: int = 250
    max_minutes: float = 0.0  # per member (0 = no limit)
    ets: bool = True  # fit the ETS baseline at export (slow: minutes on the default data)
    workers: int = 1  # processes for ETS (one is fastest on 2 cores: the fits are short and use BLAS threads)

    def serving(self, state_hidden: int) -> ForecastConfig:
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
            scaling="standardize",
            constant_tolerance=self.constant_tolerance,
        )


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---- windows -------------------------------------------------------------------------------------------------------
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


class WindowSampler:
    """Random training windows. Real series only give windows that end before their validation horizon.

    A batch takes its horizon R and context length C from one random anchor series (its own horizon; C the longest
    it allows, or a random shorter one), then fills up with windows of every series of that horizon that is long
    enough — so short series get batches of short contexts and long series are read at every length.
    """

    def __init__(self, real: list[Series], synthetic: list[Series], cfg: TrainConfig, seed: int) -> None:
        self.cfg = cfg
        self.serving = cfg.serving(cfg.hidden)
        self.rng = np.random.default_rng(seed)
        self.real = [s for s in real if len(s.train) >= cfg.min_history + s.horizon]
        self.synthetic = [s for s in synthetic if len(s.values) >= cfg.min_history + cfg.max_horizon]
        if not self.real and not self.synthetic:
            raise ValueError(f"no series is long enough for training (min_history {cfg.min_history} + horizon)")
        # Real series grouped by horizon (= frequency); a group is drawn with probability ∝ count ** balance.
        by_horizon: dict[int, list[Series]] = {}
        for s in self.real:
            by_horizon.setdefault(s.horizon, []).append(s)
        self.groups = list(by_horizon.values())
        weights = np.array([len(g) for g in self.groups], dtype=np.float64) ** cfg.frequency_balance
        self.group_weights = weights / weights.sum() if len(weights) else weights

    def sample(self) -> Batch:
        cfg, rng = self.cfg, self.rng
        if self.synthetic and (not self.real or rng.random() < cfg.synthetic_share):
            horizon = int(rng.integers(6, cfg.max_horizon + 1))
            pool = [(s.values, s.season_length) for s in self.synthetic]
            anchor = pool[int(rng.integers(len(pool)))][0]
        else:
            group = self.groups[int(rng.choice(len(self.groups), p=self.group_weights))]
            anchor_series = group[int(rng.integers(len(group)))]
            horizon = anchor_series.horizon  # real windows roll out exactly their evaluation horizon
            pool = [(s.train, s.season_length) for s in group]
            anchor = anchor_series.train
        longest = min(len(anchor) - horizon, cfg.max_context)
        context = longest if rng.random() < cfg.full_context_share else int(rng.integers(cfg.min_history, longest + 1))
        pool = [(y, m) for y, m in pool if len(y) >= context + horizon]
        rows = []
        for i in rng.integers(len(pool), size=cfg.batch_size):
            y, m = pool[int(i)]
            end = int(rng.integers(context, len(y) - horizon + 1))  # context y[end-C..end), horizon y[end..end+R)
            rows.append((y[end - context : end], y[end : end + horizon], m))
        return self._collate(rows)

    def _collate(self, rows: list[tuple[np.ndarray, np.ndarray, int]]) -> Batch:
        cfg = self.cfg
        window = cfg.max_season_length
        contexts = np.stack([r[0] for r in rows])  # (B, C)
        horizons = np.stack([r[1] for r in rows])  # (B, R)
        seasons = np.array([r[2] for r in rows], dtype=np.int64)
        batch, context = contexts.shape
        scaling = Scaling.fit(contexts, cfg.constant_tolerance)
        z, z_target = scaling.normalize(contexts), scaling.normalize(horizons)
        empty = np.full((batch, window), np.nan)
        x = input_features(empty, z, np.zeros(batch, np.int64), seasons, 0, self.serving)
        recent = np.concatenate([empty, z], axis=1)[:, -window:]
        weights = np.array(
            [1.0 / max(_nan_to(mase_scale(z[b], int(seasons[b])), 1.0), cfg.mase_floor) for b in range(batch)],
            dtype=np.float32,
        )
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


def pinball(pred: Tensor, target: Tensor, quantiles: Tensor) -> Tensor:
    """pred (..., Q), target (...) -> loss (..., Q)."""
    diff = target.unsqueeze(-1) - pred
    return torch.maximum(quantiles * diff, (quantiles - 1) * diff)


def batch_loss(model: QuantileLSTM, batch: Batch, cfg: TrainConfig, serving: ForecastConfig) -> Tensor:
    """Prefill the contexts (truncated BPTT: only the last `grad_context` steps carry gradients), then roll out."""
    quantiles = torch.tensor(cfg.quantiles)
    med = model.median_index
    split = max(0, batch.x.size(1) - cfg.grad_context)
    state = model.init_state(batch.x.size(0))
    if split:
        with torch.no_grad():
            _, state = model.lstm(batch.x[:, :split], state)
    x_grad = batch.x[:, split:]
    out, (h, c) = model.lstm(x_grad, state)
    q_context = model.quantiles(x_grad, out)  # (B, C - split, Q)
    steps = [q_context[:, -1]]  # (B, Q): forecast of the first horizon value
    recent, position = batch.recent, batch.position
    for k in range(1, batch.targets.size(1)):
        z_in = steps[-1][:, med : med + 1].detach().double().numpy()  # (B, 1) fed-back median
        x = torch.from_numpy(input_features(recent, z_in, position, batch.season_length, k, serving))
        recent = np.concatenate([recent, z_in], axis=1)[:, 1:]
        position = position + 1
        y, (h, c) = model(x, (h, c))
        steps.append(y[:, 0])
    q_horizon = torch.stack(steps, dim=1)  # (B, R, Q)
    horizon_loss = pinball(q_horizon, batch.targets, quantiles).mean(dim=(1, 2))  # (B,)
    context_loss = pinball(q_context[:, :-1], batch.context_targets[:, split:-1], quantiles).mean(dim=(1, 2))
    if q_context.size(1) == 1:
        context_loss = torch.zeros_like(horizon_loss)
    return ((horizon_loss + cfg.context_loss_weight * context_loss) * batch.weights).mean()


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


def validation_mase(model: QuantileLSTM, series: list[Series], serving: ForecastConfig) -> float:
    model.eval()
    forecaster = Forecaster(serving, torch_runner(model))
    preds = forecast_many(
        forecaster, [s.valid_history for s in series], [s.horizon for s in series], [s.season_length for s in series]
    )
    med = serving.median_index
    scores = [
        mase(s.valid_target, p[:, med], s.valid_history, s.season_length) for s, p in zip(series, preds, strict=True)
    ]
    model.train()
    return float(np.nanmean(scores))


# ---- training --------------------------------------------------------------------------------------------------
def model_config(cfg: TrainConfig) -> ForecasterConfig:
    return ForecasterConfig(
        features=len(FEATURES),
        hidden=cfg.hidden,
        layers=cfg.layers,
        quantiles=tuple(cfg.quantiles),
        dropout=cfg.dropout,
        skip_feature=FEATURES.index("seasonal_lag"),
    )


def train_member(
    real: list[Series], synthetic: list[Series], cfg: TrainConfig, seed: int
) -> tuple[dict[str, Tensor], list[dict[str, float]]]:
    set_seed(seed)
    model = QuantileLSTM(model_config(cfg))
    serving = cfg.serving(cfg.hidden)
    sampler = WindowSampler(real, synthetic, cfg, seed)
    valid = [s for s in real if len(s.valid_history) >= cfg.min_history]
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr_final + 0.5 * (cfg.lr - cfg.lr_final) * (1 + math.cos(math.pi * min(progress, 1.0)))

    best, best_state, history = math.inf, None, []
    started, running = time.monotonic(), 0.0
    bar = tqdm(range(cfg.steps), desc=f"member seed {seed}", unit="batch", leave=False, file=sys.stderr)
    model.train()
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        loss = batch_loss(model, sampler.sample(), cfg, serving)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        optimizer.step()
        running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
        if step % 10 == 0:
            bar.set_postfix(loss=f"{running:.4f}", lr=f"{lr_at(step):.2g}")
        last = step == cfg.steps - 1
        out_of_time = bool(cfg.max_minutes) and (time.monotonic() - started) / 60 >= cfg.max_minutes
        if (step + 1) % cfg.eval_every == 0 or last or out_of_time:
            # Without validation series (or when MASE is undefined for all), the smoothed training loss decides.
            score = validation_mase(model, valid, serving) if valid else math.nan
            score = running if math.isnan(score) else score
            improved = score < best
            history.append(
                {
                    "step": step + 1,
                    "train_loss": running,
                    "valid_mase": score,
                    "minutes": (time.monotonic() - started) / 60,
                }
            )
            log.info(
                "seed %d | step %5d | loss %.4f | valid MASE %.4f%s | %.1f min",
                seed,
                step + 1,
                running,
                score,
                " (best)" if improved else "",
                history[-1]["minutes"],
            )
            if improved:
                best, best_state = score, {k: v.detach().clone() for k, v in model.state_dict().items()}
        if out_of_time:
            log.info("time budget of %g minutes reached", cfg.max_minutes)
            break
    bar.close()
    assert best_state is not None
    return best_state, history


def train(data: SeriesSet, cfg: TrainConfig, checkpoint: Path) -> dict[str, Any]:
    """Train every ensemble member; save a self-describing checkpoint."""
    started = time.monotonic()
    synthetic = synthetic_series(cfg.synthetic_series, cfg.seed + 10_000) if cfg.synthetic_series else []
    log.info(
        "data: %d real series %s + %d synthetic | %s",
        len(data.series),
        data.by_frequency(),
        len(synthetic),
        data.source,
    )
    members = []
    for i in range(cfg.members):
        state, history = train_member(data.series, synthetic, cfg, cfg.seed + i)
        members.append({"seed": cfg.seed + i, "state_dict": state, "history": history})
    n_params = sum(v.numel() for v in members[0]["state_dict"].values()) * cfg.members
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "family": FAMILY,
            "model_config": model_config(cfg).to_dict(),
            "train_config": _jsonable(asdict(cfg)),
            "members": members,
            "data": {"source": data.source, "sha256": data.sha256, "summary": data.summary()},
            "synthetic": {"count": len(synthetic), "seed": cfg.seed + 10_000},
            "minutes": (time.monotonic() - started) / 60,
            "parameters": n_params,
        },
        checkpoint,
    )
    log.info("trained %d members in %.1f min -> %s", cfg.members, (time.monotonic() - started) / 60, checkpoint)
    return {"minutes": (time.monotonic() - started) / 60}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=list))


def load_checkpoint(path: Path) -> tuple[ForecastEnsemble, TrainConfig, dict[str, Any]]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    config = dict(ckpt["model_config"])
    config["quantiles"] = tuple(config["quantiles"])
    members = []
    for member in ckpt["members"]:
        model = QuantileLSTM(ForecasterConfig(**config))
        model.load_state_dict(member["state_dict"])
        members.append(model.eval())
    train_cfg = dict(ckpt["train_config"])
    train_cfg["quantiles"] = tuple(train_cfg["quantiles"])
    return ForecastEnsemble(members).eval(), TrainConfig(**train_cfg), ckpt


# ---- evaluation ------------------------------------------------------------------------------------------------
def ets_baseline(series: list[Series], data_sha: str, workers: int, cache_dir: Path) -> list[dict[str, Any]]:
    """ETS forecasts of every test horizon, cached under data/ by the series' hash (fitting takes minutes)."""
    cache = cache_dir / f"forecast-ets-v{ETS_CACHE_VERSION}-{data_sha[:16]}.json"
    if cache.is_file():
        log.info("ETS baseline from cache %s", cache)
        cached: list[dict[str, Any]] = json.loads(cache.read_text())
        return cached
    log.info("fitting ETS on %d series (%d processes)", len(series), workers)
    fits = ets_forecasts([(s.test_history, s.horizon, s.season_length) for s in series], workers)
    rows = [
        {"mean": f.mean.tolist(), "lower": f.lower.tolist(), "upper": f.upper.tolist(), "model": f.model} for f in fits
    ]
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(rows))
    return rows


def _summarise(rows: list[dict[str, Any]], keys: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"series": len(rows)}
    for key in keys:
        values = np.array([r[key] for r in rows if r.get(key) is not None], dtype=np.float64)
        values = values[np.isfinite(values)]
        out[key] = round(float(values.mean()), 4) if values.size else None
    return out


def evaluate_test(
    ensemble: ForecastEnsemble, data: SeriesSet, cfg: TrainConfig, cache_dir: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-series and mean MASE / sMAPE / 80% coverage on the held-out test horizons. Returns (metrics, forecasts
    for plotting)."""
    serving = cfg.serving(ensemble.state_hidden)
    forecaster = Forecaster(serving, torch_runner(ensemble))
    series = data.series
    lstm = forecast_many(
        forecaster, [s.test_history for s in series], [s.horizon for s in series], [s.season_length for s in series]
    )
    ets = ets_baseline(series, data.sha256, cfg.workers, cache_dir) if cfg.ets else None
    lo, med, hi = 0, serving.median_index, len(serving.quantiles) - 1
    rows = []
    for i, s in enumerate(series):
        naive = seasonal_naive(s.test_history, s.horizon, s.season_length)
        row: dict[str, Any] = {
            "series": s.name,
            "frequency": s.frequency,
            "season_length": s.season_length,
            "horizon": s.horizon,
        }
        for name, fc in (("lstm", lstm[i][:, med]), ("naive", naive)):
            row[f"{name}_mase"] = _finite(mase(s.test_target, fc, s.test_history, s.season_length))
            row[f"{name}_smape"] = smape(s.test_target, fc)
        row["lstm_coverage"] = coverage(s.test_target, lstm[i][:, lo], lstm[i][:, hi])
        if ets is not None:
            e = ets[i]
            row["ets_model"] = e["model"]
            row["ets_mase"] = _finite(mase(s.test_target, np.array(e["mean"]), s.test_history, s.season_length))
            row["ets_smape"] = smape(s.test_target, np.array(e["mean"]))
            row["ets_coverage"] = coverage(s.test_target, np.array(e["lower"]), np.array(e["upper"]))
        rows.append({k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()})
    keys = [k for k in rows[0] if k.endswith(("_mase", "_smape", "_coverage"))]
    frequencies = sorted({r["frequency"] for r in rows})
    summary = {
        "all": _summarise(rows, keys),
        **{f: _summarise([r for r in rows if r["frequency"] == f], keys) for f in frequencies},
    }
    undefined = [r["series"] for r in rows if r["naive_mase"] is None]
    metrics = {
        "split": "test: the last H points of every series (its horizon: 18 monthly, 8 quarterly, 6 yearly), never "
        "used in training or model selection",
        "summary": summary,
        "mase_undefined": undefined,
        "per_series": rows,
    }
    plots = {"lstm": lstm, "ets": ets}
    return metrics, plots


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def format_table(summary: dict[str, Any]) -> str:
    """Markdown table of mean MASE / sMAPE / coverage per frequency and overall."""
    lines = [
        "| series | n | MASE LSTM | MASE naive | MASE ETS | sMAPE LSTM | sMAPE naive | sMAPE ETS | "
        "80% cover LSTM | 80% cover ETS |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(v: Any, pct: bool = False) -> str:
        return "–" if v is None else (f"{100 * v:.1f}%" if pct else f"{v:.3f}")

    for name, s in summary.items():
        lines.append(
            f"| {name} | {s['series']} | {cell(s.get('lstm_mase'))} | {cell(s.get('naive_mase'))} | "
            f"{cell(s.get('ets_mase'))} | {cell(s.get('lstm_smape'))} | {cell(s.get('naive_smape'))} | "
            f"{cell(s.get('ets_smape'))} | {cell(s.get('lstm_coverage'), True)} | "
            f"{cell(s.get('ets_coverage'), True)} |"
        )
    return "\n".join(lines)


def plot_forecasts(
    data: SeriesSet, plots: dict[str, Any], path: Path, quantiles: tuple[float, ...], names: list[str] | None = None
) -> None:
    """A grid of test-horizon forecasts: history tail, truth, LSTM median and 80% band, ETS and seasonal naive."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    index = {s.name: i for i, s in enumerate(data.series)}
    if names is None:
        names = []
        for freq in ("monthly", "quarterly", "yearly"):
            names += [s.name for s in data.series if s.frequency == freq][:2]
        names = names or [s.name for s in data.series[:6]]
    chosen = [index[n] for n in names if n in index][:6]
    cols = 2
    rows = math.ceil(len(chosen) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(12, 3.2 * rows), dpi=90, squeeze=False)
    med, lo, hi = quantiles.index(0.5), 0, len(quantiles) - 1
    for ax, i in zip(axes.flat, chosen, strict=False):
        s = data.series[i]
        tail = min(len(s.test_history), 4 * s.horizon)
        t_hist = np.arange(len(s.test_history) - tail, len(s.test_history))
        t_future = np.arange(len(s.test_history), len(s.values))
        q = plots["lstm"][i]
        ax.plot(t_hist, s.test_history[-tail:], color="black", lw=1, label="history")
        ax.plot(t_future, s.test_target, color="black", lw=1, ls=":", label="truth (held out)")
        ax.fill_between(
            t_future,
            q[:, lo],
            q[:, hi],
            color="tab:blue",
            alpha=0.25,
            label=f"LSTM {quantiles[lo]:g}–{quantiles[hi]:g}",
        )
        ax.plot(t_future, q[:, med], color="tab:blue", lw=1.5, label="LSTM median")
        if plots["ets"] is not None:
            ax.plot(t_future, plots["ets"][i]["mean"], color="tab:orange", lw=1, label="ETS")
        ax.plot(
            t_future,
            seasonal_naive(s.test_history, s.horizon, s.season_length),
            color="grey",
            lw=1,
            ls="--",
            label="seasonal naive",
        )
        ax.set_title(f"{s.name} ({s.frequency}, m={s.season_length})", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(chosen) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ---- export ----------------------------------------------------------------------------------------------------
def parity_cases(ensemble: ForecastEnsemble, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Batch 1 and 5, sequence 1 and 37, with non-zero incoming state."""
    rng = np.random.default_rng(seed)
    cases = []
    for batch in (1, 5):
        for seq in (1, 37):
            state = (ensemble.layers, batch, ensemble.state_hidden)
            cases.append(
                {
                    "x": rng.standard_normal((batch, seq, len(FEATURES))).astype(np.float32),
                    "h0": (rng.standard_normal(state) * 0.5).astype(np.float32),
                    "c0": (rng.standard_normal(state) * 0.5).astype(np.float32),
                }
            )
    return cases


def export(
    checkpoint: Path,
    models_dir: Path,
    data: SeriesSet,
    version: int | None = None,
    cache_dir: Path = Path("data"),
    docs_dir: Path | None = None,
) -> Path:
    """Evaluate on the test horizons, export the ensemble to ONNX, check parity, publish the version."""
    ensemble, cfg, ckpt = load_checkpoint(checkpoint)
    if data.sha256 != ckpt["data"]["sha256"]:
        raise ValueError("the series differ from the ones this checkpoint was trained on")
    serving = cfg.serving(ensemble.state_hidden)
    started = time.monotonic()
    metrics, plots = evaluate_test(ensemble, data, cfg, cache_dir)
    log.info("test horizons (%.1f s):\n%s", time.monotonic() - started, format_table(metrics["summary"]))

    def build(out: Path) -> dict[str, Any]:
        onnx_path = out / "model.onnx"
        cases = parity_cases(ensemble)
        export_onnx(
            ensemble,
            tuple(torch.from_numpy(v) for v in cases[-1].values()),
            onnx_path,
            ["x", "h0", "c0"],
            ["y", "hn", "cn"],
            {
                "x": {0: "batch", 1: "seq"},
                "h0": {1: "batch"},
                "c0": {1: "batch"},
                "y": {0: "batch", 1: "seq"},
                "hn": {1: "batch"},
                "cn": {1: "batch"},
            },
        )
        max_diff = check_parity(ensemble, onnx_path, cases, PARITY_ATOL)
        plot_forecasts(data, plots, out / "forecasts.png", serving.quantiles)
        if docs_dir is not None:
            docs_dir.mkdir(parents=True, exist_ok=True)
            plot_forecasts(data, plots, docs_dir / "forecast_examples.png", serving.quantiles)
            (docs_dir / "forecast_table.md").write_text(format_table(metrics["summary"]) + "\n")
        members = ckpt["members"]
        summary = metrics["summary"]["all"]
        model_metrics = {k.removeprefix("lstm_"): v for k, v in summary.items() if k.startswith("lstm_")}
        return {
            "name": f"forecast-lstm-{len(members)}x{cfg.layers}x{cfg.hidden}",
            "description": "Global LSTM forecaster with 0.1/0.5/0.9 quantiles (step model: prefill a standardized "
            "history, then roll the horizon out one step per call feeding back the median).",
            "graphs": {"step": graph_spec(onnx_path)},
            "config": {
                **serving.to_manifest(),
                "model": {**ckpt["model_config"], "members": len(members), "combine": "mean of members' quantiles"},
            },
            "data": DataSpec(
                source=ckpt["data"]["source"],
                sha256=ckpt["data"]["sha256"],
                splits={
                    **ckpt["data"]["summary"],
                    "method": "per series: test = last H points, validation = the H before (model selection), "
                    "train = the rest; H = the series' horizon (18 monthly, 8 quarterly, 6 yearly)",
                    "synthetic": {**ckpt["synthetic"], "use": "training only (augmentation), never scored"},
                },
            ),
            "training": {
                **ckpt["train_config"],
                "parameters": ckpt["parameters"],
                "minutes": round(ckpt["minutes"], 2),
                "members": [{"seed": m["seed"], "history": m["history"]} for m in members],
                "command": "python -m training.forecast all",
            },
            "metrics": {
                "model": {**model_metrics, "series": summary["series"], "onnx_parity_max_abs_diff": max_diff},
                "baselines": {
                    "seasonal_naive": {
                        k.removeprefix("naive_"): v for k, v in summary.items() if k.startswith("naive_")
                    },
                    **(
                        {"ets": {k.removeprefix("ets_"): v for k, v in summary.items() if k.startswith("ets_")}}
                        if cfg.ets
                        else {}
                    ),
                },
                "test": metrics,
            },
        }

    return publish_version(models_dir, FAMILY, build, version)


# ---- CLI ---------------------------------------------------------------------------------------------------------
_INT_ARGS = (
    "seed",
    "members",
    "steps",
    "batch_size",
    "hidden",
    "layers",
    "max_context",
    "max_horizon",
    "synthetic_series",
    "eval_every",
    "workers",
)
_FLOAT_ARGS = (
    "lr",
    "dropout",
    "synthetic_share",
    "frequency_balance",
    "context_loss_weight",
    "mase_floor",
    "max_minutes",
)


def _add_train_args(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    for name in _INT_ARGS:
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(d, name))
    for name in _FLOAT_ARGS:
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(d, name))
    p.add_argument("--no-ets", action="store_true", help="skip the ETS baseline at export")


def _train_config(args: argparse.Namespace) -> TrainConfig:
    fields: dict[str, Any] = {k: getattr(args, k) for k in (*_INT_ARGS, *_FLOAT_ARGS)}
    return TrainConfig(**fields, ets=not args.no_ets)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m training.forecast", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train the ensemble and save a checkpoint")
    p_export = sub.add_parser("export", help="evaluate a checkpoint on the test horizons and publish it")
    p_all = sub.add_parser("all", help="train, then export")
    for p in (p_train, p_all):
        _add_train_args(p)
    for p in (p_train, p_export, p_all):
        p.add_argument(
            "--data",
            type=Path,
            help="CSV of series (series_id,value[,season_length][,horizon]) "
            "instead of the default fpp2/fpp3/statsmodels series",
        )
        p.add_argument("--checkpoint", type=Path, default=Path("runs/forecast.pt"))
    for p in (p_export, p_all):
        p.add_argument("--models-dir", type=Path, default=Path("models"))
        p.add_argument("--version", type=int, help="version number (default: next free)")
        p.add_argument("--cache-dir", type=Path, default=Path("data"), help="cache of the ETS baseline")
        p.add_argument("--docs-dir", type=Path, help="also write the plot and table here (e.g. docs)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)  # LSTM steps are small: more threads only add contention

    data = load_series(args.data)
    if args.command == "all":
        cfg = _train_config(args)
        # The ETS baseline needs only the data: fit it in a second process while this one trains (1 thread each).
        with ProcessPoolExecutor(max_workers=1) as background:
            ets = background.submit(ets_baseline, data.series, data.sha256, 1, args.cache_dir) if cfg.ets else None
            train(data, cfg, args.checkpoint)
            if ets is not None:
                ets.result()
    elif args.command == "train":
        train(data, _train_config(args), args.checkpoint)
    if args.command in ("export", "all"):
        print(export(args.checkpoint, args.models_dir, data, args.version, args.cache_dir, args.docs_dir))


if __name__ == "__main__":
    main()
