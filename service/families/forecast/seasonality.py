"""Season-length detection for a history given without `season_length` (pure numpy; training imports it too).

    history ──linear detrend, Hann window──► periodogram ──► its strongest peaks (refined between bins: a period
    need not be an integer)
           ──► integer candidates per peak: floor, ceil, and the multiples k·p (k ≤ 4) that land near an integer
               (a period of 17.5 repeats exactly every 35 points)
           ──► score each candidate m by classical decomposition: trend = centred moving average over m points,
               seasonal = the mean of the detrended values at each phase; score = adjusted R² of the seasonal part
               (1 - (RSS / (n - m)) / (TSS / (n - 1))), so a longer season gains nothing from fitting noise
           ──► the best candidate when its score reaches `threshold`, else 1 (no season)

A random walk or a trend has its periodogram peak at the lowest frequencies; its moving-average residual has no
phase structure, so it scores near 0 and is called non-seasonal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_THRESHOLD = 0.35  # adjusted R² of the seasonal component that counts as a season
MAX_READ = 3000  # only the last MAX_READ points are examined (enough for any season up to a few hundred)
PEAKS = 4  # periodogram peaks examined


@dataclass(frozen=True)
class Seasonality:
    season_length: int  # 1 = no season found
    period: float  # the refined periodogram period behind it (0.0 when none)
    strength: float  # adjusted R² of the seasonal component at season_length (0.0 when none)


def _moving_average(x: np.ndarray, m: int) -> np.ndarray:
    """Centred moving average over one season (2×m when m is even, as in classical decomposition); NaN at the
    ends where the window does not fit."""
    kernel = np.ones(m) / m if m % 2 else np.r_[0.5, np.ones(m - 1), 0.5] / m
    k = len(kernel)
    out = np.full(len(x), np.nan)
    if len(x) >= k:
        out[k // 2 : k // 2 + len(x) - k + 1] = np.convolve(x, kernel, mode="valid")
    return out


def seasonal_strength(y: np.ndarray, m: int) -> float:
    """Adjusted R² of the phase means of y minus its centred moving average over m points (nan-safe)."""
    y = np.asarray(y, dtype=np.float64)
    if m < 2 or len(y) < 2 * m + 2:
        return 0.0
    detrended = y - _moving_average(y, m)
    ok = np.isfinite(detrended)
    phase = np.arange(len(y)) % m
    d, p = detrended[ok], phase[ok]
    n = len(d)
    if n <= 2 * m:
        return 0.0
    counts = np.bincount(p, minlength=m)
    means = np.bincount(p, weights=d, minlength=m) / np.maximum(counts, 1)
    rss = float(np.sum((d - means[p]) ** 2))
    tss = float(np.sum((d - d.mean()) ** 2))
    if tss <= 1e-12 * max(1.0, float(np.sum(d**2))):
        return 0.0
    return 1.0 - (rss / (n - m)) / (tss / (n - 1))


def _peak_periods(x: np.ndarray, max_period: float, peaks: int) -> list[float]:
    """Periods of the strongest local maxima of the periodogram, refined by a parabola through the peak bin and its
    neighbours (log power)."""
    n = len(x)
    t = np.arange(n, dtype=np.float64)
    slope, intercept = np.polyfit(t, x, 1)
    detrended = (x - (slope * t + intercept)) * np.hanning(n)
    size = 1 << math.ceil(math.log2(4 * n))  # zero padding: finer frequency grid
    power = np.abs(np.fft.rfft(detrended, size)) ** 2
    freqs = np.fft.rfftfreq(size)
    lo = int(np.searchsorted(freqs, 1.0 / (1.15 * max_period)))  # periods up to max_period (and a margin)
    hi = int(np.searchsorted(freqs, 0.5, side="right"))  # period >= 2
    inner = np.arange(max(lo, 1), min(hi, len(power) - 1))
    if inner.size == 0:
        return []
    is_peak = (power[inner] >= power[inner - 1]) & (power[inner] >= power[inner + 1]) & (power[inner] > 0)
    idx = inner[is_peak]
    idx = idx[np.argsort(power[idx])[::-1][:peaks]]
    out = []
    for i in idx:
        a, b, c = np.log(power[i - 1 : i + 2] + 1e-300)
        shift = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) < 0 else 0.0
        f = freqs[i] + float(np.clip(shift, -0.5, 0.5)) * (freqs[1] - freqs[0])
        if f > 0:
            out.append(1.0 / f)
    return out


def _candidates(period: float, max_season: int, n: int) -> list[int]:
    out = {math.floor(period), math.ceil(period)}
    for k in (2, 3, 4):
        multiple = k * period
        if abs(multiple - round(multiple)) <= 0.1 * k:
            out.add(round(multiple))
    return sorted(m for m in out if 2 <= m <= max_season and n >= 2 * m + 2)


def detect_season(
    history: np.ndarray, max_season_length: int, threshold: float = DEFAULT_THRESHOLD, min_cycles: float = 2.5
) -> Seasonality:
    """The season length of one history (see the module docstring). A season must repeat `min_cycles` times."""
    y = np.asarray(history, dtype=np.float64)[-MAX_READ:]
    y = y[np.isfinite(y)]
    n = len(y)
    if n < 8 or np.all(y == y[0]):
        return Seasonality(1, 0.0, 0.0)
    y = y / np.max(np.abs(y))  # within [-1, 1]: no overflow near the float64 limit
    x = (y - y.mean()) / (y.std() or 1.0)  # scale-free: detection never depends on the units
    max_period = min(float(max_season_length), n / min_cycles)
    best = Seasonality(1, 0.0, 0.0)
    for period in _peak_periods(x, max_period, PEAKS):
        for m in _candidates(period, min(max_season_length, int(max_period)), n):
            # off the refined period by d points: -0.1·d (of floor/ceil, the one nearer the period wins a tie)
            off = min(abs(m - k * period) for k in (1, 2, 3, 4))
            score = seasonal_strength(x, m) - 0.1 * off
            # a longer candidate must be clearly better (multiples of a season fit at least as well, noise included)
            margin = 0.08 if best.season_length > 1 and m > best.season_length else 0.0
            if score > best.strength + margin:
                best = Seasonality(m, period, score)
    return best if best.strength >= threshold else Seasonality(1, best.period, best.strength)


def detect_seasons(
    histories: list[np.ndarray], max_season_length: int, threshold: float = DEFAULT_THRESHOLD
) -> list[int]:
    return [detect_season(h, max_season_length, threshold).season_length for h in histories]
