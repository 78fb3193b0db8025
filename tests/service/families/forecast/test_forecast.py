"""POST /forecast: the response contract, scale equivariance, constant and tiny series, and every input rule (422
naming the field), including the JSON NaN/Infinity literals the framework's parser accepts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from service.manifest import read_manifest
from training.data.series import seasonal_trend


@pytest.fixture(scope="module")
def fc_client(forecast_models_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(models_dir=forecast_models_dir, intra_op_threads=1))) as c:
        yield c


@pytest.fixture(scope="module")
def limits(forecast_models_dir: Path) -> dict[str, Any]:
    return read_manifest(forecast_models_dir / "forecast" / "1").config


SERIES = [round(float(v), 4) for v in seasonal_trend(48, 12, np.random.default_rng(0)) * 10]


def post(client: TestClient, body: dict[str, Any]) -> Any:
    return client.post("/forecast", json=body)


def test_forecast_contract(fc_client: TestClient, limits: dict[str, Any]) -> None:
    r = post(fc_client, {"series": SERIES, "horizon": 7, "season_length": 12})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"median", "quantiles", "season_length", "season_source", "measured_horizon",
                         "beyond_measured_horizon", "model", "session_id"} and body["session_id"] is None  # fmt: skip
    assert body["season_source"] == "request" and body["beyond_measured_horizon"] is False
    assert len(body["median"]) == 7 and set(body["quantiles"]) == {"0.1", "0.9"}
    assert all(len(v) == 7 for v in body["quantiles"].values())
    assert body["season_length"] == 12
    assert body["model"]["version"] == 1 and body["model"]["name"].startswith("forecast-lstm")
    lo, mid, hi = np.array(body["quantiles"]["0.1"]), np.array(body["median"]), np.array(body["quantiles"]["0.9"])
    assert np.all(lo <= mid) and np.all(mid <= hi)


def test_quantile_subset_and_detected_season(fc_client: TestClient, limits: dict[str, Any]) -> None:
    r = post(fc_client, {"series": SERIES, "horizon": 3, "quantiles": [0.9]})
    assert r.status_code == 200, r.text
    assert set(r.json()["quantiles"]) == {"0.9"}
    assert (r.json()["season_length"], r.json()["season_source"]) == (12, "detected")
    noise = [round(float(v), 4) for v in np.random.default_rng(3).normal(10, 1, 60)]
    r = post(fc_client, {"series": noise, "horizon": 3})
    assert (r.json()["season_length"], r.json()["season_source"]) == (limits["default_season_length"], "default")
    r = post(fc_client, {"series": SERIES, "horizon": 3, "quantiles": [0.5, 0.1]})
    assert set(r.json()["quantiles"]) == {"0.1", "0.5"}
    assert r.json()["quantiles"]["0.5"] == r.json()["median"]


def test_integers_give_the_same_forecast_as_the_same_floats(fc_client: TestClient) -> None:
    integers = [int(v) for v in SERIES]
    r = post(fc_client, {"series": integers, "horizon": 2})
    assert r.status_code == 200, r.text
    assert r.json() == post(fc_client, {"series": [float(v) for v in integers], "horizon": 2}).json()


def test_scale_equivariance_through_the_api(fc_client: TestClient) -> None:
    base = post(fc_client, {"series": SERIES, "horizon": 12, "season_length": 12}).json()
    for factor in (1000.0, 1e-6):
        scaled = post(fc_client, {"series": [v * factor for v in SERIES], "horizon": 12, "season_length": 12}).json()
        np.testing.assert_allclose(scaled["median"], np.array(base["median"]) * factor, rtol=1e-4)
        for q in ("0.1", "0.9"):
            np.testing.assert_allclose(scaled["quantiles"][q], np.array(base["quantiles"][q]) * factor, rtol=1e-4)


@pytest.mark.parametrize("level", [0.0, 42.0, -3e-6, 1e9])
def test_constant_series_give_finite_near_constant_forecasts(fc_client: TestClient, level: float) -> None:
    r = post(fc_client, {"series": [level] * 30, "horizon": 10, "season_length": 4})
    assert r.status_code == 200, r.text
    values = np.array([r.json()["median"], *r.json()["quantiles"].values()])
    assert np.all(np.isfinite(values))
    assert np.all(np.abs(values - level) <= 0.5 * abs(level) + (level == 0)), values


def test_huge_values_are_forecast_while_the_answer_fits_in_float64(fc_client: TestClient) -> None:
    """The contract (service/families/forecast/service.py): a forecast that is finite in float64 is answered, scale
    and all (1e307 × a series gives 1e307 × its forecast); one that would overflow is a 422 naming `series`."""
    base = [1 + 0.1 * (i % 3) for i in range(30)]
    small = post(fc_client, {"series": base, "horizon": 5, "season_length": 3}).json()
    r = post(fc_client, {"series": [1e307 * v for v in base], "horizon": 5, "season_length": 3})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["median"], np.array(small["median"]) * 1e307, rtol=1e-6)
    for q in ("0.1", "0.9"):
        np.testing.assert_allclose(r.json()["quantiles"][q], np.array(small["quantiles"][q]) * 1e307, rtol=1e-6)

    rising_to_the_limit = [1e307 * (1 + 0.55 * i) for i in range(30)]  # ends at 1.6e308; its trend goes beyond
    r = post(fc_client, {"series": rising_to_the_limit, "horizon": 30})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["field"] == "series" and "too large" in r.json()["message"]


def _raw(client: TestClient, text: str) -> Any:
    return client.post("/forecast", content=text, headers={"content-type": "application/json"})


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "null", '"3"', "true"])
def test_non_finite_and_non_numbers_in_series_are_422(fc_client: TestClient, literal: str) -> None:
    r = _raw(fc_client, '{"series": [1, 2, 3, 4, 5, 6, 7, ' + literal + ', 9, 10, 11, 12], "horizon": 2}')
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["detail"][0]["field"] == "series.7", body
    assert "series.7" in body["message"]


def test_out_of_range_json_numbers_are_422(fc_client: TestClient) -> None:
    r = _raw(fc_client, '{"series": [1, 2, 3, 4, 5, 6, 7, 8, 9, 1e999], "horizon": 2}')
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "series.9"


def test_limits_from_the_manifest_are_422_naming_field_and_limit(fc_client: TestClient, limits: dict[str, Any]) -> None:
    short = post(fc_client, {"series": SERIES[: limits["min_history"] - 1], "horizon": 2})
    assert short.status_code == 422
    assert short.json()["detail"][0]["field"] == "series" and str(limits["min_history"]) in short.json()["message"]

    far = post(fc_client, {"series": SERIES, "horizon": limits["horizon_limit"] + 1})
    assert far.status_code == 422
    assert far.json()["detail"][0]["field"] == "horizon" and str(limits["horizon_limit"]) in far.json()["message"]
    assert post(fc_client, {"series": SERIES, "horizon": limits["max_horizon"]}).status_code == 200

    season = post(fc_client, {"series": SERIES, "horizon": 2, "season_length": limits["max_season_length"] + 1})
    assert season.status_code == 422 and season.json()["detail"][0]["field"] == "season_length"

    unknown = post(fc_client, {"series": SERIES, "horizon": 2, "quantiles": [0.1, 0.25]})
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["field"] == "quantiles" and "0.25" in unknown.json()["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"series": [], "horizon": 2}, "series"),
        ({"series": [1.0] * 10_001, "horizon": 2}, "series"),
        ({"series": SERIES, "horizon": 0}, "horizon"),
        ({"series": SERIES, "horizon": 2.5}, "horizon"),
        ({"series": SERIES, "horizon": "3"}, "horizon"),
        ({"series": SERIES}, "horizon"),
        ({"horizon": 3}, "series"),
        ({"series": SERIES, "horizon": 2, "season_length": 0}, "season_length"),
        ({"series": SERIES, "horizon": 2, "quantiles": []}, "quantiles"),
        ({"series": SERIES, "horizon": 2, "horizn": 3}, "horizn"),
        ({"series": "1,2,3", "horizon": 2}, "series"),
    ],
)
def test_schema_rules_are_422_naming_the_field(fc_client: TestClient, body: dict[str, Any], field: str) -> None:
    r = post(fc_client, body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["field"] == field, r.json()
    assert r.json()["message"].startswith(field)


def test_longest_series_is_the_forecast_of_its_last_max_context_points(
    fc_client: TestClient, limits: dict[str, Any]
) -> None:
    series = (np.sin(np.arange(10_000) / 3.0) * 5 + 20).tolist()
    r = post(fc_client, {"series": series, "horizon": 4, "season_length": 19})
    assert r.status_code == 200, r.text
    assert len(r.json()["median"]) == 4
    tail = post(fc_client, {"series": series[-limits["max_context"] :], "horizon": 4, "season_length": 19}).json()
    np.testing.assert_allclose(r.json()["median"], tail["median"], rtol=1e-6)
    assert r.json()["quantiles"].keys() == tail["quantiles"].keys()


def test_no_forecast_model_is_503(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(models_dir=tmp_path, intra_op_threads=1))) as client:
        r = client.post("/forecast", json={"series": SERIES, "horizon": 2})
        assert r.status_code == 503 and r.json()["error"] == "unavailable"


def test_a_sine_without_season_length_is_continued(fc_client: TestClient) -> None:
    """The season is detected (20 points) and the sine goes on: far better than a flat line."""
    t = np.arange(240)
    sine = np.sin(2 * np.pi * t / 20)
    r = post(fc_client, {"series": [round(float(v), 6) for v in sine[:200]], "horizon": 40})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["season_length"], body["season_source"]) == (20, "detected")
    error = np.abs(np.array(body["median"]) - sine[200:]).mean()
    assert error < 0.5 * np.abs(sine[200:]).mean(), error  # a flat line scores ~0.64


def test_long_horizon_rollout_is_finite_ordered_and_widening(fc_client: TestClient, limits: dict[str, Any]) -> None:
    horizon = 600
    assert limits["horizon_limit"] >= horizon
    r = post(fc_client, {"series": SERIES, "horizon": horizon, "season_length": 12})
    assert r.status_code == 200, r.text
    body = r.json()
    lo, mid, hi = (np.array(v) for v in (body["quantiles"]["0.1"], body["median"], body["quantiles"]["0.9"]))
    assert len(mid) == horizon and np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))
    assert np.all(lo <= mid) and np.all(mid <= hi)
    width = hi - lo
    m = limits["max_horizon"]
    assert width[-12:].mean() > 1.5 * width[m - 12 : m].mean()  # past the trained rollout it keeps widening
    assert body["beyond_measured_horizon"] is True and body["measured_horizon"] == limits["measured_horizon"]
    growing = post(fc_client, {"series": [v * 1e6 for v in SERIES], "horizon": horizon, "season_length": 12}).json()
    np.testing.assert_allclose(growing["median"], mid * 1e6, rtol=1e-4)  # scale equivariance holds far out too
