"""Forecaster: data and splits, metrics, scaling and features, step-model parity, quantile order, quality vs trivial
baselines, export safety and stateful continuation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation.reserved import load_reserved_series
from service.config import Settings
from service.families.forecast.engine import ForecastEngine, Forecaster, ForecastState, Scaling, input_features
from service.manifest import read_manifest
from service.registry import load_model
from tests.fixtures_forecast import tiny_checkpoint_path, tiny_series
from training.baselines_forecast import coverage, mase, mase_scale, seasonal_naive, smape
from training.data.series import (
    HORIZON,
    SEASON_LENGTH,
    Series,
    clean_values,
    load_csv_series,
    load_default_series,
    seasonal_trend,
    synthetic_series,
)
from training.forecast import export as forecast_export
from training.forecast.model import ForecastEnsemble
from training.kit.export import ParityError


@pytest.fixture(scope="module")
def engine(forecast_models_dir: Path) -> ForecastEngine:
    return ForecastEngine(load_model(forecast_models_dir / "forecast" / "1", Settings(intra_op_threads=1)))


@pytest.fixture(scope="module")
def torch_model(forecast_models_dir: Path) -> ForecastEnsemble:
    ensemble, _, _ = forecast_export.load(tiny_checkpoint_path(forecast_models_dir))
    return ensemble


# ---- data -----------------------------------------------------------------------------------------------------------
def test_clean_values_trims_ends_and_interpolates_gaps() -> None:
    values, filled = clean_values(np.array([np.nan, 1.0, np.nan, 3.0, 4.0, np.nan]))
    assert values.tolist() == [1.0, 2.0, 3.0, 4.0] and filled == 1


def test_series_hold_out_the_last_horizon_for_test_and_the_one_before_for_validation() -> None:
    s = Series("x", np.arange(40.0), 4, 8, "quarterly")
    assert s.test_target.tolist() == list(range(32, 40))
    assert s.valid_target.tolist() == list(range(24, 32))
    assert s.train.tolist() == list(range(24)) and s.valid_history.tolist() == s.train.tolist()
    assert s.test_history.tolist() == list(range(32))


def test_default_series_have_their_season_lengths_and_m4_horizons() -> None:
    data = load_default_series()
    counts = data.by_frequency()
    assert counts["monthly"] >= 100 and counts["quarterly"] >= 50 and counts["yearly"] >= 10
    for s in data.series:
        assert (s.season_length, s.horizon) == (SEASON_LENGTH[s.frequency], HORIZON[s.frequency]), s.name
        assert np.all(np.isfinite(s.values)) and len(s.train) >= 8, s.name
    names = {s.name for s in data.series}
    assert {"fpp2/a10", "fpp2/ausbeer", "fpp2/oil", "statsmodels/sunspots"} <= names
    assert any(n.startswith("fpp3/us_employment/") for n in names)
    co2 = next(s for s in data.series if s.name.startswith("statsmodels/co2"))
    assert co2.frequency == "monthly" and 500 < len(co2) < 540  # 1958-03 .. 2001-12 as monthly means
    assert load_default_series().sha256 == data.sha256  # deterministic
    # The reserved R collections (read only by evaluation/): none is in the training data, under its own name or
    # as the same run of values under another (R's co2 and sunspots are the statsmodels records).
    reserved = load_reserved_series().series
    assert reserved and not any(s.collection in ("datasets", "forecast") for s in data.series)
    assert not names & {s.name for s in reserved}
    for r in reserved:
        head = r.values[:12]
        assert not any(
            len(s.values) >= len(head)
            and np.any(np.all(np.lib.stride_tricks.sliding_window_view(s.values, 12) == head, axis=1))
            for s in data.series
        ), f"{r.name}: its values are in the training data"


def test_training_code_never_reads_the_reserved_collections() -> None:
    """training/ neither names the reserved R collections nor imports what reads them (evaluation/ does both)."""
    import ast

    from evaluation.reserved import RESERVED_CATALOGUE

    reserved = {e.collection for e in RESERVED_CATALOGUE}
    for path in (Path(__file__).resolve().parents[3] / "training").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom | ast.Import):
                modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not any(m.startswith("evaluation") for m in modules), f"{path} imports {modules}"
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                assert node.args[0].value not in reserved, f"{path}:{node.lineno} names a reserved collection"


def test_csv_series_with_season_lengths(tmp_path: Path) -> None:
    path = tmp_path / "series.csv"
    rows = ["series_id,value,season_length"]
    rows += [f"a,{v},12" for v in range(60)] + [f"b,{v}," for v in range(30)] + [f"short,{v},12" for v in range(5)]
    path.write_text("\n".join(rows) + "\n")
    data = load_csv_series(path)
    assert [(s.name, s.season_length, s.horizon) for s in data.series] == [("a", 12, 18), ("b", 1, 6)]
    assert "short" in data.dropped
    path.write_text("series_id,value,season_length\na,1,12\na,2,4\n")
    with pytest.raises(ValueError, match="constant per series"):
        load_csv_series(path)
    path.write_text("id,value\na,1\n")
    with pytest.raises(ValueError, match="series_id and value"):
        load_csv_series(path)


def test_synthetic_series_are_deterministic_and_varied() -> None:
    a, b = synthetic_series(30, seed=3), synthetic_series(30, seed=3)
    assert all(np.array_equal(x.values, y.values) for x, y in zip(a, b, strict=True))
    assert len({s.season_length for s in a}) >= 3
    assert len({round(float(np.log10(np.abs(s.values).mean()))) for s in a}) >= 4  # many magnitudes


# ---- metrics ---------------------------------------------------------------------------------------------------------
def test_metrics_by_hand() -> None:
    history = np.array([1.0, 2.0, 3.0, 5.0, 4.0])
    assert mase_scale(history, 2) == pytest.approx((2 + 3 + 1) / 3)
    assert mase(np.array([6.0, 6.0]), np.array([5.0, 8.0]), history, 2) == pytest.approx(1.5 / 2)
    assert smape(np.array([100.0, 0.0]), np.array([50.0, 0.0])) == pytest.approx(100 * (2 * 50 / 150) / 2)
    assert coverage(np.array([1.0, 2.0, 3.0]), np.array([0.0, 2.5, 3.0]), np.array([2.0, 3.0, 3.0])) == 2 / 3
    assert seasonal_naive(np.array([1.0, 2.0, 3.0, 4.0]), 5, 2).tolist() == [3.0, 4.0, 3.0, 4.0, 3.0]
    assert seasonal_naive(np.array([1.0, 2.0]), 2, 12).tolist() == [2.0, 2.0]  # shorter than a season: naive


# ---- scaling and features -----------------------------------------------------------------------------------------
def test_scaling_is_scale_equivariant_and_guards_constants() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(5, 2, size=(1, 50))
    base, big = Scaling.fit(y, 1e-6), Scaling.fit(1000 * y, 1e-6)
    np.testing.assert_allclose(big.loc, 1000 * base.loc, rtol=1e-12)
    np.testing.assert_allclose(big.scale, 1000 * base.scale, rtol=1e-12)
    constant = Scaling.fit(np.full((1, 20), -7.5), 1e-6)
    assert constant.loc[0] == pytest.approx(-7.5) and constant.scale[0] == pytest.approx(7.5)
    zeros = Scaling.fit(np.zeros((1, 20)), 1e-6)
    assert (zeros.loc[0], zeros.scale[0]) == (0.0, 1.0)
    huge = Scaling.fit(np.array([[1e300, -1e300, 5e299]]), 1e-6)
    assert np.isfinite(huge.scale).all() and huge.scale[0] > 0
    tiny = Scaling.fit(y * 1e-6, 1e-6)
    np.testing.assert_allclose(tiny.normalize(y * 1e-6), base.normalize(y), atol=1e-9)


def test_input_features_lag_phase_and_horizon_step(engine: ForecastEngine) -> None:
    cfg = engine.config
    z = np.arange(6, dtype=np.float64)[None, :]
    empty = np.full((1, cfg.max_season_length), np.nan)
    x = input_features(empty, z, np.zeros(1, np.int64), np.array([4]), 0, cfg)
    col = {name: x[0, :, i] for i, name in enumerate(cfg.features)}
    # input t predicts t + 1: its seasonal lag is z[t + 1 - 4], or z[t] while that does not exist
    assert col["seasonal_lag"].tolist() == [0, 1, 2, 0, 1, 2]
    np.testing.assert_allclose(col["season_sin"], np.sin(2 * np.pi * (np.arange(1, 7) % 4) / 4), atol=1e-6)
    assert np.allclose(col["log_season"], np.log(4) / np.log(cfg.max_season_length))
    assert np.all(col["horizon_step"] == 0)
    recent = np.concatenate([empty, z], axis=1)[:, -cfg.max_season_length :]
    step = input_features(recent, np.array([[9.0]]), np.array([6]), np.array([4]), 3, cfg)[0, 0]
    assert step[cfg.features.index("seasonal_lag")] == 3.0  # z[7 - 4]
    assert step[cfg.features.index("horizon_step")] == pytest.approx(3 / cfg.max_horizon)


# ---- the exported step model -----------------------------------------------------------------------------------------
def test_step_by_step_rollout_matches_one_full_sequence_pytorch_pass(
    engine: ForecastEngine, torch_model: ForecastEnsemble
) -> None:
    """onnxruntime, prefill + one call per horizon step carrying (h, c) == PyTorch reading the same inputs at once."""
    cfg = engine.config
    history = seasonal_trend(40, 12, np.random.default_rng(5)) * 37.0
    horizon = 15
    state = engine.prefill(history, 12)
    z_out = engine.forecaster.rollout_standardized(state, horizon)[0]  # (horizon, Q)
    # The full input sequence: the standardized history, then the fed-back medians flagged with their step.
    med = cfg.median_index
    z_hist = state.scaling.normalize(history[None, :])
    empty = np.full((1, cfg.max_season_length), np.nan)
    parts = [input_features(empty, z_hist, np.zeros(1, np.int64), np.array([12]), 0, cfg)]
    recent = np.concatenate([empty, z_hist], axis=1)[:, -cfg.max_season_length :]
    for k in range(1, horizon):
        z_in = z_out[k - 1 : k, med][None, :].astype(np.float64)
        parts.append(input_features(recent, z_in, np.array([len(history) + k - 1]), np.array([12]), k, cfg))
        recent = np.concatenate([recent, z_in], axis=1)[:, -cfg.max_season_length :]
    x = torch.from_numpy(np.concatenate(parts, axis=1))
    zeros = torch.zeros(cfg.layers, 1, cfg.hidden)
    with torch.no_grad():
        y, _, _ = torch_model(x, zeros, zeros.clone())
    expected = y[0, len(history) - 1 :].numpy()  # outputs from the last history value on
    np.testing.assert_allclose(z_out, expected, atol=2e-4)


def test_quantiles_are_ordered_at_every_step(engine: ForecastEngine, torch_model: ForecastEnsemble) -> None:
    rng = np.random.default_rng(1)
    histories = [
        seasonal_trend(60, 12, rng) * 100,
        np.cumsum(rng.normal(size=50)),
        np.r_[np.zeros(30), 50.0, np.zeros(9)],  # a spike
        rng.exponential(size=30),
    ]
    for history in histories:
        for season in (1, 4, 12):
            result = engine.forecast(history, engine.config.max_horizon, season)
            lo, mid, hi = (np.array(result.quantiles[q]) for q in engine.config.quantiles)
            assert np.all(lo <= mid) and np.all(mid <= hi)
    x = torch.randn(8, 30, len(engine.config.features)) * 5
    zeros = torch.zeros(engine.config.layers, 8, engine.config.hidden)
    with torch.no_grad():
        y, _, _ = torch_model(x, zeros, zeros.clone())
    assert torch.all(y[..., 0] <= y[..., 1]) and torch.all(y[..., 1] <= y[..., 2])


def test_forecast_is_scale_equivariant_and_handles_constants_and_tiny_values(engine: ForecastEngine) -> None:
    history = seasonal_trend(50, 4, np.random.default_rng(2))
    base = engine.forecast(history, 10, 4)
    for factor in (1000.0, 1e-6):
        scaled = engine.forecast(history * factor, 10, 4)
        for q in engine.config.quantiles:
            np.testing.assert_allclose(scaled.quantiles[q], np.array(base.quantiles[q]) * factor, rtol=1e-4)
    for level in (0.0, 3.0, -2e-7, 5e6):
        flat = engine.forecast(np.full(30, level), 12, 4)
        values = np.array(list(flat.quantiles.values()))
        assert np.all(np.isfinite(values))
        assert np.all(np.abs(values - level) <= 0.5 * abs(level) + (level == 0)), (level, values)


def test_model_beats_trivial_baselines_on_a_new_seasonal_series(engine: ForecastEngine) -> None:
    """On series it never saw (another seed), the tiny model beats repeating the last value and the mean."""
    data = tiny_series(count=6, length=120, seed=99, constants=0)
    scores: dict[str, list[float]] = {"model": [], "naive": [], "mean": []}
    for s in data.series:
        median = np.array(engine.forecast(s.test_history, s.horizon, s.season_length).median)
        forecasts = {
            "model": median,
            "naive": np.full(s.horizon, s.test_history[-1]),
            "mean": np.full(s.horizon, s.test_history.mean()),
        }
        for name, f in forecasts.items():
            scores[name].append(mase(s.test_target, f, s.test_history, s.season_length))
    means = {k: float(np.mean(v)) for k, v in scores.items()}
    assert means["model"] < means["naive"] and means["model"] < means["mean"], means


# ---- export, manifest and sessions -----------------------------------------------------------------------------------
def test_manifest_carries_every_serving_rule_and_the_evaluation(forecast_models_dir: Path) -> None:
    manifest = read_manifest(forecast_models_dir / "forecast" / "1")
    cfg = manifest.config
    for key in (
        "features",
        "quantiles",
        "scaling",
        "min_history",
        "max_context",
        "max_horizon",
        "max_season_length",
        "default_season_length",
        "state_hidden",
        "layers",
    ):
        assert key in cfg, key
    assert cfg["quantiles"] == [0.1, 0.5, 0.9]
    graph = manifest.graphs["step"]
    assert [i.name for i in graph.inputs] == ["x", "h0", "c0"] and graph.opset == 17
    assert graph.inputs[0].dims == ["batch", "seq", len(cfg["features"])]
    assert [o.name for o in graph.outputs] == ["y", "hn", "cn"] and graph.outputs[0].dims == ["batch", "seq", 3]
    metrics = manifest.metrics
    assert {"mase", "smape", "coverage"} <= metrics["model"].keys()
    assert "seasonal_naive" in metrics["baselines"]
    assert len(metrics["test"]["per_series"]) == len(tiny_series().series)
    assert cfg["measured_horizon"] == max(s.horizon for s in tiny_series().series)
    assert cfg["horizon_limit"] >= 500 and cfg["scaling"]["rule"] == "log_standardize"
    assert manifest.data.sha256 == tiny_series().sha256
    assert "forecasts.png" in manifest.files


def test_failed_parity_publishes_nothing(
    forecast_models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> float:
        raise ParityError("simulated mismatch")

    monkeypatch.setattr(forecast_export, "check_parity", broken)
    with pytest.raises(ParityError):
        forecast_export.export(tiny_checkpoint_path(forecast_models_dir), tmp_path, tiny_series(), cache_dir=tmp_path)
    assert not any((tmp_path / "forecast").glob("[0-9]*"))


def test_a_state_continues_with_new_observations(engine: ForecastEngine) -> None:
    """A session's path: prefill once, then observe new values (scale fixed), in one call or one at a time, and
    through the JSON session data."""
    history = seasonal_trend(70, 12, np.random.default_rng(4)) * 5
    state = engine.prefill(history[:50], 12)
    at_once = engine.observe(state, history[50:])
    one_by_one = state
    for value in history[50:]:
        one_by_one = engine.observe(one_by_one, [value])
    np.testing.assert_allclose(at_once.next_quantiles, one_by_one.next_quantiles, atol=1e-5)
    np.testing.assert_allclose(at_once.scaling.scale, state.scaling.scale)  # the scale stays fixed
    data = json.loads(json.dumps(at_once.session_data()))
    restored = ForecastState.from_session_data(at_once.h, at_once.c, data)
    assert engine.rollout(restored, 6).median == pytest.approx(engine.rollout(at_once, 6).median, rel=1e-6)
    # a state is never changed by a rollout
    before = at_once.next_quantiles.copy()
    engine.rollout(at_once, 6)
    assert np.array_equal(before, at_once.next_quantiles)


def test_forecaster_batches_series_of_equal_length(engine: ForecastEngine) -> None:
    rng = np.random.default_rng(8)
    histories = np.stack([seasonal_trend(40, 4, rng) * 10**i for i in range(3)])
    together = Forecaster(engine.config, engine.forecaster.run).forecast(histories, 8, np.array([4, 4, 4]))
    for i in range(3):
        alone = engine.forecast(histories[i], 8, 4)
        np.testing.assert_allclose(together[i, :, 1], alone.median, rtol=1e-4)


@pytest.mark.slow  # ~8 s: ETS and Theta fitted on every tiny series
def test_score_amends_only_the_baseline_figures(forecast_models_dir: Path, tmp_path: Path) -> None:
    """`score --amend` (e.g. once ARIMA is fitted on every series): the baselines in the manifest are brought up
    to date; the model's own figures must come out as published, or nothing is written."""
    import shutil

    version_dir = tmp_path / "forecast" / "1"
    shutil.copytree(forecast_models_dir / "forecast" / "1", version_dir)
    before = read_manifest(version_dir)
    assert before.metrics["baselines"].keys() == {"seasonal_naive"}  # the tiny model was exported without them
    table = forecast_export.score(version_dir, tiny_series(), None, tmp_path / "cache", tmp_path / "t.md", amend=True)
    after = read_manifest(version_dir)
    assert after.metrics["baselines"]["ets"]["mase"] > 0 and after.metrics["baselines"]["theta"]["mase"] > 0
    assert after.metrics["model"] == before.metrics["model"] and after.variants == before.variants
    assert after.metrics["test"]["all"]["lstm_mase"] == before.metrics["test"]["all"]["lstm_mase"]
    assert (tmp_path / "t.md").read_text() == table and "| all |" in table

    tampered = json.loads((version_dir / "manifest.json").read_text())
    tampered["metrics"]["test"]["all"]["lstm_mase"] += 0.1
    (version_dir / "manifest.json").write_text(json.dumps(tampered))
    with pytest.raises(ValueError, match="differ from the published ones"):
        forecast_export.score(version_dir, tiny_series(), None, tmp_path / "cache", amend=True)
    assert json.loads((version_dir / "manifest.json").read_text()) == tampered
