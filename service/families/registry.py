"""The model families this service serves: one line each. Everything else (the app's routers, the runtime's
engines and batching, sessions, the model catalogue, the OpenAPI export, the tests) iterates this tuple."""

from __future__ import annotations

from ..family import Family
from . import forecast, sentiment, wordlm

FAMILIES: tuple[Family, ...] = (
    wordlm.FAMILY,
    sentiment.FAMILY,
    forecast.FAMILY,
)


def by_name(families: tuple[Family, ...] = FAMILIES) -> dict[str, Family]:
    return {family.name: family for family in families}
