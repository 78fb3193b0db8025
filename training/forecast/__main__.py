"""Global LSTM forecaster with quantiles: data -> train -> evaluate -> export.

    python -m training.forecast train  [--data FILE.csv] [--steps N] ... --checkpoint runs/forecast.pt
    python -m training.forecast export --checkpoint runs/forecast.pt [--models-dir models]
    python -m training.forecast all    [train options]            # what `make models-forecast` runs
    python -m training.forecast quantize models/forecast/2        # add the int8 variant to a published version
    python -m training.forecast baselines --methods arima     # fit ARIMA on every series (cached; ~40 minutes)
    python -m training.forecast score models/forecast/2 [--out docs/forecast_table.md]   # its tables, every baseline

Every field of the training config is a flag (`train --help` lists them). Training data: the fpp2, fpp3 and
statsmodels series plus synthetic series (training/data/synthetic.py). The R collections reserved for independent
evaluation are never read here: `python -m evaluation.forecast` scores a published version on them. The statistical
baselines (ETS, ARIMA, Theta per series) are fitted in a second process while `all` trains, and cached under
--cache-dir.
"""

from __future__ import annotations

import argparse
import logging
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from training.data.series import load_series
from training.forecast.config import TrainConfig
from training.forecast.evaluate import BASELINES, baseline_forecasts
from training.forecast.export import export, quantize, score
from training.forecast.leave_out import BLOCKS, leave_collection_out
from training.forecast.train import train
from training.kit.cli import add_dataclass_args, dataclass_from_args


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.forecast", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train the ensemble and save a checkpoint")
    p_export = sub.add_parser("export", help="evaluate a checkpoint on the test horizons and publish it")
    p_all = sub.add_parser("all", help="train, then export")
    p_score = sub.add_parser("score", help="tables of a published version on the test horizons, with every baseline "
                             "in the cache (no export)")  # fmt: skip
    p_score.add_argument("version_dir", type=Path, help="e.g. models/forecast/2")
    p_score.add_argument("--cache-dir", type=Path, default=Path("data"), help="cache of the statistical baselines")
    p_score.add_argument("--out", type=Path, help="also write the tables here (e.g. docs/forecast_table.md)")
    p_score.add_argument("--amend", action="store_true", help="update the manifest's baseline figures (the model's "
                         "own must come out as published)")  # fmt: skip
    p_base = sub.add_parser("baselines", help="fit statistical baselines on every test horizon into the cache; ARIMA "
                            "is fitted only here (~40 min on one core)")  # fmt: skip
    p_base.add_argument("--methods", nargs="+", default=list(BASELINES), choices=BASELINES)
    p_base.add_argument("--cache-dir", type=Path, default=Path("data"), help="cache of the statistical baselines")
    p_quantize = sub.add_parser("quantize", help="add the int8 variant to a published version")
    p_quantize.add_argument("version_dir", type=Path, help="e.g. models/forecast/2")
    p_out = sub.add_parser("leave-out", help="train without each collection in turn and score it (no export)")
    p_out.add_argument("--blocks", nargs="+", default=list(BLOCKS), help="collections to leave out, one at a time")
    p_out.add_argument("--workdir", type=Path, default=Path("runs"), help="checkpoints and leave-out.md/json")
    p_out.add_argument("--cache-dir", type=Path, default=Path("data"), help="cache of the statistical baselines")
    p_out.add_argument("--reuse", action="store_true", help="score existing leave-out checkpoints, train the others")
    for p in (p_train, p_all, p_out):
        add_dataclass_args(p.add_argument_group("training"), TrainConfig)
    for p in (p_train, p_export, p_all, p_quantize, p_score):
        p.add_argument(
            "--data",
            type=Path,
            help="CSV of series (series_id,value[,season_length][,horizon]) instead of the default series",
        )
    for p in (p_train, p_export, p_all):
        p.add_argument("--checkpoint", type=Path, default=Path("runs/forecast.pt"))
    for p in (p_export, p_all):
        p.add_argument("--models-dir", type=Path, default=Path("models"))
        p.add_argument("--version", type=int, help="version number (default: next free)")
        p.add_argument("--cache-dir", type=Path, default=Path("data"), help="cache of the statistical baselines")
        p.add_argument("--docs-dir", type=Path, help="also write the plot and tables here (e.g. docs)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)  # LSTM steps are small: more threads only add contention
    data = load_series(getattr(args, "data", None))
    if args.command == "leave-out":
        leave_collection_out(load_series(None), dataclass_from_args(TrainConfig, args), tuple(args.blocks),
                             args.cache_dir, args.workdir, args.reuse)  # fmt: skip
        return
    if args.command == "quantize":
        print(quantize(args.version_dir, data))
        return
    if args.command == "baselines":
        baseline_forecasts(data.series, args.cache_dir, tuple(args.methods), compute=True)
        return
    if args.command == "score":
        print(score(args.version_dir, data, None, args.cache_dir, args.out, args.amend))
        return
    if args.command in ("train", "all"):
        cfg = dataclass_from_args(TrainConfig, args)
        if args.command == "all" and cfg.baselines:
            # The baselines need only the data: fit them in a second process while this one trains.
            with ProcessPoolExecutor(max_workers=1) as background:
                fits = background.submit(baseline_forecasts, data.series, args.cache_dir)
                train(data, cfg, args.checkpoint)
                fits.result()
        else:
            train(data, cfg, args.checkpoint)
    if args.command in ("export", "all"):
        print(export(args.checkpoint, args.models_dir, data, args.version, args.cache_dir, args.docs_dir))


if __name__ == "__main__":
    main()
