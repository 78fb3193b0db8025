"""Season detection (service/families/forecast/seasonality.py): integer and non-integer periods, noise, and no
season where there is none."""

from __future__ import annotations

import numpy as np
import pytest

from service.families.forecast.seasonality import detect_season, seasonal_strength


@pytest.mark.parametrize("period", [4, 7, 12, 20, 24, 52])
@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_integer_periods_are_found(period: int, noise: float) -> None:
    t = np.arange(8 * period if period > 30 else 200, dtype=np.float64)
    y = np.sin(2 * np.pi * t / period) + noise * np.random.default_rng(period).standard_normal(len(t))
    assert detect_season(y, 52).season_length == period


@pytest.mark.parametrize(("period", "expected"), [(17.5, 35), (12.5, 25), (7.25, 29), (33.3, 33)])
def test_non_integer_periods_give_a_season_that_repeats(period: float, expected: int) -> None:
    """A period of 17.5 repeats exactly every 35 points; a period with no short whole multiple is rounded."""
    t = np.arange(300, dtype=np.float64)
    y = 5 + np.sin(2 * np.pi * t / period) + 0.1 * np.random.default_rng(0).standard_normal(len(t))
    found = detect_season(y, 52)
    assert found.season_length == expected and found.period == pytest.approx(period, rel=0.01)


def test_seasonal_shape_with_trend_and_scale() -> None:
    rng = np.random.default_rng(1)
    t = np.arange(120, dtype=np.float64)
    shape = rng.normal(size=12)
    y = (100 + 2 * t) * (1 + 0.2 * shape[t.astype(int) % 12]) + rng.normal(0, 2, 120)
    assert detect_season(y, 52).season_length == 12
    assert detect_season(y * 1e-6, 52).season_length == 12  # units never matter


def test_no_season_in_noise_walks_and_trends() -> None:
    rng = np.random.default_rng(2)
    t = np.arange(200, dtype=np.float64)
    for y in (rng.standard_normal(200), np.exp(t / 60) + 0.01 * rng.standard_normal(200), np.full(50, 3.0)):
        assert detect_season(y, 52).season_length == 1
    walks = [detect_season(np.cumsum(rng.standard_normal(200)), 52).season_length for _ in range(20)]
    assert sum(m > 1 for m in walks) <= 2


def test_short_or_long_seasons_are_bounded() -> None:
    t = np.arange(60, dtype=np.float64)
    assert detect_season(np.sin(2 * np.pi * t / 40), 52).season_length == 1  # fewer than 2.5 cycles
    assert detect_season(np.sin(2 * np.pi * np.arange(400) / 60), 52).season_length in {1, 30}  # > max: none
    assert detect_season(np.arange(5.0), 52).season_length == 1


def test_strength_is_high_for_a_clean_season_and_low_for_noise() -> None:
    t = np.arange(96)
    assert seasonal_strength(np.sin(2 * np.pi * t / 12), 12) > 0.99
    assert seasonal_strength(np.random.default_rng(0).standard_normal(96), 12) < 0.2
