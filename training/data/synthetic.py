"""Synthetic training series with breadth: what users send that the real collections under-represent.

Each generator draws one series (float64, no missing values) and the facts a test can check about it; a seeded mix
draws from all of them. The mix and its weights go into the manifest (`MIX`, `mix_manifest`).

    kernel_synth    Gaussian-process sample whose kernel is a random composition (+ and ×) of 1-3 kernels from a
                    bank: periodic (any period, non-integer too), linear, RBF, rational quadratic, white noise
                    (KernelSynth, Ansari et al. 2024, Chronos)
    ets             ETS(A|M, N|A|Ad, N|A|M) simulated with random smoothing parameters and initial states
    arima           ARIMA(p, d, q) with p, q <= 2, d <= 1, stationary/invertible random coefficients, optional
                    seasonal differencing
    seasonal        level × trend (none, linear, exponential, damped) with additive or multiplicative seasonality of
                    any period, 1-2 seasonalities at once, optional level shifts and outliers
    intermittent    Bernoulli demand occurrence × gamma sizes (many zeros)
    counts          Poisson counts around a (seasonal, trending) rate

Every series is finally multiplied by 10^U(-3, 6) (magnitudes 1e-3 .. 1e6; the sign is kept). The season length a
series claims is the period rounded (or its multiple that is nearly an integer) when it has one within
`max_season`, else 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from training.data.series import Series, default_horizon

# generator -> share of series
MIX: dict[str, float] = {
    "kernel_synth": 0.25,
    "ets": 0.15,
    "arima": 0.10,
    "seasonal": 0.30,
    "intermittent": 0.08,
    "counts": 0.12,
}
MAGNITUDE_RANGE = (-3.0, 6.0)  # log10 of the factor every series is multiplied by
TYPICAL_PERIODS = (4.0, 7.0, 12.0, 24.0, 52.0)  # drawn half of the time; otherwise any period in 2.5 .. 52


@dataclass
class Draw:
    values: np.ndarray
    period: float = 0.0  # the main period (0: none)
    facts: dict[str, Any] = field(default_factory=dict)


def _period(rng: np.random.Generator, n: int) -> float:
    period = float(rng.choice(TYPICAL_PERIODS)) if rng.random() < 0.5 else float(rng.uniform(2.5, 52.0))
    return min(period, n / 3)


def season_length_of(period: float, max_season: int) -> int:
    """The integer season a model is told: the period rounded when it is nearly whole, else a multiple that is."""
    if period < 2:
        return 1
    for k in (1, 2, 3, 4):
        multiple = k * period
        if abs(multiple - round(multiple)) <= 0.05 * k and round(multiple) <= max_season:
            return round(multiple)
    return round(period) if round(period) <= max_season else 1


# ---- KernelSynth ---------------------------------------------------------------------------------------------------
def _kernel_bank(rng: np.random.Generator, n: int) -> list[tuple[str, Callable[[np.ndarray], np.ndarray], float]]:
    """(name, k(|t - s| matrix or t grid), period) candidates; distances are in points."""
    period = _period(rng, n)
    length = float(rng.choice([0.05, 0.1, 0.3, 1.0])) * n
    alpha = float(rng.uniform(0.1, 2.0))
    slope = float(rng.uniform(0.1, 1.0))
    width = float(rng.uniform(0.3, 2.0))
    return [
        ("periodic", lambda d: np.exp(-2 * np.sin(np.pi * d / period) ** 2 / width), period),
        ("rbf", lambda d: np.exp(-0.5 * (d / length) ** 2), 0.0),
        ("rational_quadratic", lambda d: (1 + d**2 / (2 * alpha * length**2)) ** -alpha, 0.0),
        ("linear", lambda _d: slope * np.outer(np.linspace(0, 1, n), np.linspace(0, 1, n)) + 0.1, 0.0),
        ("white", lambda d: (d == 0) * float(rng.uniform(0.01, 0.1)), 0.0),
    ]


def kernel_synth(n: int, rng: np.random.Generator) -> Draw:
    t = np.arange(n, dtype=np.float64)
    d = np.abs(t[:, None] - t[None, :])
    bank = _kernel_bank(rng, n)
    picks = rng.choice(len(bank), size=int(rng.integers(1, 4)), replace=True)
    if not any(bank[i][0] == "periodic" for i in picks) and rng.random() < 0.5:
        picks = np.r_[0, picks]  # half the compositions without a periodic kernel get one
    names, kernel, period = [bank[int(picks[0])][0]], bank[int(picks[0])][1](d), bank[int(picks[0])][2]
    for i in picks[1:]:
        name, k, p = bank[int(i)]
        op = "+" if rng.random() < 0.6 else "*"
        kernel = kernel + k(d) if op == "+" else kernel * k(d)
        names.append(f"{op} {name}")
        period = period or p
    kernel = kernel + 1e-6 * np.eye(n)
    chol = np.linalg.cholesky(kernel + 1e-4 * np.trace(kernel) / n * np.eye(n))
    values = 10.0 + chol @ rng.standard_normal(n)
    return Draw(values, period, {"kernel": " ".join(names)})


# ---- ETS and ARIMA -------------------------------------------------------------------------------------------
def ets(n: int, rng: np.random.Generator) -> Draw:
    error = "mul" if rng.random() < 0.5 else "add"
    trend = str(rng.choice(["none", "add", "damped"]))
    season = str(rng.choice(["none", "add", "mul"]))
    m = int(rng.choice([4, 7, 12, 24])) if season != "none" else 1
    alpha, beta, gamma = rng.uniform(0.05, 0.6), rng.uniform(0.01, 0.2), rng.uniform(0.01, 0.3)
    phi = rng.uniform(0.85, 0.98) if trend == "damped" else 1.0
    level, slope = 100.0, rng.normal(0, 0.5) if trend != "none" else 0.0
    shape = rng.normal(0, 1, m)
    shape -= shape.mean()
    amplitude = rng.uniform(0.05, 0.4)
    seasonal = list(amplitude * shape * (level if season == "add" else 1.0) + (1.0 if season == "mul" else 0.0))
    sigma = rng.uniform(0.01, 0.08)
    out = np.empty(n)
    for i in range(n):
        s = seasonal[i % m] if season != "none" else (1.0 if season == "mul" else 0.0)
        base = level + phi * slope
        mean = base * s if season == "mul" else base + (s if season == "add" else 0.0)
        eps = rng.normal(0, sigma) * (1.0 if error == "mul" else 100.0)
        y = mean * (1 + eps) if error == "mul" else mean + eps
        out[i] = y
        # error correction in the relative (mul) or absolute (add) form
        innovation = (y - mean) / (abs(mean) + 1e-9) if error == "mul" else (y - mean) / 100.0
        new_level = base * (1 + alpha * innovation) if error == "mul" else base + alpha * innovation * 100.0
        slope = phi * slope + beta * (new_level - base) if trend != "none" else 0.0
        if season != "none":
            seasonal[i % m] = s + gamma * innovation * (s if season == "mul" else 100.0)
        level = max(new_level, 1e-3) if error == "mul" else new_level
    return Draw(out, float(m) if m > 1 else 0.0, {"error": error, "trend": trend, "season": season})


def _stable_poly(rng: np.random.Generator, order: int) -> np.ndarray:
    """Coefficients of a polynomial with roots outside the unit circle (stationary AR / invertible MA)."""
    if order == 0:
        return np.zeros(0)
    roots = rng.uniform(1.2, 3.0, order) * rng.choice([-1, 1], order)
    poly = np.poly(1 / roots)  # monic in 1/root form: 1 - c1 B - ...
    return -poly[1:]


def arima(n: int, rng: np.random.Generator) -> Draw:
    p, q, d = int(rng.integers(0, 3)), int(rng.integers(0, 3)), int(rng.integers(0, 2))
    ar, ma = _stable_poly(rng, p), _stable_poly(rng, q)
    burn = 100
    e = rng.normal(size=n + burn)
    x = np.zeros(n + burn)
    for i in range(n + burn):
        x[i] = e[i] + sum(ar[j] * x[i - 1 - j] for j in range(p) if i - 1 - j >= 0)
        x[i] += sum(ma[j] * e[i - 1 - j] for j in range(q) if i - 1 - j >= 0)
    x = x[burn:]
    m = 0
    if rng.random() < 0.3:  # seasonal integration: y_t = y_{t-m} + x_t
        m = int(rng.choice([4, 12]))
        x = x + np.tile(rng.normal(0, 3, m), n // m + 1)[:n]
        for i in range(m, n):
            x[i] += x[i - m]
    for _ in range(d):
        x = np.cumsum(x)
    return Draw(20.0 + x, float(m), {"order": (p, d, q)})


# ---- structural: trends, seasonalities, shifts, outliers ------------------------------------------------------
def trend_curve(n: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A positive trend that starts at 1: flat, linear, exponential or damped."""
    t = np.arange(n, dtype=np.float64)
    if kind == "linear":
        return 1 + rng.uniform(-0.5, 2.0) * t / n
    if kind == "exponential":
        return np.exp(rng.uniform(0.3, 3.0) * t / n * rng.choice([1, 1, 1, -1]))
    if kind == "damped":
        phi = rng.uniform(0.9, 0.99)
        return 1 + rng.uniform(0.005, 0.03) * (1 - phi**t) / (1 - phi) * rng.choice([1, -1])
    return np.ones(n)


