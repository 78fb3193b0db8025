"""Quantile forecasts of a series with the global LSTM forecaster."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from ..dependencies import engine_for
from ..errors import RequestError
from ..families.forecast.engine import ForecastEngine, ForecastItem, ForecastResult, ForecastState
from ..runtime import Runtime
from ..schemas import ErrorResponse, ModelRef, StrictRequest
from ..sessions import ID_PATTERN as SESSION_ID_PATTERN

FAMILY = "forecast"
MAX_SERIES_LENGTH = 10_000

router = APIRouter(tags=["forecast"], responses={422: {"model": ErrorResponse}, 503: {"model": ErrorResponse}})
ForecastDep = Annotated[ForecastEngine, Depends(engine_for("forecast"))]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


AIRLINE_1949_1950: list[Any] = [112.0, 118, 132, 129, 121, 135, 148, 148, 136, 119, 104, 118,
                     115, 126, 141, 135, 125, 149, 170, 170, 158, 133, 114, 140]  # fmt: skip


class ForecastRequest(StrictRequest):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"series": AIRLINE_1949_1950, "horizon": 6, "season_length": 12},
                {"series": AIRLINE_1949_1950, "horizon": 3, "quantiles": [0.9]},
            ]
        }
    )

    series: list[FiniteFloat] | None = Field(
        None,
        min_length=1,
        max_length=MAX_SERIES_LENGTH,
        description="observations in time order, oldest first, equally spaced, no gaps (the model's minimum "
        "length is `min_history` in GET /models)",
        examples=[AIRLINE_1949_1950],
    )
    session_id: str | None = Field(
        None, pattern=SESSION_ID_PATTERN, description="continue this forecast session (from POST /sessions)"
    )
    observations: list[FiniteFloat] | None = Field(
        None,
        max_length=MAX_SERIES_LENGTH,
        description="with session_id: the new observations since the last call (the first call's are the history; "
        "it fixes the session's scaling)",
    )
    horizon: int = Field(ge=1, description="how many future points (at most the model's `max_horizon`)", examples=[6])
    season_length: int | None = Field(
        None, ge=1, description="points per season: 12 monthly, 4 quarterly, 1 none (default: the model's)"
    )
    quantiles: list[float] | None = Field(
        None, min_length=1, description="which trained quantiles to return besides the median (default: all)"
    )


class ForecastResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "median": [146.2, 161.4, 180.3, 178.9, 165.0, 141.7],
                    "quantiles": {
                        "0.1": [137.5, 150.2, 166.8, 163.1, 149.9, 127.4],
                        "0.9": [155.3, 172.9, 194.0, 195.2, 181.6, 157.8],
                    },
                    "season_length": 12,
                    "model": {"name": "forecast-lstm-3x2x64", "version": 1},
                }
            ]
        }
    )

    median: list[float] = Field(description="the 0.5 quantile at each step of the horizon")
    quantiles: dict[str, list[float]] = Field(description='e.g. {"0.1": [...], "0.9": [...]}: an 80% interval')
    season_length: int = Field(description="the season length used")
    model: ModelRef
    session_id: str | None = Field(None, description="the session continued, if any")


def _check(body: ForecastRequest, engine: ForecastEngine, history: int, field: str) -> tuple[int, list[float]]:
    """The limits that come from the model's manifest. Returns (season_length, quantiles to return)."""
    cfg = engine.config
    if history < cfg.min_history:
        raise RequestError(f"{field} has {history} values; this model needs at least {cfg.min_history}", field=field)
    if body.horizon > cfg.max_horizon:
        raise RequestError(f"horizon is {body.horizon}; the limit is {cfg.max_horizon}", field="horizon")
    season = cfg.default_season_length if body.season_length is None else body.season_length
    if season > cfg.max_season_length:
        raise RequestError(f"season_length is {season}; the limit is {cfg.max_season_length}", field="season_length")
    trained = [q for q in cfg.quantiles if q != 0.5]
    if body.quantiles is None:
        return season, trained
    unknown = [q for q in body.quantiles if q not in cfg.quantiles]
    if unknown:
        raise RequestError(
            f"quantiles {unknown} were not trained; choose from {list(cfg.quantiles)}", field="quantiles"
        )
    return season, sorted(set(body.quantiles))


def _response(result: ForecastResult, wanted: list[float], season: int, engine: ForecastEngine,
              session_id: str | None) -> ForecastResponse:  # fmt: skip
    if not all(math.isfinite(v) for values in result.quantiles.values() for v in values):
        raise RequestError("series values are too large to forecast in float64", field="series")
    return ForecastResponse(
        median=result.median,
        quantiles={f"{q:g}": result.quantiles[q] for q in wanted},
        season_length=season,
        model=ModelRef(name=engine.model.manifest.name, version=engine.model.version),
        session_id=session_id,
    )


# A plain `def` route runs in the thread pool: inference never blocks the event loop.
@router.post(
    "/forecast",
    response_model=ForecastResponse,
    responses={404: {"model": ErrorResponse, "description": "unknown or expired session_id"},
               409: {"model": ErrorResponse, "description": "the session is busy with another request"}},
)  # fmt: skip
def forecast(body: ForecastRequest, request: Request) -> ForecastResponse:
    """Forecast the next `horizon` points of a series (or of a session's series): median and trained quantiles."""
    runtime: Runtime = request.app.state.runtime
    if body.session_id is not None:
        return _forecast_session(body, runtime)
    if body.series is None:
        raise RequestError("series: field required (unless session_id is given)", field="series")
    if body.observations is not None:
        raise RequestError("observations: only with session_id (use series for a stateless forecast)", "observations")
    engine: ForecastEngine = runtime.engine(FAMILY)
    season, wanted = _check(body, engine, len(body.series), "series")
    [result] = runtime.run_batched(FAMILY, engine, [ForecastItem(body.series, body.horizon, season)])
    return _response(result, wanted, season, engine, None)


def _forecast_session(body: ForecastRequest, runtime: Runtime) -> ForecastResponse:
    """Feed only the new observations through the step model (cost grows with them, not with the history), then
    roll out from the new state. The scaling is fixed by the session's first observations."""
    assert body.session_id is not None
    if body.series is not None:
        raise RequestError("series: not with session_id (send the new points as observations)", field="series")
    observations = body.observations or []
    with runtime.sessions.lease(body.session_id) as session:
        engine: ForecastEngine = runtime.session_engine(session, FAMILY)
        started = bool(session.data)
        if started:
            assert session.state is not None
            state = ForecastState.from_session_data(session.state[0], session.state[1], session.data)
            season = int(state.season_length[0])
            if body.season_length is not None and body.season_length != season:
                raise RequestError(f"season_length: this session uses {season}; it cannot change", "season_length")
            _, wanted = _check(body.model_copy(update={"season_length": season}), engine,
                               engine.config.min_history, "observations")  # fmt: skip
            if observations:
                state = engine.observe(state, observations)
        else:
            season, wanted = _check(body, engine, len(observations), "observations")
            state = engine.prefill(observations, season)
        result = engine.rollout(state, body.horizon)
        if started and not observations:
            return _response(result, wanted, season, engine, session.id)  # nothing new: the state is unchanged
        response = _response(result, wanted, season, engine, session.id)
        session.state = (state.h, state.c)
        session.data = state.session_data()
        runtime.sessions.save(session)
        return response
