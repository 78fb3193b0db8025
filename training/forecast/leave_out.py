"""Leave-collection-out: for each block (fpp2, fpp3, statsmodels, us_employment), train on every other series plus
the synthetic ones, then score the block's test horizons against seasonal naive, ETS, ARIMA and Theta.

    python -m training.forecast leave-out [--blocks fpp2 fpp3 ...] [train options, e.g. --members 1 --steps 1000]

Each block's model never saw a point of the block (not even its training part), so the figures say how the recipe
does on a whole collection it has never seen.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from service.families.forecast.engine import Forecaster
from training.data.series import SeriesSet, series_digest
from training.forecast.config import TrainConfig
from training.forecast.evaluate import (
    baseline_forecasts,
    forecast_set,
    format_table,
    score_series,
    summaries,
    summarise,
    torch_runner,
)
from training.forecast.export import load
from training.forecast.train import train

log = logging.getLogger("training.forecast")

BLOCKS = ("fpp2", "fpp3", "statsmodels", "us_employment")


def leave_collection_out(
    data: SeriesSet, cfg: TrainConfig, blocks: tuple[str, ...], cache_dir: Path, workdir: Path, reuse: bool = False
) -> dict[str, Any]:
    """reuse=True scores an existing leave-out-<block>.pt instead of training it again (e.g. once more baselines
    are in the cache)."""
    results: dict[str, Any] = {}
    for block in blocks:
        kept = [s for s in data.series if s.collection != block]
        held = [s for s in data.series if s.collection == block]
        subset = SeriesSet(series=kept, source=f"{data.source} without {block}", sha256=series_digest(kept))
        checkpoint = workdir / f"leave-out-{block}.pt"
        if not (reuse and checkpoint.is_file()):
            train(subset, replace(cfg, baselines=False), checkpoint)
        ensemble, train_cfg, _ = load(checkpoint)
        forecaster = Forecaster(train_cfg.serving(ensemble.state_hidden), torch_runner(ensemble))
        lstm, _ = forecast_set(forecaster, held)
        rows = score_series(held, lstm, baseline_forecasts(held, cache_dir), forecaster.config)
        by_frequency = summaries(rows, lambda r: str(r["frequency"]))
        results[block] = {"summary": summarise(rows), "by_frequency": by_frequency, "per_series": rows}
        log.info("left out %s:\n%s", block, format_table({block: results[block]["summary"]}))
    table = format_table({b: r["summary"] for b, r in results.items()})
    frequencies = "\n\n".join(
        f"Left out {b}, by frequency:\n\n" + format_table(r["by_frequency"]) for b, r in results.items()
    )
    (workdir / "leave-out.md").write_text(table + "\n\n" + frequencies + "\n")
    (workdir / "leave-out.json").write_text(json.dumps(results, default=str))
    print(table)
    return results
