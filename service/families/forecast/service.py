"""The forecast family's serving layer: limits from the manifest, stateless forecasts through the micro-batcher,
and forecast sessions (new observations only, scaling fixed at the start)."""

from __future__ import annotations

import math
from typing import Any

from starlette.concurrency import run_in_threadpool

from ...config import Settings
from ...errors import RequestError
from ...runtime import Runtime
from ...schemas import ModelRef
from .engine import NAME, ForecastEngine, ForecastItem, ForecastResult, ForecastState
from .schemas import MAX_SERIES_LENGTH, ForecastRequest, ForecastResponse


def limits(engine: ForecastEngine, settings: Settings) -> dict[str, Any]:
    cfg = engine.config
    return {"min_history": cfg.min_history, "max_context": cfg.max_context, "max_horizon": cfg.served_horizon,
            "measured_horizon": cfg.quality_horizon,
            "max_season_length": cfg.max_season_length, "default_season_length": cfg.default_season_length,
            "quantiles": list(cfg.quantiles), "max_series_length": MAX_SERIES_LENGTH}  # fmt: skip


def run_many(engine: Any, items: list[ForecastItem]) -> list[ForecastResult]:
    return list(engine.forecast_many(items))


def check(
    body: ForecastRequest, engine: ForecastEngine, history: list[float], field: str
) -> tuple[int, str, list[float]]:
    """The limits that come from the model's manifest. Returns (season_length, its source, quantiles to return).
    Without a season_length the season is detected in the history."""
    cfg = engine.config
    if len(history) < cfg.min_history:
        raise RequestError(f"{field} has {len(history)} values; this model needs at least {cfg.min_history}",
                           field=field)  # fmt: skip
    if body.horizon > cfg.served_horizon:
        raise RequestError(f"horizon is {body.horizon}; the limit is {cfg.served_horizon}", field="horizon")
    season, source = engine.season_length(history, body.season_length)
    if season > cfg.max_season_length:
        raise RequestError(f"season_length is {season}; the limit is {cfg.max_season_length}", field="season_length")
    trained = [q for q in cfg.quantiles if q != 0.5]
    if body.quantiles is None:
        return season, source, trained
    unknown = [q for q in body.quantiles if q not in cfg.quantiles]
    if unknown:
        raise RequestError(
            f"quantiles {unknown} were not trained; choose from {list(cfg.quantiles)}", field="quantiles"
        )
    return season, source, sorted(set(body.quantiles))


def response(result: ForecastResult, wanted: list[float], season: tuple[int, str], engine: ForecastEngine,
             session_id: str | None) -> ForecastResponse:  # fmt: skip
    if not all(math.isfinite(v) for values in result.quantiles.values() for v in values):
        raise RequestError("series values are too large to forecast in float64", field="series")
    return ForecastResponse(
        median=result.median,
        quantiles={f"{q:g}": result.quantiles[q] for q in wanted},
        season_length=season[0],
        season_source=season[1],
        measured_horizon=engine.config.quality_horizon,
        beyond_measured_horizon=len(result.median) > engine.config.quality_horizon,
        model=ModelRef.of(engine.model),
        session_id=session_id,
    )


async def forecast(body: ForecastRequest, runtime: Runtime) -> ForecastResponse:
    """A stateless forecast (micro-batched with others) or a session's."""
    if body.session_id is not None:
        return await run_in_threadpool(forecast_session, body, runtime)
    if body.series is None:
        raise RequestError("series: field required (unless session_id is given)", field="series")
    if body.observations is not None:
        raise RequestError("observations: only with session_id (use series for a stateless forecast)", "observations")
    engine: ForecastEngine = runtime.engine(NAME)  # type: ignore[assignment]
    season, source, wanted = check(body, engine, body.series, "series")
    [result] = await runtime.run_batched(NAME, engine, [ForecastItem(body.series, body.horizon, season)])
    return response(result, wanted, (season, source), engine, None)


def forecast_session(body: ForecastRequest, runtime: Runtime) -> ForecastResponse:
    """Feed only the new observations through the step model (cost grows with them, not with the history), then
    roll out from the new state. The scaling is fixed by the session's first observations."""
    assert body.session_id is not None
    if body.series is not None:
        raise RequestError("series: not with session_id (send the new points as observations)", field="series")
    observations = body.observations or []
    with runtime.sessions.lease(body.session_id) as session:
        engine: ForecastEngine = runtime.session_engine(session, NAME)  # type: ignore[assignment]
        started = bool(session.data)
        if started:
            assert session.state is not None
            state = ForecastState.from_session_data(session.state[0], session.state[1], session.data)
            season = int(state.season_length[0])
            if body.season_length is not None and body.season_length != season:
                raise RequestError(f"season_length: this session uses {season}; it cannot change", "season_length")
            source = "session"
            _, _, wanted = check(body.model_copy(update={"season_length": season}), engine,
                                 [0.0] * engine.config.min_history, "observations")  # fmt: skip
            if observations:
                state = engine.observe(state, observations)
        else:
            season, source, wanted = check(body, engine, observations, "observations")
            state = engine.prefill(observations, season)
        result = engine.rollout(state, body.horizon)
        if started and not observations:
            return response(result, wanted, (season, source), engine, session.id)  # nothing new: state unchanged
        answer = response(result, wanted, (season, source), engine, session.id)
        session.state = (state.h, state.c)
        session.data = state.session_data()
        runtime.sessions.save(session)
        return answer
