"""Training: a tiny model trained in seconds on noisy seasonal series beats seasonal naive on held-out ones; the
loss ignores windows whose horizon leaves the context's range."""

from __future__ import annotations

import numpy as np

from service.families.forecast.engine import Forecaster
from tests.torch_threads import one_torch_thread
from training.baselines_forecast import mase, seasonal_naive
from training.data.series import Series, default_horizon, seasonal_trend
from training.forecast.config import TrainConfig
from training.forecast.evaluate import forecast_many, torch_runner
from training.forecast.train import train_member
from training.forecast.windows import WindowSampler


def noisy_seasonal(count: int, seed: int, length: int = 120) -> list[Series]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        m = (12, 4, 7)[i % 3]
        values = seasonal_trend(length, m, rng, noise=0.08) * 10.0 ** rng.uniform(-2, 4)
        out.append(Series(f"noisy/{i}", values, m, default_horizon(m), "synthetic"))
    return out


def test_a_tiny_model_beats_seasonal_naive_on_held_out_synthetic_series() -> None:
    cfg = TrainConfig(members=1, steps=150, batch_size=32, hidden=16, max_context=60, max_horizon=18, warmup=10,
                      grad_context=24, eval_every=150, synthetic_series=0, synthetic_share=1.0, baselines=False,
                      lr=1e-2)  # fmt: skip
    with one_torch_thread():
        model, _ = train_member([], noisy_seasonal(30, seed=0), cfg, seed=0)
        held_out = noisy_seasonal(12, seed=1)
        forecaster = Forecaster(cfg.serving(cfg.hidden), torch_runner(model))
        preds = forecast_many(forecaster, [s.test_history for s in held_out], [s.horizon for s in held_out],
                              [s.season_length for s in held_out])  # fmt: skip
    lstm, naive = [], []
    for s, p in zip(held_out, preds, strict=True):
        lstm.append(mase(s.test_target, p[:, 1], s.test_history, s.season_length))
        repeat = seasonal_naive(s.test_history, s.horizon, s.season_length)
        naive.append(mase(s.test_target, repeat, s.test_history, s.season_length))
    assert np.mean(lstm) < np.mean(naive), (np.mean(lstm), np.mean(naive))


def test_windows_that_leave_the_context_range_carry_no_loss() -> None:
    cfg = TrainConfig(batch_size=4, max_context=20, max_horizon=6, synthetic_series=0)
    sampler = WindowSampler([], noisy_seasonal(3, seed=2), cfg, seed=0)
    context = np.zeros(20)
    demand = np.r_[np.zeros(5), 1e4]  # an all-zero context, then a demand: z = 1e4
    calm = np.sin(np.arange(26.0)) + 5
    batch = sampler.collate([(context, demand, 1), (calm[:20], calm[20:], 1)])
    assert batch.weights[0] == 0 and batch.weights[1] > 0
