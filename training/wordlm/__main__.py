"""Word-level LSTM language model: data -> train -> evaluate -> export.

    python -m training.wordlm train  [--corpus FILE] [--epochs N] ... --checkpoint runs/wordlm.pt
    python -m training.wordlm export --checkpoint runs/wordlm.pt [--models-dir models]
    python -m training.wordlm all    [train options]            # what `make models` runs
    python -m training.wordlm quantize models/wordlm/2   # add the int8 variant to a published version
    python -m training.wordlm combine a.pt b.pt --checkpoint runs/wordlm.pt   # an ensemble of models trained apart

Every field of the training config and of the model config is a flag (`train --help` lists them).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from service.tokenizer import EOS_MODES
from training.data.archives import DEFAULT_CACHE
from training.data.text import load_corpus
from training.kit.cli import add_dataclass_args, dataclass_from_args, values_from_args
from training.wordlm.config import TrainConfig
from training.wordlm.export import export, quantize
from training.wordlm.model import WordLMConfig
from training.wordlm.train import combine, train

MODEL_GIVEN = {"vocab_size"}  # set from the data, not a flag


def add_eos_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--eos",
        choices=EOS_MODES,
        default="paragraph",
        help="where <eos> goes: at paragraph ends (blank lines, or the layout rule of training/data/text.py), at "
        "every line end, or nowhere (default: %(default)s)",
    )


def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", type=Path, help="train on this UTF-8 text file instead of the default books")
    add_eos_arg(p)
    add_dataclass_args(p.add_argument_group("training"), TrainConfig, skip={"model"})
    model = p.add_argument_group("model")
    add_dataclass_args(model, WordLMConfig, skip=MODEL_GIVEN)
    model.add_argument("--no-tie", dest="tie_weights", action="store_false", help="separate decoder weights")


def train_config(args: argparse.Namespace) -> TrainConfig:
    return dataclass_from_args(
        TrainConfig, args, skip={"model"}, model=values_from_args(WordLMConfig, args, skip=MODEL_GIVEN)
    )


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.wordlm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train and save a checkpoint")
    p_export = sub.add_parser("export", help="export a checkpoint as a new model version")
    p_all = sub.add_parser("all", help="train, then export")
    p_quantize = sub.add_parser("quantize", help="add the int8 variant to a published version")
    p_quantize.add_argument("version_dir", type=Path, help="e.g. models/wordlm/2")
    p_quantize.add_argument("--corpus", type=Path, help="the text file it was trained on, if not the books")
    p_quantize.add_argument("--data-dir", type=Path, default=DEFAULT_CACHE, help="cache for downloaded data")
    add_eos_arg(p_quantize)
    p_combine = sub.add_parser("combine", help="one ensemble checkpoint from models trained apart (other seeds)")
    p_combine.add_argument("members", type=Path, nargs="+", help="single-model checkpoints")
    p_combine.add_argument("--corpus", type=Path, help="the text file they were trained on, if not the books")
    add_eos_arg(p_combine)
    for p in (p_train, p_all):
        add_train_args(p)
    p_export.add_argument("--corpus", type=Path, help="the text file the checkpoint was trained on, if not the books")
    add_eos_arg(p_export)
    for p in (p_train, p_export, p_all, p_combine):
        p.add_argument("--checkpoint", type=Path, default=Path("runs/wordlm.pt"))
        p.add_argument("--data-dir", type=Path, default=DEFAULT_CACHE, help="cache for downloaded data")
    for p in (p_export, p_all):
        p.add_argument("--models-dir", type=Path, default=Path("models"))
        p.add_argument("--version", type=int, help="version number (default: next free)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    corpus = load_corpus(args.corpus, args.data_dir, eos=args.eos)
    if args.command == "quantize":
        print(quantize(args.version_dir, corpus))
    if args.command == "combine":
        combine(corpus, args.members, args.checkpoint)
    if args.command in ("train", "all"):
        train(corpus, train_config(args), args.checkpoint)
    if args.command in ("export", "all"):
        print(export(args.checkpoint, args.models_dir, corpus, args.version))


if __name__ == "__main__":
    main()
