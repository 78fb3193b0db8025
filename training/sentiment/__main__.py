"""BiLSTM sentiment classifier: data -> (pre-train) -> train -> export + evaluate.

    python -m training.sentiment train  [--data FILE.csv|FILE.jsonl] [options] --checkpoint runs/sentiment.pt
    python -m training.sentiment export --checkpoint runs/sentiment.pt [--models-dir models]
    python -m training.sentiment all    [train options]             # what `make models-sentiment` runs
    python -m training.sentiment sweep  [--variants a,b,...]        # the recorded experiments (validation only)
    python -m training.sentiment quantize models/sentiment/2           # add the int8 variant to a published version

Recipe of the default model (each choice measured on the validation split, see README "Sentiment"):

  1. data: every labelled domain of the pinned archive (movie snippets, tweets, Amazon, NYT editorials), label =
     sign of the mean rating, split 80/10/10 per domain (training/data/sentiment.py);
  2. vocabulary from the train split of all domains (min count 2), specials <pad> = 0 and <unk> = 1, then the
     VADER lexicon's words; each token's lexicon valence is one more input channel (`--no-lexicon` turns it off);
  3. train 3 classifiers (seeds 1234, 1235, 1236) on length-bucketed batches: packed sequences, pooling =
     [last states, max, mean], label smoothing 0.1, early stopping on validation accuracy (at most 6 epochs and
     18 minutes each);
  4. export the members as one ONNX graph that averages their probabilities, with the temperature fitted on the
     validation split folded in when it lowers validation NLL and ECE (float16-stored weights); the manifest gets
     every domain's test table, ECE, <unk> rates, the minimal pairs and the leave-one-domain-out records.

    python -m training.sentiment lodo [--domains movie,tweets] --epochs 3   # leave-one-domain-out (short runs)

Optional (`--pretrain-epochs N`, off by default: no measurable gain at the scale available here): pre-train a
forward and a backward 2-layer LSTM language model (shared embedding) on unlabelled text (the train split's
snippets with labels unused, the archive's NYT editorial snippets, the word-LM books), then copy them into the
classifier's embedding and bidirectional LSTM (ULMFiT / ELMo style) and fine-tune with gradual unfreezing.

Padded batches go through `pack_padded_sequence(enforce_sorted=False)` in training and the export keeps it as the
ONNX LSTM's `sequence_lens`, so a text's probabilities are the same alone and inside a padded batch (checked at
export, with the parity against PyTorch, before anything is written).

Every field of the training, pre-training and model configs is a flag (`train --help` lists them).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from training.data.archives import DEFAULT_CACHE
from training.data.sentiment import DOMAINS, load_sentiment_data
from training.kit.cli import add_dataclass_args, dataclass_from_args, values_from_args
from training.sentiment.config import TrainConfig
from training.sentiment.domains import leave_one_domain_out
from training.sentiment.domains import read_results as read_lodo
from training.sentiment.experiments import VARIANTS, read_experiments, sweep
from training.sentiment.export import export, quantize
from training.sentiment.model import SentimentConfig
from training.sentiment.train import train

LODO_RESULTS = Path("training/sentiment_lodo.jsonl")
MODEL_GIVEN = {"vocab_size", "num_classes", "pad_id", "valence"}  # set from the data (and --lexicon), not flags


def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, help="train on this CSV (columns text,label) or JSONL ({text, label}) file")
    add_dataclass_args(
        p.add_argument_group("training (--pretrain-epochs N > 0 turns pre-training on)"), TrainConfig, skip={"model"}
    )
    add_dataclass_args(p.add_argument_group("model"), SentimentConfig, skip=MODEL_GIVEN)


def train_config(args: argparse.Namespace) -> TrainConfig:
    return dataclass_from_args(
        TrainConfig, args, skip={"model"}, model=values_from_args(SentimentConfig, args, skip=MODEL_GIVEN)
    )


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.sentiment", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train and save a checkpoint")
    p_export = sub.add_parser("export", help="export a checkpoint as a new model version")
    p_all = sub.add_parser("all", help="train, then export")
    p_sweep = sub.add_parser("sweep", help="train the recorded variants (one member each), validation only")
    p_lodo = sub.add_parser("lodo", help="leave-one-domain-out: one short member per held-out domain + baselines")
    p_quantize = sub.add_parser("quantize", help="add the int8 variant to a published version")
    p_quantize.add_argument("version_dir", type=Path, help="e.g. models/sentiment/2")
    for p in (p_train, p_all, p_sweep, p_lodo):
        add_train_args(p)
    for p in (p_train, p_export, p_all):
        p.add_argument("--checkpoint", type=Path, default=Path("runs/sentiment.pt"))
    for p in (p_export, p_all):
        p.add_argument("--models-dir", type=Path, default=Path("models"))
        p.add_argument("--version", type=int, help="version number (default: next free)")
        p.add_argument(
            "--experiments",
            type=Path,
            default=Path("training/sentiment_experiments.jsonl"),
            help="sweep results to record in the manifest",
        )
        p.add_argument("--fp32-weights", action="store_true", help="store float32 weights (default: float16)")
    for p in (p_export, p_quantize):
        p.add_argument("--data", type=Path)
        p.add_argument("--split-seed", type=int, default=TrainConfig.split_seed)
    p_sweep.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {list(VARIANTS)}")
    p_sweep.add_argument("--results", type=Path, default=Path("runs/sentiment_sweep.jsonl"))
    p_lodo.add_argument("--domains", default=",".join(DOMAINS), help=f"comma-separated, from {list(DOMAINS)}")
    p_lodo.add_argument("--results", type=Path, default=LODO_RESULTS)
    for p in (p_export, p_all):
        p.add_argument("--lodo", type=Path, default=LODO_RESULTS, help="leave-one-domain-out results to record")
    for p in (p_train, p_all, p_sweep, p_lodo):
        p.add_argument(
            "--lm-cache",
            type=Path,
            default=Path("runs/sentiment_lm.pt"),
            help="reuse the pre-trained LM saved here when its settings match (re-made otherwise)",
        )
    for p in (p_train, p_export, p_all, p_sweep, p_lodo, p_quantize):
        p.add_argument("--data-dir", type=Path, default=DEFAULT_CACHE, help="cache for downloaded data")
        p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    data = load_sentiment_data(args.data, args.split_seed, args.data_dir)
    if args.command == "quantize":
        print(quantize(args.version_dir, data))
        return
    if args.command == "sweep":
        sweep(data, train_config(args), args.variants.split(","), args.results, args.data_dir, args.lm_cache)
        return
    if args.command == "lodo":
        leave_one_domain_out(data, train_config(args), args.domains.split(","), args.results, args.data_dir)
        return
    if args.command in ("train", "all"):
        train(data, train_config(args), args.checkpoint, args.data_dir, args.lm_cache)
    if args.command in ("export", "all"):
        experiments = read_experiments(args.experiments) if args.data is None else []
        lodo = read_lodo(args.lodo) if args.data is None else []
        fp16 = not args.fp32_weights
        print(
            export(
                args.checkpoint,
                args.models_dir,
                data,
                args.version,
                args.data_dir,
                experiments=experiments,
                lodo=lodo,
                fp16_weights=fp16,
            )
        )


if __name__ == "__main__":
    main()
