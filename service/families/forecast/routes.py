"""Quantile forecasts of a series with the global LSTM forecaster."""

from __future__ import annotations

from fastapi import APIRouter

from ...batching import QueueFullError
from ...dependencies import RuntimeDep
from ...errors import ModelUnavailable, SessionFamilyMismatch, VersionRetired, documented
from ...sessions import SessionBusyError, SessionNotFoundError, SessionStoreUnavailable
from . import service
from .schemas import ForecastRequest, ForecastResponse

router = APIRouter(tags=["forecast"])
ERRORS = documented(ModelUnavailable, QueueFullError, SessionNotFoundError, SessionBusyError, SessionFamilyMismatch,
                    VersionRetired, SessionStoreUnavailable)  # fmt: skip


@router.post("/forecast", response_model=ForecastResponse, responses=ERRORS)
async def forecast(body: ForecastRequest, runtime: RuntimeDep) -> ForecastResponse:
    """Forecast the next `horizon` points of a series (or of a session's series): median and trained quantiles."""
    return await service.forecast(body, runtime)
