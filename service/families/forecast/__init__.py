"""The forecast family: a global quantile LSTM, micro-batched, with stateful forecast sessions."""

from __future__ import annotations

from typing import Any

from ...family import Family, OneShot
from .engine import NAME, ForecastEngine
from .routes import router
from .service import limits, run_many


class ForecastSessions:
    """A forecast session holds nothing before its first call: the first observations fix its scaling."""

    def initial_data(self, engine: Any, seed: int | None) -> dict[str, Any]:
        return {}


FAMILY = Family(name=NAME, engine=ForecastEngine, router=router, batching=OneShot(run_many),
                session=ForecastSessions(), limits=limits)  # fmt: skip