def season_wave(n: int, period: float, rng: np.random.Generator) -> np.ndarray:
    """A zero-mean, unit-std periodic shape of any (real) period: a few random harmonics."""
    t = np.arange(n, dtype=np.float64)
    harmonics = int(rng.integers(1, 4))
    wave = sum(
        rng.normal(0, 1.0 / k) * np.sin(2 * np.pi * k * t / period + rng.uniform(0, 2 * np.pi))
        for k in range(1, harmonics + 1)
    )
    wave = np.asarray(wave, dtype=np.float64)
    return (wave - wave.mean()) / (wave.std() + 1e-12)


def seasonal(n: int, rng: np.random.Generator) -> Draw:
    trend_kind = str(rng.choice(["none", "linear", "exponential", "damped"]))
    mode = "mul" if rng.random() < 0.5 else "add"
    periods = [_period(rng, n)]
    if rng.random() < 0.3:  # a second seasonality, longer than the first
        periods.append(min(periods[0] * float(rng.choice([4.0, 7.0, 12.0, 4.35])), n / 2.5))
    trend = trend_curve(n, trend_kind, rng)
    waves = sum(rng.uniform(0.05, 0.4) / (i + 1) * season_wave(n, p, rng) for i, p in enumerate(periods))
    y = 10.0 * (trend * (1 + waves) if mode == "mul" else trend + waves)
    y = y + rng.normal(0, rng.uniform(0.0, 0.08), n) * 10.0 * (trend if mode == "mul" else 1.0)
    facts: dict[str, Any] = {"trend": trend_kind, "season": mode, "periods": periods, "shifts": [], "outliers": []}
    if rng.random() < 0.25:  # level shifts
        for at in sorted(rng.integers(n // 4, n - 1, size=int(rng.integers(1, 3)))):
            jump = rng.uniform(0.2, 1.0) * rng.choice([-1, 1]) * float(np.std(y) + 1)
            y[at:] += jump
            facts["shifts"].append((int(at), float(jump)))
    if rng.random() < 0.25:  # outliers
        for at in rng.integers(0, n, size=int(rng.integers(1, 4))):
            spike = rng.uniform(3, 6) * float(np.std(y) + 1e-9) * rng.choice([-1, 1])
            y[at] += spike
            facts["outliers"].append(int(at))
    return Draw(y, periods[0], facts)


# ---- intermittent and count series -----------------------------------------------------------------------------
def intermittent(n: int, rng: np.random.Generator) -> Draw:
    p = rng.uniform(0.05, 0.5)
    sizes = np.round(rng.gamma(rng.uniform(1, 4), rng.uniform(1, 10), n))
    values = np.where(rng.random(n) < p, np.maximum(sizes, 1), 0.0)
    return Draw(values, 0.0, {"occurrence": p, "integer": True})


def counts(n: int, rng: np.random.Generator) -> Draw:
    period = float(rng.choice([7.0, 12.0, 24.0, 4.0]))
    level = float(10 ** rng.uniform(0, 2.5))
    trend = trend_curve(n, str(rng.choice(["none", "linear", "damped"])), rng)
    rate = level * np.clip(trend, 0.1, None) * np.exp(rng.uniform(0, 0.5) * season_wave(n, period, rng) * 0.7)
    return Draw(rng.poisson(rate).astype(np.float64), period, {"rate_level": level, "integer": True})


GENERATORS: dict[str, Callable[[int, np.random.Generator], Draw]] = {
    "kernel_synth": kernel_synth,
    "ets": ets,
    "arima": arima,
    "seasonal": seasonal,
    "intermittent": intermittent,
    "counts": counts,
}


def draw_series(
    kind: str, n: int, rng: np.random.Generator, max_season: int = 52, scale: bool = True
) -> tuple[Series, Draw]:
    d = GENERATORS[kind](n, rng)
    values = d.values
    if scale:
        values = values * 10.0 ** rng.uniform(*MAGNITUDE_RANGE)
    m = season_length_of(d.period, max_season)
    return Series(f"synthetic/{kind}", values, m, default_horizon(m), "synthetic"), d


def generate(count: int, seed: int, min_length: int = 64, max_length: int = 400, max_season: int = 52) -> list[Series]:
    """`count` series drawn from MIX (deterministic for a seed). KernelSynth draws are at most 256 points long
    (the Cholesky factor is O(n³))."""
    with _one_blas_thread():
        return _generate(count, seed, min_length, max_length, max_season)


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Small Cholesky factors are ~6x faster on one BLAS thread when the cores are busy (threads spin)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: only speed
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _generate(count: int, seed: int, min_length: int, max_length: int, max_season: int) -> list[Series]:
    rng = np.random.default_rng(seed)
    kinds = list(MIX)
    weights = np.array([MIX[k] for k in kinds])
    out = []
    for i in range(count):
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        n = int(rng.integers(min_length, max_length + 1))
        if kind == "kernel_synth":
            n = min(n, 192)
        s, _ = draw_series(kind, n, rng, max_season)
        out.append(Series(f"synthetic/{i}-{kind}", s.values, s.season_length, s.horizon, "synthetic"))
    return out


def mix_manifest(count: int, seed: int) -> dict[str, Any]:
    return {
        "count": count,
        "seed": seed,
        "mix": MIX,
        "magnitudes": f"× 10^U{MAGNITUDE_RANGE}",
        "generator": "training/data/synthetic.py",
        "note": "KernelSynth GP mixtures, simulated ETS and ARIMA, trends (linear, exponential, damped) with "
        "additive/multiplicative seasonality of any period (1-2 at once), level shifts, outliers, intermittent "
        "and Poisson count series",
    }


def _finite_check(series: list[Series]) -> None:
    for s in series:
        assert np.all(np.isfinite(s.values)) and not math.isnan(float(s.values.sum())), s.name
