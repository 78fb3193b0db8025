"""One validation experiment of the forecast recipe: train with config overrides (one member by default), then
report the validation MASE overall, without `us_employment` and per frequency, appended to a JSON-lines file.

    python -m training.forecast.experiment NAME '{"scaling": "standardize"}' [--out training/forecast/experiments.jsonl]

Only validation horizons are scored (test horizons and the reserved series are never looked at).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.families.forecast.engine import Forecaster
from training.baselines_forecast import mase
from training.data.series import Series, load_default_series
from training.forecast.config import TrainConfig
from training.forecast.evaluate import forecast_many, torch_runner
from training.forecast.export import load
from training.forecast.train import train

DEFAULTS: dict[str, Any] = {"members": 1, "steps": 600, "eval_every": 200, "baselines": False, "max_minutes": 0.0}


def _mean(rows: list[tuple[Series, float]]) -> float:
    values = np.array([m for _, m in rows])
    return round(float(values[np.isfinite(values)].mean()), 4)


def run(name: str, overrides: dict[str, Any], workdir: Path) -> dict[str, Any]:
    data = load_default_series()
    cfg = TrainConfig(**{**DEFAULTS, **overrides})
    started = time.monotonic()
    checkpoint = workdir / f"{name}.pt"
    train(data, cfg, checkpoint)
    minutes = (time.monotonic() - started) / 60
    ensemble, cfg, _ = load(checkpoint)
    forecaster = Forecaster(cfg.serving(ensemble.state_hidden), torch_runner(ensemble))
    series = [s for s in data.series if len(s.valid_history) >= cfg.min_history]
    preds = forecast_many(forecaster, [s.valid_history for s in series], [s.horizon for s in series],
                          [s.season_length for s in series])  # fmt: skip
    med = forecaster.config.median_index
    rows = [(s, mase(s.valid_target, p[:, med], s.valid_history, s.season_length))
            for s, p in zip(series, preds, strict=True)]  # fmt: skip
    frequencies = sorted({s.frequency for s in series})
    return {
        "name": name,
        "overrides": overrides,
        "valid_mase": _mean(rows),
        "valid_mase_without_us_employment": _mean([r for r in rows if r[0].collection != "us_employment"]),
        "by_frequency": {f: _mean([r for r in rows if r[0].frequency == f]) for f in frequencies},
        "minutes": round(minutes, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.forecast.experiment", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("name")
    parser.add_argument("overrides", help="TrainConfig fields as JSON (members 1, steps 600 by default)")
    parser.add_argument("--out", type=Path, default=Path("training/forecast/experiments.jsonl"))
    parser.add_argument("--workdir", type=Path, default=Path("runs/fc"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    result = run(args.name, json.loads(args.overrides), args.workdir)
    print(json.dumps(result))
    with args.out.open("a") as f:
        f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
