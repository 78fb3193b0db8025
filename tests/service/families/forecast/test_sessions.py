"""Forecast sessions (only new points are read; the scaling is fixed at the session's start) and micro-batched
forecasts (each equal to the request run alone)."""

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from service.families.forecast.engine import ForecastEngine, ForecastItem
from tests.app_state import runtime_of

SERIES = [100 + 10 * math.sin(2 * math.pi * t / 12) + 0.5 * t for t in range(96)]


@pytest.fixture(scope="module")
def fc(forecast_models_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(models_dir=forecast_models_dir, microbatch_max_wait_ms=20))) as c:
        yield c


def forecast_engine(client: TestClient) -> ForecastEngine:
    engine = runtime_of(client).engine("forecast")
    assert isinstance(engine, ForecastEngine)
    return engine


def call(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/forecast", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_session_reads_only_new_points_and_equals_a_full_history_pass(fc: TestClient) -> None:
    sid = fc.post("/sessions", json={"model": "forecast"}).json()["session_id"]
    first = call(fc, session_id=sid, observations=SERIES[:60], horizon=6, season_length=12)
    for start in (60, 72, 90):  # new points arrive in chunks
        end = {60: 72, 72: 90, 90: 96}[start]
        latest = call(fc, session_id=sid, observations=SERIES[start:end], horizon=6)
    assert first["session_id"] == sid and latest["season_length"] == 12

    # The same history read in one pass with the session's scaling (fixed by its first 60 points).
    engine = forecast_engine(fc)
    session_scaling = engine.prefill(SERIES[:60], 12).scaling
    full = engine.forecaster.prefill(np.asarray([SERIES]), 12, scaling=session_scaling)
    expected = engine.forecaster.rollout(full, 6)[0]  # (horizon, Q)
    median = engine.config.median_index
    np.testing.assert_allclose(latest["median"], expected[:, median], rtol=1e-5, atol=1e-5)


def test_session_without_new_points_repeats_its_forecast(fc: TestClient) -> None:
    sid = fc.post("/sessions", json={"model": "forecast"}).json()["session_id"]
    a = call(fc, session_id=sid, observations=SERIES[:48], horizon=4)
    b = call(fc, session_id=sid, horizon=4)
    assert a["median"] == b["median"]


def test_session_request_rules(fc: TestClient) -> None:
    sid = fc.post("/sessions", json={"model": "forecast"}).json()["session_id"]
    short = fc.post("/forecast", json={"session_id": sid, "observations": [1.0], "horizon": 2})
    assert short.status_code == 422 and short.json()["detail"][0]["field"] == "observations"
    both = fc.post("/forecast", json={"session_id": sid, "series": SERIES, "horizon": 2})
    assert both.status_code == 422 and both.json()["detail"][0]["field"] == "series"
    call(fc, session_id=sid, observations=SERIES[:48], horizon=2, season_length=12)
    change = fc.post("/forecast", json={"session_id": sid, "horizon": 2, "season_length": 4})
    assert change.status_code == 422 and "cannot change" in change.json()["message"]
    stray = fc.post("/forecast", json={"series": SERIES, "observations": [1.0], "horizon": 2})
    assert stray.status_code == 422 and stray.json()["detail"][0]["field"] == "observations"
    gone = fc.post("/forecast", json={"session_id": "z" * 24, "observations": SERIES, "horizon": 2})
    assert gone.status_code == 404


def test_concurrent_forecasts_share_calls_and_equal_their_runs_alone(fc: TestClient) -> None:
    bodies = [{"series": SERIES[: 30 + 7 * i], "horizon": 1 + i % 5, "season_length": 12} for i in range(8)]
    alone = [call(fc, **b) for b in bodies]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda b: call(fc, **b), bodies * 2))
    for got, want in zip(together, alone * 2, strict=True):
        np.testing.assert_allclose(got["median"], want["median"], rtol=1e-5)
        assert got["quantiles"].keys() == want["quantiles"].keys()


def test_forecast_many_equals_one_by_one(fc: TestClient) -> None:
    engine = forecast_engine(fc)
    items = [ForecastItem(SERIES[: 24 + 5 * i], 2 + i, 12) for i in range(5)] + [ForecastItem(SERIES[:24], 3, 4)]
    for item, result in zip(items, engine.forecast_many(items), strict=True):
        alone = engine.forecast(list(item.series), item.horizon, item.season_length)
        np.testing.assert_allclose(result.median, alone.median, rtol=1e-5)
        assert len(result.median) == item.horizon
