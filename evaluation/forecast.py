"""Score a published forecast version on the reserved R collections, which training never reads.

    python -m evaluation.forecast [models/forecast/2] [--out docs/forecast_table.md]

Fits the per-series baselines (ETS and Theta; ARIMA too with `--methods ets arima theta`, ~10 minutes for the
reserved series) into the same cache as training's, rebuilds the version's tables on the test horizons and the
reserved series, and adds the reserved figures to its manifest (`metrics.reserved`). The model's figures on the test
horizons must come out exactly as published. `make models-forecast` runs this after the export.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from evaluation.reserved import load_reserved_series
from training.data.series import load_series
from training.forecast.evaluate import BASELINES, baseline_forecasts
from training.forecast.export import score


def newest_version(family_dir: Path) -> Path:
    versions = [d for d in family_dir.iterdir() if d.is_dir() and d.name.isdigit()]
    if not versions:
        raise SystemExit(f"no published version under {family_dir}")
    return max(versions, key=lambda d: int(d.name))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m evaluation.forecast", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("version_dir", type=Path, nargs="?", help="default: the newest under models/forecast")
    parser.add_argument("--cache-dir", type=Path, default=Path("data"), help="cache of the statistical baselines")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["ets", "theta"],
        choices=BASELINES,
        help="baselines to fit on the reserved series (ARIMA already cached is used either way)",
    )
    parser.add_argument("--out", type=Path, help="also write the tables here (e.g. docs/forecast_table.md)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    version_dir = args.version_dir or newest_version(Path("models/forecast"))
    reserved = load_reserved_series()
    baseline_forecasts(reserved.series, args.cache_dir, tuple(args.methods), compute=True)
    print(score(version_dir, load_series(None), reserved, args.cache_dir, args.out, amend=True))


if __name__ == "__main__":
    main()
