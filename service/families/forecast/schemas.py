"""Requests and responses of the forecast family."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ...schemas import ModelRef, StrictRequest
from ...sessions import ID_PATTERN as SESSION_ID_PATTERN

MAX_SERIES_LENGTH = 10_000
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
    horizon: int = Field(
        ge=1,
        description="how many future points (at most the model's `horizon_limit`; past its `measured_horizon` the "
        "rollout continues but its quality was not measured)",
        examples=[6],
    )
    season_length: int | None = Field(
        None,
        ge=1,
        description="points per season: 12 monthly, 4 quarterly, 1 none (default: detected from the series; the "
        "model's default when no season is found)",
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
                    "season_source": "request",
                    "measured_horizon": 18,
                    "beyond_measured_horizon": False,
                    "model": {"name": "forecast-lstm-2x2x64", "version": 2},
                }
            ]
        }
    )

    median: list[float] = Field(description="the 0.5 quantile at each step of the horizon")
    quantiles: dict[str, list[float]] = Field(description='e.g. {"0.1": [...], "0.9": [...]}: an 80% interval')
    season_length: int = Field(description="the season length used")
    season_source: Literal["request", "detected", "default", "session"] = Field(
        description="where season_length came from: the request, detected in the series, the model's default "
        "(no season found), or the session's first call"
    )
    measured_horizon: int = Field(description="the longest horizon at which this model's quality was measured")
    beyond_measured_horizon: bool = Field(description="true when the horizon goes past measured_horizon")
    model: ModelRef
    session_id: str | None = Field(None, description="the session continued, if any")
