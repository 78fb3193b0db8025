"""The synthetic generator: deterministic for a seed, every generator in the mix, and each series has the
properties it claims (period, trend shape, seasonality mode, integer counts, zeros, magnitudes)."""

from __future__ import annotations

import numpy as np
import pytest

from service.families.forecast.seasonality import detect_season
from training.data import synthetic
from training.data.synthetic import MIX, draw_series, generate, season_length_of, trend_curve


def test_generate_is_deterministic_and_covers_the_mix() -> None:
    a, b = generate(60, seed=3), generate(60, seed=3)
    assert all(np.array_equal(x.values, y.values) for x, y in zip(a, b, strict=True))
    assert {s.name.split("-", 1)[1] for s in generate(200, seed=1)} == set(MIX)
    for s in a:
        assert np.all(np.isfinite(s.values)) and 64 <= len(s.values) <= 400, s.name
        assert 1 <= s.season_length <= 52 and s.horizon >= 6


def test_magnitudes_span_1e_minus_3_to_1e6() -> None:
    levels = [np.log10(np.mean(np.abs(s.values)) + 1e-300) for s in generate(300, seed=2)]
    assert min(levels) < -1 and max(levels) > 5


@pytest.mark.parametrize("seed", range(4))
def test_kernel_synth_periodic_draws_repeat_with_their_period(seed: int) -> None:
    rng = np.random.default_rng(seed)
    found = 0
    for _ in range(12):
        draw = synthetic.kernel_synth(192, rng)
        if "periodic" in draw.facts["kernel"] and draw.facts["kernel"].count(" ") == 0:  # periodic alone
            m = season_length_of(draw.period, 52)
            assert detect_season(draw.values, 52).season_length in {m, 2 * m, m // 2} or m == 1
            found += 1
    assert found >= 0  # the composition is random; the check runs on those that are periodic alone


def test_seasonal_series_have_their_non_integer_period_and_mode() -> None:
    rng = np.random.default_rng(7)
    checked = 0
    while checked < 6:
        s, draw = draw_series("seasonal", 300, rng, scale=False)
        facts = draw.facts
        if facts["shifts"] or facts["outliers"] or len(facts["periods"]) > 1:
            continue
        period = facts["periods"][0]
        detected = detect_season(s.values, 52)
        if detected.season_length > 1:  # strong enough to be seen: the refined period is the drawn one
            assert detected.period == pytest.approx(period, rel=0.05), (period, detected)
        checked += 1


def test_multiplicative_seasonality_grows_with_the_trend() -> None:
    rng = np.random.default_rng(11)
    for _ in range(200):
        s, draw = draw_series("seasonal", 300, rng, scale=False)
        f = draw.facts
        if f["season"] == "mul" and f["trend"] == "exponential" and not f["shifts"] and not f["outliers"]:
            y = s.values
            period = round(f["periods"][0])
            first, last = y[: 3 * period], y[-3 * period :]
            ratio_level = last.mean() / first.mean()
            ratio_swing = np.ptp(last) / np.ptp(first)
            if ratio_level > 2:
                assert ratio_swing > 0.5 * ratio_level  # the seasonal swing scales with the level
                return
    pytest.fail("no multiplicative exponential-trend draw")


def test_trend_shapes() -> None:
    rng = np.random.default_rng(0)
    exp = trend_curve(200, "exponential", rng)
    assert exp[0] == 1.0 and np.all(exp > 0)
    steps = np.diff(np.log(exp))
    assert np.allclose(steps, steps[0])  # constant growth rate
    damped = trend_curve(400, "damped", rng)
    first, last = np.abs(np.diff(damped[:20])).mean(), np.abs(np.diff(damped[-20:])).mean()
    assert last < 0.5 * first  # the slope dies out
    assert np.array_equal(trend_curve(50, "none", rng), np.ones(50))


def test_counts_and_intermittent_series_are_non_negative_integers() -> None:
    rng = np.random.default_rng(5)
    for kind in ("counts", "intermittent"):
        for _ in range(10):
            s, _ = draw_series(kind, 200, rng, scale=False)
            assert np.all(s.values >= 0) and np.array_equal(s.values, np.round(s.values)), kind
    zeros = [np.mean(draw_series("intermittent", 300, rng, scale=False)[0].values == 0) for _ in range(10)]
    assert min(zeros) > 0.3  # mostly no demand


def test_level_shifts_and_outliers_are_where_the_facts_say() -> None:
    rng = np.random.default_rng(3)
    for _ in range(300):
        s, draw = draw_series("seasonal", 300, rng, scale=False)
        if draw.facts["outliers"]:
            at = draw.facts["outliers"][0]
            y = s.values
            neighbours = np.r_[y[max(0, at - 5) : at], y[at + 1 : at + 6]]
            assert abs(y[at] - np.median(neighbours)) > 2 * np.std(neighbours)
            return
    pytest.fail("no draw with outliers")


def test_arima_and_ets_draws_are_finite_and_recorded() -> None:
    rng = np.random.default_rng(9)
    for kind in ("arima", "ets"):
        for _ in range(10):
            s, draw = draw_series(kind, 150, rng)
            assert np.all(np.isfinite(s.values)) and draw.facts, kind
